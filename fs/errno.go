package fs

import (
	"context"
	"errors"
	iofs "io/fs"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/internal/logs"
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
	kind, _, _ := strings.Cut(op, " ")
	errLog.Log(slog.LevelError, kind, "operation failed with EIO", "op", op, "err", err)
	return syscall.EIO
}

// errLog writes at most one EIO line per operation kind (read, lookup, …)
// every errLogInterval, and counts the rest: with a volume server down, a
// busy mount fails thousands of reads a second, and one line per read would
// bury the cause.
var errLog = logs.NewLimiter(errLogInterval, slog.Default)

const errLogInterval = 10 * time.Second
