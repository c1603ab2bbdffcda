package volume

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle/needletest"

	"github.com/weedfuse/weedfuse/internal/needle"
)

const testFID = "3,01637037d6"

// quickOptions keep failing tests fast.
var quickOptions = Options{ReadRetryTime: 300 * time.Millisecond, StallTimeout: time.Second}

func newTestReader(t testing.TB, loc Locator, opts Options) *Reader {
	r := New(loc, opts)
	t.Cleanup(func() { r.Close() })
	return r
}

// faultyFirst serves n from two volume servers, the first with fault f,
// to a reader that tries them in that order.
func faultyFirst(t testing.TB, n fakeNeedle, f fault) (bad, good *fakeVolume, r *Reader) {
	bad, good = newFakeVolume(t), newFakeVolume(t)
	bad.put(testFID, n)
	bad.setFault(f)
	good.put(testFID, n)
	return bad, good, newTestReader(t, newFakeLocator([]string{bad.addr, good.addr}), quickOptions)
}

// readAll reads the whole chunk through Fetch.
func readAll(t testing.TB, r *Reader, c needle.Chunk) []byte {
	t.Helper()
	dst := make([]byte, c.Size)
	n, err := readChunk(r, context.Background(), c, 0, dst)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(dst) {
		t.Fatalf("read %d of %d bytes", n, len(dst))
	}
	return dst
}

// TestReadChunkRangesShareOneWholeFetch reads pieces of a sealed needle,
// which is decoded whole and kept in the needle cache. (A plain one streams
// each request's bytes, uncached: the block cache shares its fetches.)
func TestReadChunkRangesShareOneWholeFetch(t *testing.T) {
	data := needletest.RandomBytes(t, 300_000)
	key := needletest.RandomBytes(t, 32)
	stored := needletest.Seal(t, key, data)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: stored})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	c := needle.Chunk{FileID: testFID, Size: int64(len(data)), CipherKey: key}

	for _, tt := range []struct {
		off    int64
		length int
		want   int
	}{
		{100, 100, 100},
		{0, 300_000, 300_000},
		{0, 1, 1},
		{299_999, 1, 1},
		{123_456, 65_536, 65_536},
		{290_000, 20_000, 10_000}, // the chunk ends first
		{300_000, 10, 0},
		{0, 0, 0},
	} {
		dst := make([]byte, tt.length)
		n, err := readChunk(r, context.Background(), c, tt.off, dst)
		if err != nil {
			t.Fatalf("Fetch(%d, %d): %v", tt.off, tt.length, err)
		}
		if n != tt.want {
			t.Errorf("Fetch(%d, %d) = %d, want %d", tt.off, tt.length, n, tt.want)
		}
		if !bytes.Equal(dst[:n], data[tt.off:tt.off+int64(n)]) {
			t.Errorf("Fetch(%d, %d): bytes differ from the source", tt.off, tt.length)
		}
	}
	if hits := v.hits.Load(); hits != 1 {
		t.Errorf("%d requests for eight reads of one chunk, want 1 whole fetch", hits)
	}
	h := *v.lastHeader.Load()
	if h.Get("Range") != "" || h.Get("Accept-Encoding") != "gzip" {
		t.Errorf("fetched with Range %q, Accept-Encoding %q; want no Range, gzip", h.Get("Range"), h.Get("Accept-Encoding"))
	}
	if _, err := readChunk(r, context.Background(), c, 300_001, make([]byte, 1)); err == nil {
		t.Error("reading past the end of the chunk succeeded")
	}
	s := r.Stats()
	if s.Reads != 8 || s.Errors != 1 || s.Bytes != 100+300_000+1+1+65_536+10_000 || s.Retries != 0 {
		t.Errorf("stats %+v", s)
	}
	if s.Fetches != 1 || s.FetchedBytes != int64(len(stored)) {
		t.Errorf("stats %+v: want one fetch of %d bytes", s, len(stored))
	}
}

func TestReadChunkCacheOff(t *testing.T) {
	data := needletest.RandomBytes(t, 10_000)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: data})
	opts := quickOptions
	opts.WholeCacheBytes = -1
	r := newTestReader(t, newFakeLocator([]string{v.addr}), opts)
	c := needle.Chunk{FileID: testFID, Size: int64(len(data))}
	for off := int64(0); off < 10_000; off += 2_500 {
		dst := make([]byte, 2_500)
		if _, err := readChunk(r, context.Background(), c, off, dst); err != nil || !bytes.Equal(dst, data[off:off+2_500]) {
			t.Fatalf("Fetch(%d): %v, or bytes differ", off, err)
		}
	}
	if hits := v.hits.Load(); hits != 4 {
		t.Errorf("%d fetches for four reads with the cache off, want 4", hits)
	}
}

