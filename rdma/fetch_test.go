package rdma

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/weedfuse/weedfuse/internal/volume"
)

// fakeVolume is a volume server stand-in: GET and HEAD of "/fid", Range,
// stored-gzip needles sent as stored only to clients that accept gzip, the
// needle's CRC32C as a quoted ETag (as weed sends it; masked as old weed
// stored it, or none, per needle), an optional bearer token requirement,
// and corrupted answers on demand.
type fakeVolume struct {
	needles map[string][]byte // logical bytes
	gzipped map[string]bool   // stored gzip-compressed
	etag    map[string]string // "masked" or "none"; default the raw CRC32C
	token   string            // required "Authorization: Bearer" value, if set
	jwtKey  []byte            // if set, require the read JWT volume.SignReadJWT makes for the fid
	// corrupt is how many of the next GETs answer with one byte of the
	// body flipped, under the intact needle's ETag.
	corrupt atomic.Int32

	mu     sync.Mutex
	stored map[string]fakeStored // guarded by mu: computed on first use
}

type fakeStored struct {
	data []byte
	etag string
}

// storedNeedle returns a needle's stored bytes and ETag header.
func (v *fakeVolume) storedNeedle(fid string) fakeStored {
	v.mu.Lock()
	defer v.mu.Unlock()
	if st, ok := v.stored[fid]; ok {
		return st
	}
	st := fakeStored{data: v.needles[fid]}
	if v.gzipped[fid] {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(st.data)
		zw.Close()
		st.data = z.Bytes()
	}
	sum := stdCRC(0, st.data)
	switch v.etag[fid] {
	case "none":
	case "masked":
		st.etag = fmt.Sprintf(`"%08x"`, (sum>>15|sum<<17)+0xa282ead8)
	default:
		st.etag = fmt.Sprintf(`"%08x"`, sum)
	}
	if v.stored == nil {
		v.stored = map[string]fakeStored{}
	}
	v.stored[fid] = st
	return st
}

func (v *fakeVolume) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fid := strings.TrimPrefix(r.URL.Path, "/")
	if v.token != "" && r.Header.Get("Authorization") != "Bearer "+v.token ||
		v.jwtKey != nil && r.Header.Get("Authorization") != "Bearer "+volume.SignReadJWT(v.jwtKey, fid, 0) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	b, ok := v.needles[fid]
	if !ok {
		http.NotFound(w, r)
		return
	}
	st := v.storedNeedle(fid)
	if st.etag != "" {
		w.Header().Set("ETag", st.etag)
	}
	if v.gzipped[fid] && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		b = st.data
	}
	if r.Method == http.MethodGet && v.corrupt.Add(-1) >= 0 {
		b = bytes.Clone(b)
		b[len(b)/3] ^= 0x20
	}
	http.ServeContent(w, r, "", timeZero, bytes.NewReader(b))
}

