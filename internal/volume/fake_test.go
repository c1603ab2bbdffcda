package volume

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// fault is how a fake volume server misbehaves.
type fault int

const (
	healthy   fault = iota
	status500       // answers 500
	notFound        // answers 404
	shortBody       // promises the whole body, sends half, hangs up
	corrupt         // flips one body byte, with the true ETag header
	stall           // sends nothing until the client gives up
)

// crcForm is how a fake volume server states a needle's checksum.
type crcForm int

const (
	crcRaw    crcForm = iota // ETag "%08x" of the raw CRC32C, as weed 4.48 does
	crcMasked                // ETag of the masked CRC that old weed versions stored
	crcNone                  // no ETag header, as a server that sends none
)

// fakeNeedle is what a fake volume server stores under a file id.
type fakeNeedle struct {
	// data are the stored bytes, which the ETag header's CRC covers.
	data []byte
	// gzipped marks a needle stored compressed, which the fake serves as
	// weed's volume server does: as stored, "Content-Encoding: gzip", to a
	// client that accepts gzip; gunzipped to one that does not.
	gzipped bool
	crc     crcForm
}

// fakeVolume is an httptest volume server with fault injection.
type fakeVolume struct {
	srv  *httptest.Server
	addr string

	mu sync.Mutex
	// needles, fault and readKey are guarded by mu.
	needles map[string]fakeNeedle
	fault   fault
	readKey []byte

	hits atomic.Int64
	// lastHeader is the header of the latest request.
	lastHeader atomic.Pointer[http.Header]
}

func newFakeVolume(t testing.TB) *fakeVolume {
	v := &fakeVolume{needles: map[string]fakeNeedle{}}
	v.srv = httptest.NewServer(http.HandlerFunc(v.serve))
	v.addr = strings.TrimPrefix(v.srv.URL, "http://")
	t.Cleanup(v.srv.Close)
	return v
}

func (v *fakeVolume) put(fid string, n fakeNeedle) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.needles[fid] = n
}

func (v *fakeVolume) setFault(f fault) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.fault = f
}

func (v *fakeVolume) requireJWT(key []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.readKey = key
}

func (v *fakeVolume) serve(w http.ResponseWriter, r *http.Request) {
	v.hits.Add(1)
	h := r.Header.Clone()
	v.lastHeader.Store(&h)
	fid := strings.TrimPrefix(r.URL.Path, "/")
	v.mu.Lock()
	n, ok := v.needles[fid]
	f, key := v.fault, v.readKey
	v.mu.Unlock()

	if key != nil && !validJWT(key, r.Header.Get("Authorization"), fid) {
		http.Error(w, `{"error":"wrong jwt"}`, http.StatusUnauthorized)
		return
	}
	switch f {
	case status500:
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case notFound:
		ok = false
	case stall:
		<-r.Context().Done()
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	sum := crc32.Checksum(n.data, crc32.MakeTable(crc32.Castagnoli))
	switch n.crc {
	case crcRaw:
		w.Header().Set("ETag", fmt.Sprintf(`"%08x"`, sum))
	case crcMasked:
		w.Header().Set("ETag", fmt.Sprintf(`"%08x"`, (sum>>15|sum<<17)+0xa282ead8))
	}
	body := n.data
	if n.gzipped {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			// As weed's does; http.ServeContent would send it chunked.
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		} else {
			body = gunzipForTest(body)
		}
	}
	switch f {
	case corrupt:
		body = bytes.Clone(body)
		body[len(body)/2] ^= 0xff
	case shortBody:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// validJWT checks a bearer token the way weed's volume server does: HS256
// signature, fid claim, and exp when present.
func validJWT(key []byte, authorization, fid string) bool {
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || !strings.Contains(string(header), `"HS256"`) {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var claims struct {
		Fid string `json:"fid"`
		Exp *int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Fid != fid {
		return false
	}
	return claims.Exp == nil || time.Now().Unix() < *claims.Exp
}

// deadAddr returns the address of a server that has stopped, which refuses
// connections.
func deadAddr(t testing.TB) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	return addr
}

// fakeLocator serves fixed locations per volume; after an Invalidate it
// switches to the next set, if one was given.
type fakeLocator struct {
	mu sync.Mutex
	// sets, lookups and invalidations are guarded by mu.
	sets          [][]string
	lookups       int
	invalidations int
}

func newFakeLocator(sets ...[]string) *fakeLocator {
	return &fakeLocator{sets: sets}
}

func (l *fakeLocator) Locations(ctx context.Context, vid uint32) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lookups++
	return l.sets[0], nil
}

func (l *fakeLocator) Invalidate(vid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.invalidations++
	if len(l.sets) > 1 {
		l.sets = l.sets[1:]
	}
}

func (l *fakeLocator) counts() (lookups, invalidations int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lookups, l.invalidations
}

func gunzipForTest(data []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		panic(err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(zr); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// readChunk fetches [off, off+len(dst)) of c into dst, the whole needle
// checked.
func readChunk(r *Reader, ctx context.Context, c needle.Chunk, off int64, dst []byte) (int, error) {
	return r.Fetch(ctx, needle.Request{Chunk: c, Off: off, Dsts: [][]byte{dst}})
}

// readInto is readChunk into several buffers.
func readInto(r *Reader, ctx context.Context, c needle.Chunk, off int64, dsts [][]byte) (int, error) {
	return r.Fetch(ctx, needle.Request{Chunk: c, Off: off, Dsts: dsts})
}

// readRange fetches just the range that dsts hold, unchecked.
func readRange(r *Reader, ctx context.Context, c needle.Chunk, off int64, dsts [][]byte) (int, error) {
	return r.Fetch(ctx, needle.Request{Chunk: c, Off: off, Dsts: dsts, Range: true})
}