func TestReadChunkShortBodyFailsOver(t *testing.T) {
	data := needletest.RandomBytes(t, 200_000)
	short, good, r := faultyFirst(t, fakeNeedle{data: data}, shortBody)

	dst := make([]byte, 100_000)
	n, err := readChunk(r, context.Background(), needle.Chunk{FileID: testFID, Size: int64(len(data))}, 50_000, dst)
	if err != nil || n != len(dst) {
		t.Fatalf("Fetch = %d, %v", n, err)
	}
	if !bytes.Equal(dst, data[50_000:150_000]) {
		t.Error("bytes differ")
	}
	if short.hits.Load() != 1 || good.hits.Load() != 1 {
		t.Errorf("hits: short %d, good %d", short.hits.Load(), good.hits.Load())
	}
	if s := r.Stats(); s.ReplicaFailures != 1 || s.Retries != 1 || s.Corrupt != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadChunkShortBodyIsAnError(t *testing.T) {
	data := needletest.RandomBytes(t, 200_000)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: data})
	v.setFault(shortBody)
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	dst := make([]byte, 100_000)
	n, err := readChunk(r, context.Background(), needle.Chunk{FileID: testFID, Size: int64(len(data))}, 0, dst)
	if err == nil || n != 0 {
		t.Fatalf("Fetch = %d, %v; want an error, never a silently short read", n, err)
	}
	if !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("error %q does not say the body was short", err)
	}
}

// TestReadChunkCRCMismatchFailsOver is the bug that ranged reads had: a
// flipped byte in a plain chunk without an e_tag. The bad replica sends the
// needle's true CRC with a flipped body; the flip lies outside the range
// asked for, and is caught all the same.
func TestReadChunkCRCMismatchFailsOver(t *testing.T) {
	data := needletest.RandomBytes(t, 1<<20)
	for _, form := range []crcForm{crcRaw, crcMasked} {
		bad, good, r := faultyFirst(t, fakeNeedle{data: data, crc: form}, corrupt)
		c := needle.Chunk{FileID: testFID, Size: int64(len(data))}

		dst := make([]byte, 4096)
		if n, err := readChunk(r, context.Background(), c, 0, dst); err != nil || n != len(dst) {
			t.Fatalf("crc form %d: Fetch = %d, %v", form, n, err)
		}
		if !bytes.Equal(dst, data[:4096]) {
			t.Errorf("crc form %d: bytes differ", form)
		}
		if bad.hits.Load() != 1 || good.hits.Load() != 1 {
			t.Errorf("crc form %d: hits: bad %d, good %d", form, bad.hits.Load(), good.hits.Load())
		}
		if s := r.Stats(); s.ReplicaFailures != 1 || s.Corrupt != 1 {
			t.Errorf("crc form %d: stats %+v", form, s)
		}
	}
}

func TestReadChunkCRCMismatchOnlyReplica(t *testing.T) {
	data := needletest.RandomBytes(t, 100_000)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: data})
	v.setFault(corrupt)
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	dst := make([]byte, 100)
	n, err := readChunk(r, context.Background(), needle.Chunk{FileID: testFID, Size: int64(len(data))}, 60_000, dst)
	if !errors.Is(err, needle.ErrCorrupt) || n != 0 {
		t.Fatalf("Fetch = %d, %v; want ErrCorrupt, never the flipped bytes", n, err)
	}
	if !strings.Contains(err.Error(), "crc32c") {
		t.Errorf("error %q does not name the failed check", err)
	}
}

// TestReadChunkMaskedCRC reads a needle whose server states the masked CRC
// of old weed versions.
func TestReadChunkMaskedCRC(t *testing.T) {
	data := needletest.RandomBytes(t, 50_000)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: data, crc: crcMasked})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	if got := readAll(t, r, needle.Chunk{FileID: testFID, Size: int64(len(data))}); !bytes.Equal(got, data) {
		t.Error("bytes differ")
	}
}

// TestReadChunkNoCRCChecksETag: a server that sends no CRC leaves the e_tag
// as the only check, and it is made.
func TestReadChunkNoCRCChecksETag(t *testing.T) {
	data := needletest.RandomBytes(t, 100_000)
	bad, _, r := faultyFirst(t, fakeNeedle{data: data, crc: crcNone}, corrupt)

	dst := make([]byte, 10)
	if _, err := readChunk(r, context.Background(), needle.Chunk{FileID: testFID, Size: int64(len(data)), ETag: needletest.MD5ETag(data)}, 0, dst); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst, data[:10]) {
		t.Error("bytes differ")
	}
	if s := r.Stats(); bad.hits.Load() != 1 || s.Corrupt != 1 {
		t.Errorf("bad replica hit %d times, stats %+v", bad.hits.Load(), s)
	}
}