func TestVolumeHTTP(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	fv := &fakeVolume{needles: map[string][]byte{"1,01aa": data, "1,02bb": data, "1,03cc": data, "1,04dd": data},
		gzipped: map[string]bool{"1,02bb": true}, etag: map[string]string{"1,03cc": "masked", "1,04dd": "none"}, token: "tok"}
	ts := httptest.NewServer(fv)
	defer ts.Close()
	v := newVolumeHTTP(strings.TrimPrefix(ts.URL, "http://"), nil)
	defer v.close()
	ctx := context.Background()
	dst := make([]byte, 20000)
	crc := stdCRC(0, data)

	st, err := v.fetch(ctx, "1,01aa", "tok", dst)
	if err != nil || st != (storedNeedle{size: len(data), crc: crc, sum: crc, hasSum: true}) || !bytes.Equal(dst[:st.size], data) {
		t.Fatalf("plain: %+v err=%v", st, err)
	}
	// A gzip-stored needle comes as stored, and says so.
	st, err = v.fetch(ctx, "1,02bb", "tok", dst)
	if err != nil || !st.gzip || !st.hasSum || st.size >= len(data) || dst[0] != 0x1f || dst[1] != 0x8b || st.crc != stdCRC(0, dst[:st.size]) {
		t.Fatalf("gzip needle: %+v err=%v head=%x", st, err, dst[:2])
	}
	// Old servers' masked checksum is one too; no ETag is no checksum.
	if st, err = v.fetch(ctx, "1,03cc", "tok", dst); err != nil || !st.hasSum || st.crc != crc {
		t.Fatalf("masked ETag: %+v err=%v", st, err)
	}
	if st, err = v.fetch(ctx, "1,04dd", "tok", dst); err != nil || st.hasSum || st.crc != crc {
		t.Fatalf("no ETag: %+v err=%v", st, err)
	}
	// A body that does not match its ETag is refused: 502 to the client.
	fv.corrupt.Store(1)
	if _, err := v.fetch(ctx, "1,01aa", "tok", dst); !errors.Is(err, errUpstreamCorrupt) || replyStatus(err) != statusUpstream {
		t.Fatalf("corrupt body: %v", err)
	}
	var tl *tooLargeError
	if _, err := v.fetch(ctx, "1,01aa", "tok", dst[:100]); !errors.As(err, &tl) || tl.size != int64(len(data)) || replyStatus(err) != statusTooLarge {
		t.Fatalf("too large: %v", err)
	}
	var ue *upstreamError
	if _, err := v.fetch(ctx, "1,0300", "tok", dst); !errors.As(err, &ue) || ue.status != 404 || replyStatus(err) != 404 {
		t.Fatalf("missing: %v", err)
	}
	if _, err := v.fetch(ctx, "1,01aa", "bad", dst); !errors.As(err, &ue) || ue.status != 401 {
		t.Fatalf("bad token: %v", err)
	}
	if err := v.authorize(ctx, "1,01aa", "tok"); err != nil {
		t.Fatalf("authorize: %v", err)
	}
	if err := v.authorize(ctx, "1,01aa", ""); replyStatus(err) != 401 {
		t.Fatalf("authorize without token: %v", err)
	}
}

// TestVolumeHTTPOddAnswers: a coding that was not asked for, and a chunked
// body longer than the slot.
func TestVolumeHTTPOddAnswers(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("readDeleted") != "true" {
			http.Error(w, "readDeleted missing", http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/1,01aa":
			w.Header().Set("Content-Encoding", "br")
			w.Write([]byte("brotli"))
		case "/1,02bb":
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write(make([]byte, 200))
		}
	}))
	defer ts.Close()
	v := newVolumeHTTP(strings.TrimPrefix(ts.URL, "http://"), nil)
	defer v.close()
	if _, err := v.fetch(context.Background(), "1,01aa", "", make([]byte, 100)); !errors.Is(err, errUpstreamCorrupt) {
		t.Fatalf("unrequested coding: %v", err)
	}
	var tl *tooLargeError
	if _, err := v.fetch(context.Background(), "1,02bb", "", make([]byte, 100)); !errors.As(err, &tl) || tl.size != -1 {
		t.Fatalf("chunked body over the slot: %v", err)
	}
}

// With [https.client] the volume server is read over https.
func TestVolumeHTTPOverTLS(t *testing.T) {
	data := bytes.Repeat([]byte("tls"), 1000)
	fv := &fakeVolume{needles: map[string][]byte{"1,01aa": data}, token: "tok"}
	ts := httptest.NewTLSServer(fv)
	defer ts.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	v := newVolumeHTTP(strings.TrimPrefix(ts.URL, "https://"), &tls.Config{RootCAs: pool})
	defer v.close()
	dst := make([]byte, 4000)
	st, err := v.fetch(context.Background(), "1,01aa", "tok", dst)
	if err != nil || !bytes.Equal(dst[:st.size], data) {
		t.Fatalf("over https: %+v err=%v", st, err)
	}
	plain := newVolumeHTTP(strings.TrimPrefix(ts.URL, "https://"), nil)
	defer plain.close()
	if _, err := plain.fetch(context.Background(), "1,01aa", "tok", dst); err == nil {
		t.Error("plain http to an https server succeeded")
	}
}
