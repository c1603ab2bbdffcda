package rdma

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weedfuse/weedfuse/internal/volume"
)

// fakeVolume is a volume server stand-in: GET and HEAD of "/fid", Range,
// stored-gzip needles sent as stored only to clients that accept gzip, and
// an optional bearer token requirement.
type fakeVolume struct {
	needles map[string][]byte // logical bytes
	gzipped map[string]bool   // stored gzip-compressed
	token   string            // required "Authorization: Bearer" value, if set
	jwtKey  []byte            // if set, require the read JWT volume.SignReadJWT makes for the fid
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
	if v.gzipped[fid] && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b)
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		b = z.Bytes()
	}
	http.ServeContent(w, r, "", timeZero, bytes.NewReader(b))
}

func TestVolumeHTTP(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	fv := &fakeVolume{needles: map[string][]byte{"1,01aa": data, "1,02bb": data}, gzipped: map[string]bool{"1,02bb": true}, token: "tok"}
	ts := httptest.NewServer(fv)
	defer ts.Close()
	v := newVolumeHTTP(strings.TrimPrefix(ts.URL, "http://"))
	defer v.close()
	ctx := context.Background()
	dst := make([]byte, 20000)

	n, total, err := v.fetch(ctx, "1,01aa", false, "tok", nil, dst)
	if err != nil || n != len(data) || total != int64(len(data)) || !bytes.Equal(dst[:n], data) {
		t.Fatalf("whole: n=%d total=%d err=%v", n, total, err)
	}
	n, total, err = v.fetch(ctx, "1,01aa", false, "tok", &[2]int64{10, 19}, dst)
	if err != nil || n != 10 || total != int64(len(data)) || !bytes.Equal(dst[:n], data[10:20]) {
		t.Fatalf("range: n=%d total=%d err=%v", n, total, err)
	}
	// Logical bytes unless raw: then the stored gzip.
	n, _, err = v.fetch(ctx, "1,02bb", false, "tok", nil, dst)
	if err != nil || !bytes.Equal(dst[:n], data) {
		t.Fatalf("gzip needle, logical: n=%d err=%v", n, err)
	}
	n, _, err = v.fetch(ctx, "1,02bb", true, "tok", nil, dst)
	if err != nil || n >= len(data) || dst[0] != 0x1f || dst[1] != 0x8b {
		t.Fatalf("gzip needle, raw: n=%d err=%v head=%x", n, err, dst[:2])
	}
	var tl *tooLargeError
	if _, _, err := v.fetch(ctx, "1,01aa", false, "tok", nil, dst[:100]); !errors.As(err, &tl) || tl.size != int64(len(data)) {
		t.Fatalf("too large: %v", err)
	}
	var ue *upstreamError
	if _, _, err := v.fetch(ctx, "1,0300", false, "tok", nil, dst); !errors.As(err, &ue) || ue.status != 404 || replyStatus(err) != 404 {
		t.Fatalf("missing: %v", err)
	}
	if _, _, err := v.fetch(ctx, "1,01aa", false, "bad", nil, dst); !errors.As(err, &ue) || ue.status != 401 {
		t.Fatalf("bad token: %v", err)
	}
	if err := v.authorize(ctx, "1,01aa", "tok"); err != nil {
		t.Fatalf("authorize: %v", err)
	}
	if err := v.authorize(ctx, "1,01aa", ""); replyStatus(err) != 401 {
		t.Fatalf("authorize without token: %v", err)
	}
}