// TestReadChunkVerifyETag: with a CRC to check, the e_tag is checked only
// when asked for. The chunk's e_tag here is wrong, which only the MD5
// can tell.
func TestReadChunkVerifyETag(t *testing.T) {
	data := needletest.RandomBytes(t, 100_000)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: data})
	c := needle.Chunk{FileID: testFID, Size: int64(len(data)), ETag: needletest.MD5ETag([]byte("other"))}

	if got := readAll(t, newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions), c); !bytes.Equal(got, data) {
		t.Error("bytes differ")
	}
	opts := quickOptions
	opts.VerifyETag = true
	r := newTestReader(t, newFakeLocator([]string{v.addr}), opts)
	if _, err := readChunk(r, context.Background(), c, 0, make([]byte, 10)); !errors.Is(err, needle.ErrCorrupt) || !strings.Contains(err.Error(), "e_tag") {
		t.Errorf("err = %v, want an e_tag mismatch", err)
	}
}

// TestReadChunkTruncated reads chunks that show a prefix of their needle,
// as weed mount leaves them after a truncate: Size lowered, needle and
// e_tag (of the whole needle) as they were.
func TestReadChunkTruncated(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	binary := needletest.RandomBytes(t, 300_000)
	text := needletest.TextBytes(300_000)
	for _, tc := range []struct {
		name   string
		stored fakeNeedle
		chunk  needle.Chunk
		whole  []byte // the needle's logical bytes
	}{
		{"plain", fakeNeedle{data: binary}, needle.Chunk{ETag: needletest.MD5ETag(binary)}, binary},
		{"gzipped", fakeNeedle{data: needletest.Gzip(text), gzipped: true}, needle.Chunk{Compressed: true, ETag: needletest.MD5ETag(text)}, text},
		{"encrypted", fakeNeedle{data: needletest.Seal(t, key, binary)}, needle.Chunk{CipherKey: key, ETag: needletest.MD5ETag(binary)}, binary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newFakeVolume(t)
			v.put(testFID, tc.stored)
			opts := quickOptions
			opts.VerifyETag = true // the e_tag covers the whole needle: it must pass
			r := newTestReader(t, newFakeLocator([]string{v.addr}), opts)
			c := tc.chunk
			c.FileID, c.Size = testFID, 200_000

			if got := readAll(t, r, c); !bytes.Equal(got, tc.whole[:200_000]) {
				t.Error("the truncated chunk's bytes differ from its needle's first Size bytes")
			}
			dst := make([]byte, 100)
			if n, err := readChunk(r, context.Background(), c, 199_990, dst); err != nil || n != 10 || !bytes.Equal(dst[:n], tc.whole[199_990:200_000]) {
				t.Errorf("Fetch at the truncated end = %d, %v; want the last 10 bytes", n, err)
			}
			// The untruncated chunk of the same needle comes from the cache.
			c.Size = int64(len(tc.whole))
			if got := readAll(t, r, c); !bytes.Equal(got, tc.whole) {
				t.Error("the whole chunk differs")
			}
			if hits := v.hits.Load(); hits != 1 {
				t.Errorf("%d fetches, want 1", hits)
			}
			// A chunk longer than its needle is corrupt metadata.
			c.Size++
			if _, err := readChunk(r, context.Background(), c, 0, make([]byte, 10)); !errors.Is(err, needle.ErrCorrupt) {
				t.Errorf("a chunk longer than its needle: err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestReadChunkNeedleShorterThanChunk(t *testing.T) {
	data := needletest.RandomBytes(t, 1000)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: data})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	_, err := readChunk(r, context.Background(), needle.Chunk{FileID: testFID, Size: 1001}, 0, make([]byte, 10))
	if !errors.Is(err, needle.ErrCorrupt) || !strings.Contains(err.Error(), "needle holds 1000 logical bytes, chunk shows 1001") {
		t.Errorf("err = %v", err)
	}
	// Streamed into the caller's buffers, from a fresh reader (the first
	// cached the needle), whole or in part: an error, never a gap.
	for _, off := range []int64{0, 500} {
		r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
		_, err := readInto(r, context.Background(), needle.Chunk{FileID: testFID, Size: 1001}, off, [][]byte{make([]byte, 1001-off)})
		if !errors.Is(err, needle.ErrCorrupt) {
			t.Errorf("Fetch(%d): err = %v, want ErrCorrupt", off, err)
		}
	}
}

func TestReadChunkAllReplicasDown(t *testing.T) {
	a, b := deadAddr(t), newFakeVolume(t)
	b.setFault(status500)
	loc := newFakeLocator([]string{a, b.addr})
	r := newTestReader(t, loc, Options{ReadRetryTime: 500 * time.Millisecond})

	start := time.Now()
	_, err := readChunk(r, context.Background(), needle.Chunk{FileID: testFID, Size: 10}, 0, make([]byte, 10))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("read succeeded")
	}
	// Loose bounds: it retried for about ReadRetryTime, and did not hang.
	if elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("gave up after %v with ReadRetryTime 500ms", elapsed)
	}
	for _, want := range []string{testFID, a, b.addr, "HTTP 500", "gave up"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	lookups, invalidations := loc.counts()
	if lookups < 2 || invalidations < 1 {
		t.Errorf("%d lookups, %d invalidations; want a fresh lookup after a failed round", lookups, invalidations)
	}
	if s := r.Stats(); s.Errors != 1 || s.ReplicaFailures < 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadChunkLooksUpAgainAfterFailure(t *testing.T) {
	data := needletest.RandomBytes(t, 1000)
	good := newFakeVolume(t)
	good.put(testFID, fakeNeedle{data: data})
	// The cached locations are stale; a fresh lookup finds the volume.
	loc := newFakeLocator([]string{deadAddr(t)}, []string{good.addr})
	r := newTestReader(t, loc, Options{ReadRetryTime: 5 * time.Second})
	if got := readAll(t, r, needle.Chunk{FileID: testFID, Size: 1000}); !bytes.Equal(got, data) {
		t.Error("bytes differ")
	}
	if _, invalidations := loc.counts(); invalidations != 1 {
		t.Errorf("%d invalidations", invalidations)
	}
}

func TestReadChunkNotFound(t *testing.T) {
	a, b := newFakeVolume(t), newFakeVolume(t)
	loc := newFakeLocator([]string{a.addr, b.addr})
	r := newTestReader(t, loc, Options{ReadRetryTime: 10 * time.Second})
	start := time.Now()
	_, err := readChunk(r, context.Background(), needle.Chunk{FileID: testFID, Size: 10}, 0, make([]byte, 10))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("a chunk missing everywhere took %v: it should not wait out ReadRetryTime", time.Since(start))
	}
	if lookups, _ := loc.counts(); lookups != 2 {
		t.Errorf("%d lookups; want one fresh lookup before giving up", lookups)
	}
	if r.Stats().ReplicaFailures != 0 {
		t.Error("a 404 put a healthy replica in the penalty box")
	}
}

func TestReadChunkContextCancel(t *testing.T) {
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: make([]byte, 10)})
	v.setFault(stall)
	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{StallTimeout: time.Minute})

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := readChunk(r, ctx, needle.Chunk{FileID: testFID, Size: 10}, 0, make([]byte, 10))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("cancellation took %v", time.Since(start))
	}
	if r.Stats().ReplicaFailures != 0 {
		t.Error("our own cancellation was blamed on the replica")
	}
}

