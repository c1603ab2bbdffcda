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

// errnoTable is the one mapping from errors to errnos, tried in order; an
// error matching no row is EIO, logged with the operation. Errors come up
// wrapped (%w) from the filer client, the volume reader and the cache, so
// every row tests with errors.Is or errors.As.
var errnoTable = []struct {
	name  string
	match func(error) bool
	errno syscall.Errno
}{
	// An interrupted request: the kernel no longer waits for the answer.
	{"cancelled", func(err error) bool { return errors.Is(err, context.Canceled) }, syscall.EINTR},
	// An errno someone below already chose (ENAMETOOLONG, EROFS, ...).
	{"errno", func(err error) bool { var e syscall.Errno; return errors.As(err, &e) && e != 0 }, 0},
	{"missing", func(err error) bool { return errors.Is(err, iofs.ErrNotExist) }, syscall.ENOENT},
	// The filer refused (gRPC PermissionDenied, Unauthenticated), or a
	// volume server refused the read's JWT (HTTP 401, 403): both match
	// fs.ErrPermission.
	{"refused", func(err error) bool { return errors.Is(err, iofs.ErrPermission) }, syscall.EACCES},
}

// toErrno is the one place where errors become errnos (see errnoTable).
func toErrno(op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, row := range errnoTable {
		if !row.match(err) {
			continue
		}
		if row.errno == 0 { // the errno the error carries
			var e syscall.Errno
			errors.As(err, &e)
			return e
		}
		return row.errno
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
