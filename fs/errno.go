package fs

import (
	"context"
	"errors"
	iofs "io/fs"
	"log"
	"syscall"
)

// toErrno is the one place where errors become errnos: cancelled → EINTR,
// missing → ENOENT, anything else → EIO with a log line naming the operation.
func toErrno(op string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, iofs.ErrNotExist):
		return syscall.ENOENT
	}
	log.Printf("weedfuse: %s: %v", op, err)
	return syscall.EIO
}
