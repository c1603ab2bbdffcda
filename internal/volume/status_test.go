package volume

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHTTPStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"other", errors.New("boom"), 0},
		{"401", &statusError{code: 401, status: "401 Unauthorized"}, 401},
		{"403 wrapped", fmt.Errorf("read chunk 3,01: %w", &statusError{code: 403, status: "403 Forbidden"}), 403},
		{"in a join", fmt.Errorf("gave up: %w", errors.Join(errors.New("x"), &statusError{code: 401})), 401},
	} {
		assert.Equal(t, tc.want, HTTPStatus(tc.err), tc.name)
	}
}
