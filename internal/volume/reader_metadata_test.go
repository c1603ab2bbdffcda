package volume

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/needle/needletest"
)

// TestBadCipherKeyIsRefusedBeforeAnyRequest: a chunk whose cipher key has
// a length AES does not take (filer metadata, the same for every replica)
// is known bad before any request: no replica can ever serve it. It is
// refused at once, with no needle fetched and no replica counted corrupt
// or put in the penalty box (rather than round after round of whole-needle
// fetches until ReadRetryTime).
func TestBadCipherKeyIsRefusedBeforeAnyRequest(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	plain := needletest.RandomBytes(t, 1<<20)
	sealed := needletest.Seal(t, key, plain)
	v1, v2 := newFakeVolume(t), newFakeVolume(t)
	v1.put(testFID, fakeNeedle{data: sealed})
	v2.put(testFID, fakeNeedle{data: sealed})
	r := newTestReader(t, newFakeLocator([]string{v1.addr, v2.addr}), Options{ReadRetryTime: 2 * time.Second})
	c := needle.Chunk{FileID: testFID, Size: int64(len(plain)), CipherKey: key[:5]}
	start := time.Now()
	_, err := readChunk(r, context.Background(), c, 0, make([]byte, 4096))
	took := time.Since(start)
	if err == nil {
		t.Fatal("a 5-byte AES key decrypted")
	}
	hits := v1.hits.Load() + v2.hits.Load()
	s := r.Stats()
	t.Logf("err after %v, %d requests, %d MiB fetched: %.200v", took, hits, s.FetchedBytes>>20, err)
	if hits > 1 || s.ReplicaFailures > 0 {
		t.Errorf("a cipher key of 5 bytes cost %d whole-needle fetches over %v and %d replica failures (%d counted corrupt); it can be refused before any request",
			hits, took.Round(time.Millisecond), s.ReplicaFailures, s.Corrupt)
	}
}

// TestSharedFetchIsNotFailedByAnotherChunksSize: concurrent reads of one
// needle share one fetch, and that fetch checks the needle's length
// against the Size of the chunk that started it. A chunk that claims more
// than the needle holds (corrupt or hostile metadata in one file) must not
// make a concurrent, correct read of the same needle through another file
// fail with its error, after the retry budget, with every replica blamed:
// only chunks of one size share a fetch.
func TestSharedFetchIsNotFailedByAnotherChunksSize(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	plain := needletest.RandomBytes(t, 100_000)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: needletest.Seal(t, key, plain)})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{ReadRetryTime: 500 * time.Millisecond, WholeCacheBytes: -1})
	bad := needle.Chunk{FileID: testFID, Size: 200_000, CipherKey: key}  // claims more than the needle holds
	good := needle.Chunk{FileID: testFID, Size: 100_000, CipherKey: key} // the needle as it is
	var wg sync.WaitGroup
	var goodErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		readChunk(r, context.Background(), bad, 0, make([]byte, 4096))
	}()
	go func() {
		defer wg.Done()
		time.Sleep(5 * time.Millisecond) // joins the bad chunk's fetch
		_, goodErr = readChunk(r, context.Background(), good, 0, make([]byte, 4096))
	}()
	wg.Wait()
	if goodErr != nil {
		t.Errorf("a correct chunk failed because another chunk naming its needle claims more bytes: %v (corrupt=%v)", goodErr, errors.Is(goodErr, needle.ErrCorrupt))
	}
}
