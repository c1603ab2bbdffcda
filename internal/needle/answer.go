package needle

import (
	"fmt"
	"strings"
)

// GetPath is the path and query of a volume server GET of the needle fid,
// for every fetcher (the HTTP reader, and weedrdma on the client's
// behalf). It asks for readDeleted=true, as weed mount does: a file being
// read may have been overwritten, and its old needles stay readable until
// vacuum.
func GetPath(fid string) string {
	return "/" + fid + "?readDeleted=true"
}

// Bearer is the Authorization header value that carries a read JWT to the
// volume server; empty when there is no token.
func Bearer(jwt string) string {
	if jwt == "" {
		return ""
	}
	return "Bearer " + jwt
}

// ContentGzip reports whether an answer's Content-Encoding header value
// says the body is the needle's stored gzip bytes. A whole-needle GET
// accepts gzip so that a compressed needle comes as stored, under the
// CRC32C in its ETag; any other coding was not asked for, and coded bytes
// must never pass for needle bytes (an error wrapping ErrCorrupt).
func ContentGzip(contentEncoding string) (bool, error) {
	switch ce := contentEncoding; {
	case ce == "" || strings.EqualFold(ce, "identity"):
		return false, nil
	case strings.EqualFold(ce, "gzip"):
		return true, nil
	default:
		return false, fmt.Errorf("unrequested Content-Encoding %q: %w", ce, ErrCorrupt)
	}
}

// CheckStoredCRC checks crc, the CRC32C of the n stored bytes of a
// whole-needle answer, against the answer's ETag header value, and returns
// the needle's checksum and whether there was one to check. A mismatch is
// an error wrapping ErrCorrupt.
func CheckStoredCRC(etag string, crc uint32, n int) (sum uint32, checked bool, err error) {
	sum, ok := NeedleCRC(etag)
	if ok && !CRCSumMatches(crc, sum) {
		return sum, true, fmt.Errorf("crc32c %08x of the %d stored bytes differs from ETag %s: %w", crc, n, etag, ErrCorrupt)
	}
	return sum, ok, nil
}
