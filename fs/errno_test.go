package fs

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestToErrno(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"cancelled", fmt.Errorf("read: %w", context.Canceled), syscall.EINTR},
		{"cancelled beside a gRPC error", fmt.Errorf("%w: %w", context.Canceled, errors.New("rpc error: code = Canceled")), syscall.EINTR},
		{"missing", fmt.Errorf("lookup /a/b: %w", iofs.ErrNotExist), syscall.ENOENT},
		{"permission", fmt.Errorf("lookup /a/b: %w", iofs.ErrPermission), syscall.EACCES},
		{"errno passes through", fmt.Errorf("lookup: %w", syscall.ENAMETOOLONG), syscall.ENAMETOOLONG},
		{"bare errno", syscall.EROFS, syscall.EROFS},
		{"errno in a join", errors.Join(errors.New("x"), syscall.ESTALE), syscall.ESTALE},
		{"deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), syscall.EIO},
		{"anything else", errors.New("boom"), syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, toErrno("test", tc.err))
		})
	}
}
