package rdma

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// upstreamError is a volume server's non-success answer; its status is
// passed on to the client unchanged.
type upstreamError struct {
	status int
	msg    string
}

func (e *upstreamError) Error() string { return fmt.Sprintf("volume server: %d %s", e.status, e.msg) }

// tooLargeError says a needle does not fit in a slot. size is its stored
// length, or -1 when the volume server did not say (a chunked body).
type tooLargeError struct{ size, slot int64 }

func (e *tooLargeError) Error() string {
	if e.size < 0 {
		return fmt.Sprintf("needle exceeds the %d-byte slot", e.slot)
	}
	return fmt.Sprintf("needle of %d bytes exceeds the %d-byte slot", e.size, e.slot)
}

// errUpstreamCorrupt: the volume server's answer does not match its own
// checksum (or is coded in a way that was not asked for). Such bytes are
// neither cached nor served; the client falls back to HTTP, whose reader
// sees the same mismatch and tries another replica.
var errUpstreamCorrupt = errors.New("volume server sent a needle that fails its own checksum")

// volumeHTTP reads needles from the volume server beside weedrdma. Safe for
// concurrent use.
type volumeHTTP struct {
	base string // "http://host:port"
	hc   *http.Client
}

// newVolumeHTTP reads from the volume server at addr, over https with
// tlsCfg when it is set (security.toml's [https.client]).
func newVolumeHTTP(addr string, tlsCfg *tls.Config) *volumeHTTP {
	// DisableCompression: never let the transport decompress behind our
	// back; the needle CRC covers the stored (possibly gzip) bytes.
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64, TLSClientConfig: tlsCfg}
	base := "http://" + addr
	if tlsCfg != nil {
		base = "https://" + addr
	}
	return &volumeHTTP{base: base, hc: &http.Client{Transport: tr}}
}

func (v *volumeHTTP) close() { v.hc.CloseIdleConnections() }

func (v *volumeHTTP) request(ctx context.Context, method, fid, jwt string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, v.base+needle.GetPath(fid), nil)
	if err != nil {
		return nil, err
	}
	if auth := needle.Bearer(jwt); auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req, nil
}

// storedNeedle describes a needle fetch put into a slot.
type storedNeedle struct {
	size   int    // stored bytes
	crc    uint32 // their CRC32C
	sum    uint32 // the volume server's checksum (ETag), when hasSum
	hasSum bool
	gzip   bool // sent as Content-Encoding: gzip
}

// fetch reads the whole stored needle of fid into dst, exactly as the HTTP
// path reads it: no Range, Accept-Encoding: gzip so that a compressed needle
// comes as stored. It checks the bytes against the ETag header's needle
// checksum when there is one, so that a needle that does not match is never
// cached or served. A needle longer than dst fails with *tooLargeError
// before any byte is read into dst.
func (v *volumeHTTP) fetch(ctx context.Context, fid, jwt string, dst []byte) (storedNeedle, error) {
	req, err := v.request(ctx, http.MethodGet, fid, jwt)
	if err != nil {
		return storedNeedle{}, err
	}
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := v.hc.Do(req)
	if err != nil {
		return storedNeedle{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return storedNeedle{}, &upstreamError{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	var st storedNeedle
	if st.gzip, err = needle.ContentGzip(resp.Header.Get("Content-Encoding")); err != nil {
		return storedNeedle{}, fmt.Errorf("%w: %w", errUpstreamCorrupt, err)
	}
	if resp.ContentLength > int64(len(dst)) {
		return storedNeedle{}, &tooLargeError{size: resp.ContentLength, slot: int64(len(dst))}
	}
	n, err := io.ReadFull(resp.Body, dst)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if resp.ContentLength >= 0 && int64(n) != resp.ContentLength {
			return storedNeedle{}, fmt.Errorf("short body: %d of %d bytes", n, resp.ContentLength)
		}
	case err != nil:
		return storedNeedle{}, err
	default: // dst is full: there must be nothing more
		var one [1]byte
		if m, _ := resp.Body.Read(one[:]); m > 0 {
			return storedNeedle{}, &tooLargeError{size: -1, slot: int64(len(dst))}
		}
	}
	st.size, st.crc = n, needle.CRC32C(0, dst[:n])
	if st.sum, st.hasSum, err = needle.CheckStoredCRC(resp.Header.Get("ETag"), st.crc, n); err != nil {
		return storedNeedle{}, fmt.Errorf("%w: %w", errUpstreamCorrupt, err)
	}
	return st, nil
}

// authorize asks the volume server (HEAD) whether jwt may read fid; it is
// how a cache hit is held to the same authorization as a fetch.
func (v *volumeHTTP) authorize(ctx context.Context, fid, jwt string) error {
	req, err := v.request(ctx, http.MethodHead, fid, jwt)
	if err != nil {
		return err
	}
	resp, err := v.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &upstreamError{status: resp.StatusCode, msg: "authorization check"}
	}
	return nil
}