// TestReadChunkSharedFetchOutlivesCanceller: the reader whose ctx runs the
// shared fetch gives up; another reader of the same needle still gets it.
// (Only needles decoded whole, such as sealed ones, share fetches.)
func TestReadChunkSharedFetchOutlivesCanceller(t *testing.T) {
	data, key := needletest.RandomBytes(t, 1000), needletest.RandomBytes(t, 32)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: needletest.Seal(t, key, data)})
	v.setFault(stall)
	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{StallTimeout: time.Minute})
	c := needle.Chunk{FileID: testFID, Size: 1000, CipherKey: key}

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := readChunk(r, ctx, c, 0, make([]byte, 10))
		first <- err
	}()
	for v.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	dst := make([]byte, 10)
	go func() {
		_, err := readChunk(r, context.Background(), c, 0, dst)
		second <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the second reader join the flight
	v.setFault(healthy)
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first reader: err = %v, want context.Canceled", err)
	}
	if err := <-second; err != nil || !bytes.Equal(dst, data[:10]) {
		t.Errorf("second reader: err = %v, or bytes differ", err)
	}
}

func TestReadChunkStalledReplicaFailsOver(t *testing.T) {
	data := needletest.RandomBytes(t, 1000)
	stuck, good := newFakeVolume(t), newFakeVolume(t)
	stuck.put(testFID, fakeNeedle{data: data})
	stuck.setFault(stall)
	good.put(testFID, fakeNeedle{data: data})
	r := newTestReader(t, newFakeLocator([]string{stuck.addr, good.addr}), Options{StallTimeout: 200 * time.Millisecond})
	if got := readAll(t, r, needle.Chunk{FileID: testFID, Size: 1000}); !bytes.Equal(got, data) {
		t.Error("bytes differ")
	}
	if r.Stats().ReplicaFailures != 1 {
		t.Errorf("stats %+v", r.Stats())
	}
}

