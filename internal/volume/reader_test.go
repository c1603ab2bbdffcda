package volume

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"
)

const testFID = "3,01637037d6"

// quickOptions keep failing tests fast.
var quickOptions = Options{ReadRetryTime: 300 * time.Millisecond, StallTimeout: time.Second}

func newTestReader(t testing.TB, loc Locator, opts Options) *Reader {
	r := New(loc, opts)
	t.Cleanup(func() { r.Close() })
	return r
}

// readAll reads the whole chunk through ReadChunk.
func readAll(t testing.TB, r *Reader, c Chunk) []byte {
	t.Helper()
	dst := make([]byte, c.Size)
	n, err := r.ReadChunk(context.Background(), c, 0, dst)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(dst) {
		t.Fatalf("read %d of %d bytes", n, len(dst))
	}
	return dst
}

func TestReadChunkRanges(t *testing.T) {
	data := randomBytes(t, 300_000)
	v := newFakeVolume(t)
	v.put(testFID, needle{data: data})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	c := Chunk{FileID: testFID, Size: int64(len(data))}

	for _, tt := range []struct {
		off    int64
		length int
		want   int
	}{
		{0, 300_000, 300_000},
		{0, 1, 1},
		{100, 100, 100},
		{299_999, 1, 1},
		{123_456, 65_536, 65_536},
		{290_000, 20_000, 10_000}, // the chunk ends first
		{300_000, 10, 0},
		{0, 0, 0},
	} {
		dst := make([]byte, tt.length)
		n, err := r.ReadChunk(context.Background(), c, tt.off, dst)
		if err != nil {
			t.Fatalf("ReadChunk(%d, %d): %v", tt.off, tt.length, err)
		}
		if n != tt.want {
			t.Errorf("ReadChunk(%d, %d) = %d, want %d", tt.off, tt.length, n, tt.want)
		}
		if !bytes.Equal(dst[:n], data[tt.off:tt.off+int64(n)]) {
			t.Errorf("ReadChunk(%d, %d): bytes differ from the source", tt.off, tt.length)
		}
	}
	if got := (*v.lastHeader.Load()).Get("Accept-Encoding"); got != "identity" {
		t.Errorf("Accept-Encoding %q, want identity", got)
	}
	if _, err := r.ReadChunk(context.Background(), c, 300_001, make([]byte, 1)); err == nil {
		t.Error("reading past the end of the chunk succeeded")
	}
	if s := r.Stats(); s.Reads != 8 || s.Errors != 1 || s.Bytes != 300_000+1+100+1+65_536+10_000 || s.Retries != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadChunkWholeRange200(t *testing.T) {
	data := randomBytes(t, 100_000)
	v := newFakeVolume(t)
	v.put(testFID, needle{data: data})
	v.setFault(ignoreRange)
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	c := Chunk{FileID: testFID, Size: int64(len(data)), ETag: md5ETag(data)}

	dst := make([]byte, 5000)
	n, err := r.ReadChunk(context.Background(), c, 40_000, dst)
	if err != nil || n != len(dst) {
		t.Fatalf("ReadChunk = %d, %v", n, err)
	}
	if !bytes.Equal(dst, data[40_000:45_000]) {
		t.Error("a 200 reply to a Range was not skipped to the offset")
	}
	if got := readAll(t, r, c); !bytes.Equal(got, data) {
		t.Error("whole read differs")
	}
}

func TestReadChunkShortBodyFailsOver(t *testing.T) {
	data := randomBytes(t, 200_000)
	short, good := newFakeVolume(t), newFakeVolume(t)
	short.put(testFID, needle{data: data})
	short.setFault(shortBody)
	good.put(testFID, needle{data: data})
	r := newTestReader(t, newFakeLocator([]string{short.addr, good.addr}), quickOptions)

	dst := make([]byte, 100_000)
	n, err := r.ReadChunk(context.Background(), Chunk{FileID: testFID, Size: int64(len(data))}, 50_000, dst)
	if err != nil || n != len(dst) {
		t.Fatalf("ReadChunk = %d, %v", n, err)
	}
	if !bytes.Equal(dst, data[50_000:150_000]) {
		t.Error("bytes differ")
	}
	if short.hits.Load() != 1 || good.hits.Load() != 1 {
		t.Errorf("hits: short %d, good %d", short.hits.Load(), good.hits.Load())
	}
	if s := r.Stats(); s.ReplicaFailures != 1 || s.Retries != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadChunkShortBodyIsAnError(t *testing.T) {
	data := randomBytes(t, 200_000)
	v := newFakeVolume(t)
	v.put(testFID, needle{data: data})
	v.setFault(shortBody)
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	dst := make([]byte, 100_000)
	n, err := r.ReadChunk(context.Background(), Chunk{FileID: testFID, Size: int64(len(data))}, 0, dst)
	if err == nil || n != 0 {
		t.Fatalf("ReadChunk = %d, %v; want an error, never a silently short read", n, err)
	}
	if !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("error %q does not say the body was short", err)
	}
}

func TestReadChunkCorruptReplicaFailsOver(t *testing.T) {
	data := randomBytes(t, 100_000)
	bad, good := newFakeVolume(t), newFakeVolume(t)
	bad.put(testFID, needle{data: data})
	bad.setFault(corrupt)
	good.put(testFID, needle{data: data})
	r := newTestReader(t, newFakeLocator([]string{bad.addr, good.addr}), quickOptions)

	got := readAll(t, r, Chunk{FileID: testFID, Size: int64(len(data)), ETag: md5ETag(data)})
	if !bytes.Equal(got, data) {
		t.Error("bytes differ")
	}
	if bad.hits.Load() != 1 || good.hits.Load() != 1 {
		t.Errorf("hits: bad %d, good %d", bad.hits.Load(), good.hits.Load())
	}
	if r.Stats().ReplicaFailures != 1 {
		t.Errorf("stats %+v", r.Stats())
	}

	// Without the check the corrupt copy goes unnoticed: the check is
	// what caught it.
	opts := quickOptions
	opts.SkipETagCheck = true
	unchecked := newTestReader(t, newFakeLocator([]string{bad.addr, good.addr}), opts)
	if got := readAll(t, unchecked, Chunk{FileID: testFID, Size: int64(len(data)), ETag: md5ETag(data)}); bytes.Equal(got, data) {
		t.Error("SkipETagCheck still checked")
	}
}

func TestReadChunkAllReplicasDown(t *testing.T) {
	a, b := deadAddr(t), newFakeVolume(t)
	b.setFault(status500)
	loc := newFakeLocator([]string{a, b.addr})
	r := newTestReader(t, loc, Options{ReadRetryTime: 500 * time.Millisecond})

	start := time.Now()
	_, err := r.ReadChunk(context.Background(), Chunk{FileID: testFID, Size: 10}, 0, make([]byte, 10))
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
	data := randomBytes(t, 1000)
	good := newFakeVolume(t)
	good.put(testFID, needle{data: data})
	// The cached locations are stale; a fresh lookup finds the volume.
	loc := newFakeLocator([]string{deadAddr(t)}, []string{good.addr})
	r := newTestReader(t, loc, Options{ReadRetryTime: 5 * time.Second})
	if got := readAll(t, r, Chunk{FileID: testFID, Size: 1000}); !bytes.Equal(got, data) {
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
	_, err := r.ReadChunk(context.Background(), Chunk{FileID: testFID, Size: 10}, 0, make([]byte, 10))
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
	v.put(testFID, needle{data: make([]byte, 10)})
	v.setFault(stall)
	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{StallTimeout: time.Minute})

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := r.ReadChunk(ctx, Chunk{FileID: testFID, Size: 10}, 0, make([]byte, 10))
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

func TestReadChunkStalledReplicaFailsOver(t *testing.T) {
	data := randomBytes(t, 1000)
	stuck, good := newFakeVolume(t), newFakeVolume(t)
	stuck.put(testFID, needle{data: data})
	stuck.setFault(stall)
	good.put(testFID, needle{data: data})
	r := newTestReader(t, newFakeLocator([]string{stuck.addr, good.addr}), Options{StallTimeout: 200 * time.Millisecond})
	if got := readAll(t, r, Chunk{FileID: testFID, Size: 1000}); !bytes.Equal(got, data) {
		t.Error("bytes differ")
	}
	if r.Stats().ReplicaFailures != 1 {
		t.Errorf("stats %+v", r.Stats())
	}
}

func TestReadChunkJWT(t *testing.T) {
	data := randomBytes(t, 1000)
	key := []byte("readsecret123")
	v := newFakeVolume(t)
	v.put(testFID, needle{data: data})
	v.requireJWT(key)
	c := Chunk{FileID: testFID, Size: 1000}

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
	_, err := wrong.ReadChunk(context.Background(), c, 0, make([]byte, 10))
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("err = %v, want the 401", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("a rejected JWT was retried for %v", time.Since(start))
	}
}

func TestReadChunkCompressed(t *testing.T) {
	text := textBytes(300_000)
	v := newFakeVolume(t)
	v.put(testFID, needle{data: gzipForTest(text), gzipped: true})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	c := Chunk{FileID: testFID, Size: int64(len(text)), Compressed: true, ETag: md5ETag(text)}

	dst := make([]byte, 1000)
	n, err := r.ReadChunk(context.Background(), c, 100_000, dst)
	if err != nil || n != 1000 {
		t.Fatalf("ReadChunk = %d, %v", n, err)
	}
	if !bytes.Equal(dst, text[100_000:101_000]) {
		t.Error("ranged read of a gzipped needle differs from the logical bytes")
	}
	if got := readAll(t, r, c); !bytes.Equal(got, text) {
		t.Error("whole read differs")
	}
}

func TestReadChunkEncrypted(t *testing.T) {
	key := randomBytes(t, 32)
	for _, compressed := range []bool{false, true} {
		plain := textBytes(200_000)
		stored := plain
		if compressed {
			stored = gzipForTest(plain)
		}
		v := newFakeVolume(t)
		v.put(testFID, needle{data: sealForTest(t, key, stored)})
		r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
		c := Chunk{FileID: testFID, Size: int64(len(plain)), CipherKey: key, Compressed: compressed, ETag: md5ETag(plain)}

		for _, off := range []int64{0, 65_536, 131_072, 196_608} {
			dst := make([]byte, 65_536)
			n, err := r.ReadChunk(context.Background(), c, off, dst)
			if err != nil {
				t.Fatalf("compressed=%v: ReadChunk(%d): %v", compressed, off, err)
			}
			if want := min(65_536, 200_000-off); int64(n) != want || !bytes.Equal(dst[:n], plain[off:off+want]) {
				t.Errorf("compressed=%v: ReadChunk(%d) = %d bytes that differ", compressed, off, n)
			}
		}
		if hits := v.hits.Load(); hits != 1 {
			t.Errorf("compressed=%v: %d fetches for four blocks of one chunk, want 1 (cached)", compressed, hits)
		}
		if h := *v.lastHeader.Load(); h.Get("Range") != "" || h.Get("Accept-Encoding") != "identity" {
			t.Errorf("compressed=%v: an encrypted chunk was fetched with Range %q, Accept-Encoding %q", compressed, h.Get("Range"), h.Get("Accept-Encoding"))
		}
	}
}

func TestReadChunkEncryptedCorruptFailsOver(t *testing.T) {
	key := randomBytes(t, 32)
	plain := randomBytes(t, 5000)
	sealed := sealForTest(t, key, plain)
	bad, good := newFakeVolume(t), newFakeVolume(t)
	bad.put(testFID, needle{data: sealed})
	bad.setFault(corrupt)
	good.put(testFID, needle{data: sealed})
	r := newTestReader(t, newFakeLocator([]string{bad.addr, good.addr}), quickOptions)
	if got := readAll(t, r, Chunk{FileID: testFID, Size: 5000, CipherKey: key}); !bytes.Equal(got, plain) {
		t.Error("bytes differ")
	}
	if r.Stats().ReplicaFailures != 1 {
		t.Errorf("stats %+v", r.Stats())
	}
}

func TestReadChunkEncryptedConcurrentReadersShareOneFetch(t *testing.T) {
	key := randomBytes(t, 32)
	plain := randomBytes(t, 1<<20)
	v := newFakeVolume(t)
	v.put(testFID, needle{data: sealForTest(t, key, plain)})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	c := Chunk{FileID: testFID, Size: 1 << 20, CipherKey: key}

	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			off := int64(i) * 65_536
			dst := make([]byte, 65_536)
			if _, err := r.ReadChunk(context.Background(), c, off, dst); err != nil {
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
	data := randomBytes(t, 1000)
	dead, good := newFakeVolume(t), newFakeVolume(t)
	dead.setFault(status500)
	good.put(testFID, needle{data: data})
	r := newTestReader(t, newFakeLocator([]string{dead.addr, good.addr}), quickOptions)
	c := Chunk{FileID: testFID, Size: 1000}

	for range 3 {
		if got := readAll(t, r, c); !bytes.Equal(got, data) {
			t.Fatal("bytes differ")
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
	data := randomBytes(t, 1<<20)
	a, b := newFakeVolume(t), newFakeVolume(t)
	a.put(testFID, needle{data: data})
	b.put(testFID, needle{data: data})
	r := newTestReader(t, newFakeLocator([]string{a.addr, b.addr}), quickOptions)
	c := Chunk{FileID: testFID, Size: int64(len(data)), ETag: md5ETag(data)}

	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			if i == 7 {
				a.setFault(status500) // one replica dies mid-way
			}
			off := int64(i * 32_768)
			dst := make([]byte, 32_768)
			if _, err := r.ReadChunk(context.Background(), c, off, dst); err != nil {
				t.Error(err)
			} else if !bytes.Equal(dst, data[off:off+32_768]) {
				t.Errorf("block %d differs", i)
			}
		})
	}
	wg.Wait()
	if s := r.Stats(); s.Reads != 32 || s.Errors != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestReadChunkBadFileID(t *testing.T) {
	r := newTestReader(t, newFakeLocator([]string{deadAddr(t)}), quickOptions)
	_, err := r.ReadChunk(context.Background(), Chunk{FileID: "nonsense", Size: 10}, 0, make([]byte, 10))
	if err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Errorf("err = %v", err)
	}
}

// BenchmarkReadChunk1MiB reads a whole 1 MiB chunk from a local httptest
// server, whose own copying is in the numbers too. "etag" adds the MD5
// check that whole-chunk reads make when the chunk has an e_tag.
func BenchmarkReadChunk1MiB(b *testing.B) {
	data := randomBytes(b, 1<<20)
	v := newFakeVolume(b)
	v.put(testFID, needle{data: data})
	r := newTestReader(b, newFakeLocator([]string{v.addr}), Options{})
	for _, bc := range []struct {
		name string
		etag string
	}{{"plain", ""}, {"etag", md5ETag(data)}} {
		b.Run(bc.name, func(b *testing.B) {
			c := Chunk{FileID: testFID, Size: int64(len(data)), ETag: bc.etag}
			dst := make([]byte, len(data))
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.ReadChunk(context.Background(), c, 0, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
