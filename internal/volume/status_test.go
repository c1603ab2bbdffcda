package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestStatusErrorIs(t *testing.T) {
	for _, tc := range []struct {
		name             string
		err              error
		missing, refused bool
	}{
		{"401", &statusError{code: 401, status: "401 Unauthorized"}, false, true},
		{"403 wrapped", fmt.Errorf("read chunk 3,01: %w", &statusError{code: 403, status: "403 Forbidden"}), false, true},
		{"in a join", fmt.Errorf("gave up: %w", errors.Join(errors.New("x"), &statusError{code: 401})), false, true},
		{"404", fmt.Errorf("read chunk 3,01: %w", &statusError{code: 404, status: "404 Not Found"}), true, false},
		{"500", &statusError{code: 500, status: "500 Internal Server Error"}, false, false},
		{"other", errors.New("boom"), false, false},
	} {
		if got := errors.Is(tc.err, fs.ErrNotExist); got != tc.missing {
			t.Errorf("%s: errors.Is(ErrNotExist) = %v, want %v", tc.name, got, tc.missing)
		}
		if got := errors.Is(tc.err, fs.ErrPermission); got != tc.refused {
			t.Errorf("%s: errors.Is(ErrPermission) = %v, want %v", tc.name, got, tc.refused)
		}
	}
}