func TestReadChunkJWT(t *testing.T) {
	data := needletest.RandomBytes(t, 1000)
	key := []byte("readsecret123")
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: data})
	v.requireJWT(key)
	c := needle.Chunk{FileID: testFID, Size: 1000}

	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{ReadSigningKey: key, ReadExpiresAfter: 10 * time.Second})
	if got := readAll(t, r, c); !bytes.Equal(got, data) {
		t.Error("bytes differ")
	}
	auth := (*v.lastHeader.Load()).Get("Authorization")
	if !strings.HasPrefix(auth, "Bearer ") || !validJWT(key, auth, testFID) {
		t.Errorf("Authorization %q does not verify", auth)
	}

	// A wrong key is refused by every replica alike: no point retrying.
	wrong := newTestReader(t, newFakeLocator([]string{v.addr}), Options{ReadSigningKey: []byte("wrong"), ReadRetryTime: time.Minute})
	start := time.Now()
	_, err := readChunk(wrong, context.Background(), c, 0, make([]byte, 10))
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("err = %v, want the 401", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("a rejected JWT was retried for %v", time.Since(start))
	}
}

// TestReadChunkCompressed reads a needle stored gzipped, which comes back
// "Content-Encoding: gzip". The filer's is_compressed may be false: the
// volume server gzips some uploads itself.
func TestReadChunkCompressed(t *testing.T) {
	text := needletest.TextBytes(300_000)
	for _, flagged := range []bool{true, false} {
		v := newFakeVolume(t)
		v.put(testFID, fakeNeedle{data: needletest.Gzip(text), gzipped: true})
		r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
		c := needle.Chunk{FileID: testFID, Size: int64(len(text)), Compressed: flagged, ETag: needletest.MD5ETag(text)}

		dst := make([]byte, 1000)
		n, err := readChunk(r, context.Background(), c, 100_000, dst)
		if err != nil || n != 1000 {
			t.Fatalf("is_compressed %v: Fetch = %d, %v", flagged, n, err)
		}
		if !bytes.Equal(dst, text[100_000:101_000]) {
			t.Errorf("is_compressed %v: a range of a gzipped needle differs from the logical bytes", flagged)
		}
		if got := readAll(t, r, c); !bytes.Equal(got, text) {
			t.Errorf("is_compressed %v: whole read differs", flagged)
		}
		if s := r.Stats(); s.Fetches != 1 || s.FetchedBytes >= int64(len(text))/2 {
			t.Errorf("is_compressed %v: stats %+v; want one fetch of the gzipped bytes", flagged, s)
		}
	}
}

// TestReadChunkCompressedCorruptFailsOver flips a byte of the gzipped
// bytes; the CRC catches it before gunzip sees it.
func TestReadChunkCompressedCorruptFailsOver(t *testing.T) {
	text := needletest.TextBytes(300_000)
	gz := needletest.Gzip(text)
	_, _, r := faultyFirst(t, fakeNeedle{data: gz, gzipped: true}, corrupt)
	if got := readAll(t, r, needle.Chunk{FileID: testFID, Size: int64(len(text)), Compressed: true}); !bytes.Equal(got, text) {
		t.Error("bytes differ")
	}
	if s := r.Stats(); s.Corrupt != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadChunkEncrypted(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	for _, compressed := range []bool{false, true} {
		plain := needletest.TextBytes(200_000)
		stored := plain
		if compressed {
			stored = needletest.Gzip(plain)
		}
		v := newFakeVolume(t)
		v.put(testFID, fakeNeedle{data: needletest.Seal(t, key, stored)})
		r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
		c := needle.Chunk{FileID: testFID, Size: int64(len(plain)), CipherKey: key, Compressed: compressed, ETag: needletest.MD5ETag(plain)}

		for _, off := range []int64{0, 65_536, 131_072, 196_608} {
			dst := make([]byte, 65_536)
			n, err := readChunk(r, context.Background(), c, off, dst)
			if err != nil {
				t.Fatalf("compressed=%v: Fetch(%d): %v", compressed, off, err)
			}
			if want := min(65_536, 200_000-off); int64(n) != want || !bytes.Equal(dst[:n], plain[off:off+want]) {
				t.Errorf("compressed=%v: Fetch(%d) = %d bytes that differ", compressed, off, n)
			}
		}
		if hits := v.hits.Load(); hits != 1 {
			t.Errorf("compressed=%v: %d fetches for four blocks of one chunk, want 1 (cached)", compressed, hits)
		}
	}
}

func TestReadChunkEncryptedCorruptFailsOver(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	plain := needletest.RandomBytes(t, 5000)
	sealed := needletest.Seal(t, key, plain)
	for _, form := range []crcForm{crcRaw, crcNone} {
		_, _, r := faultyFirst(t, fakeNeedle{data: sealed, crc: form}, corrupt)
		if got := readAll(t, r, needle.Chunk{FileID: testFID, Size: 5000, CipherKey: key}); !bytes.Equal(got, plain) {
			t.Errorf("crc form %d: bytes differ", form)
		}
		// Without a CRC, AES-GCM's tag is what catches it.
		if s := r.Stats(); s.ReplicaFailures != 1 || s.Corrupt != 1 {
			t.Errorf("crc form %d: stats %+v", form, s)
		}
	}
}

// TestReadChunkConcurrentReadersShareOneFetch: concurrent readers of a
// needle decoded whole (here sealed) share one fetch. (A plain needle
// streams each request's bytes: the block cache shares its fetches.)
func TestReadChunkConcurrentReadersShareOneFetch(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	plain := needletest.RandomBytes(t, 1<<20)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: needletest.Seal(t, key, plain)})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	c := needle.Chunk{FileID: testFID, Size: 1 << 20, CipherKey: key}

	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			off := int64(i) * 65_536
			dst := make([]byte, 65_536)
			if _, err := readChunk(r, context.Background(), c, off, dst); err != nil {
				t.Error(err)
			} else if !bytes.Equal(dst, plain[off:off+65_536]) {
				t.Errorf("block %d differs", i)
			}
		})
	}
	wg.Wait()
	// Readers that arrive after the shared fetch finished hit the cache;
	// the fake answers quickly, so allow a stray second fetch.
	if hits := v.hits.Load(); hits > 2 {
		t.Errorf("%d fetches for 16 concurrent readers of one chunk", hits)
	}
}

