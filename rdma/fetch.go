package rdma

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// upstreamError is a volume server's non-success answer; its status is
// passed on to the client unchanged.
type upstreamError struct {
	status int
	msg    string
}

func (e *upstreamError) Error() string { return fmt.Sprintf("volume server: %d %s", e.status, e.msg) }

// tooLargeError says a needle does not fit in a slot.
type tooLargeError struct{ size int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("needle of %d bytes exceeds the slot size", e.size)
}

// volumeHTTP reads needles from the volume server beside weedrdma. Safe for
// concurrent use.
type volumeHTTP struct {
	base string // "http://host:port"
	hc   *http.Client
}

func newVolumeHTTP(addr string) *volumeHTTP {
	// DisableCompression: never let the transport add Accept-Encoding and
	// decompress behind our back; we ask for gzip exactly when we want the
	// stored bytes.
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}
	return &volumeHTTP{base: "http://" + addr, hc: &http.Client{Transport: tr}}
}

func (v *volumeHTTP) close() { v.hc.CloseIdleConnections() }

func (v *volumeHTTP) request(ctx context.Context, method, fid, jwt string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, v.base+"/"+fid, nil)
	if err != nil {
		return nil, err
	}
	if jwt != "" {
		req.Header.Set("Authorization", "Bearer "+jwt)
	}
	return req, nil
}

// fetch reads a needle into dst. With raw it sends Accept-Encoding: gzip, so
// a gzip-stored needle comes back as stored. With rng (a [first, last]
// inclusive byte range) it asks for that range only. It returns the bytes
// read and the needle's total size; a needle (or range) longer than dst
// fails with *tooLargeError before any byte is read into dst.
func (v *volumeHTTP) fetch(ctx context.Context, fid string, raw bool, jwt string, rng *[2]int64, dst []byte) (int, int64, error) {
	req, err := v.request(ctx, http.MethodGet, fid, jwt)
	if err != nil {
		return 0, 0, err
	}
	if raw {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	if rng != nil {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", rng[0], rng[1]))
	}
	resp, err := v.hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return 0, 0, &upstreamError{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	total := resp.ContentLength
	if resp.StatusCode == http.StatusPartialContent {
		// Content-Range: bytes first-last/total
		cr := resp.Header.Get("Content-Range")
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			total, _ = strconv.ParseInt(cr[i+1:], 10, 64)
		}
	}
	if resp.ContentLength > int64(len(dst)) {
		return 0, total, &tooLargeError{size: total}
	}
	n, err := io.ReadFull(resp.Body, dst)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if resp.ContentLength >= 0 && int64(n) != resp.ContentLength {
			return 0, 0, fmt.Errorf("short body: %d of %d bytes", n, resp.ContentLength)
		}
	case err != nil:
		return 0, 0, err
	default: // dst is full: there must be nothing more
		var one [1]byte
		if m, _ := resp.Body.Read(one[:]); m > 0 {
			return 0, 0, &tooLargeError{size: total}
		}
	}
	if resp.ContentLength < 0 && resp.StatusCode == http.StatusOK {
		total = int64(n)
	}
	return n, total, nil
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
