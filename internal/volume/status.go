package volume

import (
	"io/fs"
	"net/http"
)

// statusError is a volume server's reply with an unexpected HTTP status.
type statusError struct {
	code   int
	status string
}

func (e *statusError) Error() string { return "HTTP " + e.status }

// Is makes a 404 match fs.ErrNotExist, and a 401 or 403 (a missing or
// wrong read JWT) fs.ErrPermission, so that the FUSE layer tells a refused
// read from a failed one by the error alone.
func (e *statusError) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.code == http.StatusNotFound
	case fs.ErrPermission:
		return e.code == http.StatusUnauthorized || e.code == http.StatusForbidden
	}
	return false
}