func TestReadChunkPenaltyBoxSkipsDeadReplica(t *testing.T) {
	dead, good := newFakeVolume(t), newFakeVolume(t)
	dead.setFault(status500)
	opts := quickOptions
	opts.WholeCacheBytes = -1 // every read goes to a server
	r := newTestReader(t, newFakeLocator([]string{dead.addr, good.addr}), opts)

	for i := range 3 {
		data := needletest.RandomBytes(t, 1000)
		good.put(testFID, fakeNeedle{data: data})
		if got := readAll(t, r, needle.Chunk{FileID: testFID, Size: 1000}); !bytes.Equal(got, data) {
			t.Fatalf("read %d: bytes differ", i)
		}
	}
	if hits := dead.hits.Load(); hits != 1 {
		t.Errorf("the dead replica was tried %d times; want once, then skipped", hits)
	}
	if s := r.Stats(); s.ReplicaFailures != 1 || s.Retries != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadChunkConcurrent(t *testing.T) {
	const chunks = 8
	data := needletest.RandomBytes(t, 256<<10)
	a, b := newFakeVolume(t), newFakeVolume(t)
	fids := make([]string, chunks)
	for i := range fids {
		fids[i] = needle.FormatFileID(3, uint64(i+1), 0x637037d6)
		a.put(fids[i], fakeNeedle{data: data})
		b.put(fids[i], fakeNeedle{data: data})
	}
	opts := quickOptions
	opts.WholeCacheBytes = 512 << 10 // two needles: readers evict each other's
	r := newTestReader(t, newFakeLocator([]string{a.addr, b.addr}), opts)

	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			if i == 7 {
				a.setFault(status500) // one replica dies mid-way
			}
			c := needle.Chunk{FileID: fids[i%chunks], Size: int64(len(data)), ETag: needletest.MD5ETag(data)}
			off := int64(i * 4_096)
			dst := make([]byte, 4_096)
			if _, err := readChunk(r, context.Background(), c, off, dst); err != nil {
				t.Error(err)
			} else if !bytes.Equal(dst, data[off:off+4_096]) {
				t.Errorf("read %d differs", i)
			}
		})
	}
	wg.Wait()
	if s := r.Stats(); s.Reads != 64 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadChunkBadFileID(t *testing.T) {
	r := newTestReader(t, newFakeLocator([]string{deadAddr(t)}), quickOptions)
	_, err := readChunk(r, context.Background(), needle.Chunk{FileID: "nonsense", Size: 10}, 0, make([]byte, 10))
	if err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Errorf("err = %v", err)
	}
}

func TestReadNeedle(t *testing.T) {
	blob := needletest.TextBytes(50_000)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: needletest.Gzip(blob), gzipped: true})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	// A manifest chunk's Size is the span it covers, not the blob's length.
	got, err := r.ReadNeedleChecked(context.Background(), needle.Chunk{FileID: testFID, Size: 10 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob) {
		t.Error("blob differs")
	}
}

