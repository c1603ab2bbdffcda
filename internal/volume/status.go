package volume

import "errors"

// HTTPStatus returns the HTTP status code of the volume server's reply
// that err reports, or 0 when err is not about such a reply. It lets the
// FUSE layer tell a refused read (401, 403: a missing or wrong JWT) from
// a failed one.
func HTTPStatus(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	return 0
}