// TestReadNeedleCheckedFailsOver: one replica holds a blob that passes every
// checksum but not the caller's check (a manifest that does not parse);
// the other replica's blob is read.
func TestReadNeedleCheckedFailsOver(t *testing.T) {
	errBad := errors.New("not a manifest")
	check := func(b []byte) error {
		if !bytes.HasPrefix(b, []byte("good")) {
			return errBad
		}
		return nil
	}
	bad, good := newFakeVolume(t), newFakeVolume(t)
	bad.put(testFID, fakeNeedle{data: []byte("bad blob")})
	good.put(testFID, fakeNeedle{data: []byte("good blob")})
	r := newTestReader(t, newFakeLocator([]string{bad.addr, good.addr}), quickOptions)

	got, err := r.ReadNeedleChecked(context.Background(), needle.Chunk{FileID: testFID}, check)
	if err != nil || string(got) != "good blob" {
		t.Fatalf("ReadNeedleChecked = %q, %v", got, err)
	}
	if s := r.Stats(); s.ReplicaFailures != 1 || s.Corrupt != 1 {
		t.Errorf("stats %+v", s)
	}

	// Bad everywhere: the error says why, and that the copies are corrupt.
	good.put(testFID, fakeNeedle{data: []byte("also bad")})
	r = newTestReader(t, newFakeLocator([]string{bad.addr, good.addr}), quickOptions)
	_, err = r.ReadNeedleChecked(context.Background(), needle.Chunk{FileID: testFID}, check)
	if !errors.Is(err, errBad) || !errors.Is(err, needle.ErrCorrupt) {
		t.Errorf("err = %v, want it to wrap the check's error and ErrCorrupt", err)
	}
}

// BenchmarkReadChunk reads 1 MiB of a 4 MiB plain chunk from a local
// httptest server, whose own copying is in the numbers too. Each read
// streams and CRC-checks the whole 4 MiB needle (a plain needle is never
// kept in the needle cache); "cold-md5" adds the e_tag check of
// Options.VerifyETag.
func BenchmarkReadChunk(b *testing.B) {
	data := needletest.RandomBytes(b, 4<<20)
	v := newFakeVolume(b)
	v.put(testFID, fakeNeedle{data: data})
	c := needle.Chunk{FileID: testFID, Size: int64(len(data)), ETag: needletest.MD5ETag(data)}
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"cold", Options{WholeCacheBytes: -1}},
		{"cold-md5", Options{WholeCacheBytes: -1, VerifyETag: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newTestReader(b, newFakeLocator([]string{v.addr}), bc.opts)
			dst := make([]byte, 1<<20)
			b.SetBytes(int64(len(dst)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := readChunk(r, context.Background(), c, 1<<20, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReadChunkIntoScatters fills several buffers with a whole plain chunk
// straight from one answer, and fails over when the answer is corrupt.
func TestReadChunkIntoScatters(t *testing.T) {
	data := needletest.RandomBytes(t, 300_000)
	_, _, r := faultyFirst(t, fakeNeedle{data: data}, corrupt)
	c := needle.Chunk{FileID: testFID, Size: int64(len(data))}

	dsts := [][]byte{make([]byte, 100_000), make([]byte, 100_000), make([]byte, 100_000)}
	n, err := readInto(r, context.Background(), c, 0, dsts)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(data) || !bytes.Equal(bytes.Join(dsts, nil), data) {
		t.Errorf("Fetch: got %d bytes that differ from the source", n)
	}
	if s := r.Stats(); s.Corrupt == 0 {
		t.Errorf("a flipped body was not counted as corrupt: %+v", s)
	}

	// A part of the chunk comes from one whole fetch, split across buffers.
	dsts = [][]byte{make([]byte, 10), make([]byte, 20)}
	if n, err := readInto(r, context.Background(), c, 1000, dsts); err != nil || n != 30 {
		t.Fatalf("Fetch(1000, 30) = %d, %v", n, err)
	}
	if !bytes.Equal(bytes.Join(dsts, nil), data[1000:1030]) {
		t.Error("Fetch(1000, 30): bytes differ from the source")
	}
}

// TestReadChunkIntoTail reads a chunk's tail, as the block cache does for a
// run of blocks that reaches the chunk's end: the head streams through the
// checksums and is dropped, so a byte flipped there (the fake flips the
// middle one) still fails the replica, and nothing is kept in the needle
// cache. The same goes for MD5 when the needle has no CRC.
func TestReadChunkIntoTail(t *testing.T) {
	data := needletest.RandomBytes(t, 300_000)
	const off = 200_000 // past the flipped byte at 150,000
	for _, form := range []crcForm{crcRaw, crcNone} {
		bad, good := newFakeVolume(t), newFakeVolume(t)
		etag := ""
		if form == crcNone {
			etag = needletest.MD5ETag(data)
		}
		bad.put(testFID, fakeNeedle{data: data, crc: form})
		bad.setFault(corrupt)
		good.put(testFID, fakeNeedle{data: data, crc: form})
		r := newTestReader(t, newFakeLocator([]string{bad.addr, good.addr}), quickOptions)
		c := needle.Chunk{FileID: testFID, Size: int64(len(data)), ETag: etag}

		dsts := [][]byte{make([]byte, 60_000), make([]byte, 40_000)}
		n, err := readInto(r, context.Background(), c, off, dsts)
		if err != nil || n != len(data)-off {
			t.Fatalf("crc form %d: Fetch(%d) = %d, %v", form, off, n, err)
		}
		if !bytes.Equal(bytes.Join(dsts, nil), data[off:]) {
			t.Errorf("crc form %d: tail bytes differ from the source", form)
		}
		if s := r.Stats(); s.Corrupt != 1 || s.Fetches != 2 {
			t.Errorf("crc form %d: stats %+v, want a corrupt fetch, then a good one", form, s)
		}
		if _, cached := r.whole.Get(testFID); cached {
			t.Errorf("crc form %d: a streamed tail left its needle in the cache", form)
		}
	}
}

// TestReadChunkIntoMiddle reads a range in the middle of a plain chunk: the
// rest of the needle is drained through the CRC, so a flip after the range
// fails the replica too.
func TestReadChunkIntoMiddle(t *testing.T) {
	data := needletest.RandomBytes(t, 300_000)
	bad, good := newFakeVolume(t), newFakeVolume(t)
	bad.put(testFID, fakeNeedle{data: data})
	bad.setFault(corrupt) // flips the byte at 150,000
	good.put(testFID, fakeNeedle{data: data})
	c := needle.Chunk{FileID: testFID, Size: int64(len(data))}
	for _, tt := range []struct {
		off   int64
		sizes []int
		want  int
	}{
		{1000, []int{10, 20}, 30},
		{299_990, []int{4, 100}, 10}, // the chunk ends in the second piece
	} {
		// A new reader each time: the first would keep the bad replica
		// in its penalty box.
		r := newTestReader(t, newFakeLocator([]string{bad.addr, good.addr}), quickOptions)
		var dsts [][]byte
		for _, n := range tt.sizes {
			dsts = append(dsts, make([]byte, n))
		}
		n, err := readInto(r, context.Background(), c, tt.off, dsts)
		if err != nil || n != tt.want {
			t.Fatalf("Fetch(%d) = %d, %v; want %d", tt.off, n, err, tt.want)
		}
		if got := bytes.Join(dsts, nil)[:n]; !bytes.Equal(got, data[tt.off:tt.off+int64(n)]) {
			t.Errorf("Fetch(%d): bytes differ from the source", tt.off)
		}
		if s := r.Stats(); s.Corrupt != 1 {
			t.Errorf("Fetch(%d): stats %+v, want the flipped replica caught", tt.off, s)
		}
	}
}

// fillSink is a needle.FillWriter that lends rooms of random sizes, and
// none at all on some calls, when the fetch goes on with Write.
type fillSink struct {
	rng           *rand.Rand
	got           []byte
	room          []byte
	fills, resets int
	calls         int // of Fill
}

func (s *fillSink) Write(p []byte) (int, error) { s.got = append(s.got, p...); return len(p), nil }
func (s *fillSink) Reset()                      { s.got = s.got[:0]; s.resets++ }

func (s *fillSink) Fill() []byte {
	// Some rooms first, so that both ways are taken in one needle.
	if s.calls++; s.calls%4 == 0 {
		return nil
	}
	s.room = make([]byte, 1+s.rng.IntN(70_000))
	return s.room
}

func (s *fillSink) Filled(n int) {
	s.got = append(s.got, s.room[:n]...)
	s.fills++
}

// TestFetchFillsTheSink: a sink that lends its buffer gets the needle read
// into it, and what a corrupt replica sent is still caught, reset and
// fetched again from the next one.
func TestFetchFillsTheSink(t *testing.T) {
	data := needletest.RandomBytes(t, 300_000)
	_, _, r := faultyFirst(t, fakeNeedle{data: data}, corrupt)
	sink := &fillSink{rng: rand.New(rand.NewPCG(1, 2))}
	c := needle.Chunk{FileID: testFID, Size: int64(len(data))}
	if _, err := r.Fetch(context.Background(), needle.Request{Chunk: c, Whole: sink}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sink.got, data) {
		t.Errorf("the sink holds %d bytes that differ from the needle's %d", len(sink.got), len(data))
	}
	if sink.fills == 0 || sink.resets != 2 {
		t.Errorf("%d fills and %d resets; want some fills, and a reset for each replica", sink.fills, sink.resets)
	}
	if s := r.Stats(); s.Corrupt != 1 {
		t.Errorf("the corrupt replica was not counted: %+v", s)
	}
}
