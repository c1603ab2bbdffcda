package pagecache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// fakeFetcher serves chunks from memory, counts fetches, and can be made
// to block or fail: the faults a real volume server cannot show on demand.
type fakeFetcher struct {
	chunks map[string][]byte
	calls  atomic.Int64
	bytes  atomic.Int64
	gate   chan struct{} // when non-nil, each fetch waits for a token
	fail   atomic.Bool
}

// Fetch serves r.Dsts, as a fetcher that can neither tee (it leaves
// r.Whole empty) nor read ranges (it refuses them, uncounted).
func (f *fakeFetcher) Fetch(ctx context.Context, r needle.Request) (int, error) {
	if r.Range {
		return 0, fmt.Errorf("fake: no ranges: %w", needle.ErrNotServed)
	}
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if f.fail.Load() {
		return 0, errors.New("injected failure")
	}
	if r.Whole != nil {
		r.Whole.Reset()
	}
	n := needle.Scatter(r.Dsts, f.chunks[r.Chunk.FileID][r.Off:])
	f.bytes.Add(int64(n))
	return n, nil
}

func newFake(sizes ...int) (*fakeFetcher, []needle.Chunk) {
	f := &fakeFetcher{chunks: map[string][]byte{}}
	rng := rand.New(rand.NewPCG(7, 8))
	var chunks []needle.Chunk
	for i, size := range sizes {
		id := fmt.Sprintf("%d,%x", i+1, i+100)
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		f.chunks[id] = data
		chunks = append(chunks, needle.Chunk{FileID: id, Size: int64(size)})
	}
	return f, chunks
}

func newCache(t testing.TB, f Fetcher, opts Options) *Cache {
	c, err := New(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestReadMatchesModel compares random reads and prefetches with the
// chunks' bytes, with a cache small enough to evict.
func TestReadMatchesModel(t *testing.T) {
	f, chunks := newFake(4<<20, 1<<20+17, 300_000, 1, 0)
	c := newCache(t, f, Options{Capacity: 2 << 20, BlockSize: 64 << 10})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		ch := chunks[rng.IntN(len(chunks))]
		src := f.chunks[ch.FileID]
		off := rng.Int64N(ch.Size + 1)
		dst := make([]byte, rng.IntN(600_000)+1)
		if rng.IntN(5) == 0 {
			c.Prefetch(ch, off, int64(len(dst)), KernelAhead)
		}
		n, err := c.ReadChunk(context.Background(), ch, off, dst)
		if err != nil {
			t.Fatal(err)
		}
		want := src[min(off, ch.Size):min(off+int64(len(dst)), ch.Size)]
		if !bytes.Equal(dst[:n], want) {
			t.Fatalf("read %s [%d,+%d): got %d bytes that differ from the model's %d", ch.FileID, off, len(dst), n, len(want))
		}
	}
}

// TestConcurrentMissesShareOneFetch holds the fetch until every reader
// waits on it: they must all be served by one fetch.
func TestConcurrentMissesShareOneFetch(t *testing.T) {
	f, chunks := newFake(1 << 20)
	f.gate = make(chan struct{})
	c := newCache(t, f, Options{BlockSize: 1 << 20})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, 4096)
			if _, err := c.ReadChunk(context.Background(), chunks[0], int64(i)*4096, dst); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the readers queue up
	close(f.gate)
	wg.Wait()
	// ristretto may drop a Set under load (its admission is best effort),
	// so one block may be fetched again; more would mean the whole chunk
	// was not kept.
	if got := f.calls.Load(); got > 2 {
		t.Errorf("fetches: got %d, want 1 (2 at most, when ristretto dropped a Set)", got)
	}
}

// TestPrefetchedScanIsFetchedOnce scans a chunk four times the cache's size
// with readahead: every byte must be fetched exactly once, although the
// cache's admission policy may refuse the new blocks.
func TestPrefetchedScanIsFetchedOnce(t *testing.T) {
	const size = 32 << 20
	f, chunks := newFake(size)
	c := newCache(t, f, Options{Capacity: 8 << 20, BlockSize: 256 << 10, MaxFetch: 1 << 20})
	ra := NewReadahead(1<<20, 2<<20)
	dst := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(dst)) {
		if pOff, pLen := ra.Observe(off, int64(len(dst))); pLen > 0 {
			c.Prefetch(chunks[0], pOff, pLen, KernelAhead)
		}
		if _, err := c.ReadChunk(context.Background(), chunks[0], off, dst); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst, f.chunks[chunks[0].FileID][off:off+int64(len(dst))]) {
			t.Fatalf("bytes at %d differ", off)
		}
	}
	// Each byte once, but for a block or two: when ristretto's processing
	// lags (a loaded machine), the arena fills with blocks it has not yet
	// evicted, and a block a reader waits for goes to the heap, uncached,
	// to be fetched again by the next run.
	if got := f.bytes.Load(); got < size || got > size+size/16 {
		t.Errorf("fetched %d bytes for a %d-byte scan, want each byte once: %+v", got, size, c.Stats())
	}
	if s := c.Stats(); s.PrefetchUsedBytes == 0 {
		t.Errorf("no prefetched byte was used: %+v", s)
	}
}

func TestFetchErrorIsNotCached(t *testing.T) {
	f, chunks := newFake(100_000)
	c := newCache(t, f, Options{})
	f.fail.Store(true)
	dst := make([]byte, 1000)
	if _, err := c.ReadChunk(context.Background(), chunks[0], 0, dst); err == nil {
		t.Fatal("got no error from a failing fetcher")
	}
	calls := f.calls.Load()
	if _, err := c.ReadChunk(context.Background(), chunks[0], 0, dst); err == nil {
		t.Fatal("a read right after a failed fetch succeeded; want the held error")
	}
	if got := f.calls.Load(); got != calls {
		t.Errorf("a read right after a failed fetch fetched again (%d fetches, want %d)", got, calls)
	}
	f.fail.Store(false)
	time.Sleep(failHold + 100*time.Millisecond)
	if _, err := c.ReadChunk(context.Background(), chunks[0], 0, dst); err != nil {
		t.Fatalf("after the fetcher recovered: %v", err)
	}
}

// TestCancelledReaderLeavesFetchToOthers cancels one of two readers of a
// block: the other still gets the bytes, from the same fetch.
func TestCancelledReaderLeavesFetchToOthers(t *testing.T) {
	f, chunks := newFake(100_000)
	f.gate = make(chan struct{})
	c := newCache(t, f, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() {
		_, err := c.ReadChunk(ctx, chunks[0], 0, make([]byte, 10))
		errc <- err
	}()
	go func() {
		_, err := c.ReadChunk(context.Background(), chunks[0], 10, make([]byte, 10))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled reader: got %v, want context.Canceled", err)
	}
	close(f.gate)
	if err := <-errc; err != nil {
		t.Errorf("other reader: %v", err)
	}
	// ristretto may drop a Set under load (its admission is best effort),
	// so one block may be fetched again; more would mean the whole chunk
	// was not kept.
	if got := f.calls.Load(); got > 2 {
		t.Errorf("fetches: got %d, want 1 (2 at most, when ristretto dropped a Set)", got)
	}
}

func TestChainFallsThroughNotServed(t *testing.T) {
	f, chunks := newFake(1000)
	notServed := fetcherFunc(func(context.Context, needle.Request) (int, error) {
		return 0, fmt.Errorf("rdma: %w", needle.ErrNotServed)
	})
	broken := fetcherFunc(func(context.Context, needle.Request) (int, error) {
		return 0, errors.New("broken")
	})
	req := needle.Request{Chunk: chunks[0], Dsts: [][]byte{make([]byte, 60), make([]byte, 40)}}
	if n, err := (Chain{notServed, f}).Fetch(context.Background(), req); err != nil || n != 100 ||
		!bytes.Equal(append(req.Dsts[0], req.Dsts[1]...), f.chunks[chunks[0].FileID][:100]) {
		t.Errorf("not-served then working: %d, %v, or bytes differ", n, err)
	}
	if _, err := (Chain{broken, f}).Fetch(context.Background(), req); err == nil {
		t.Error("a real error must end the read, got nil")
	}
	if _, err := (Chain{notServed}).Fetch(context.Background(), req); !errors.Is(err, needle.ErrNotServed) {
		t.Errorf("nothing served: got %v, want ErrNotServed", err)
	}
	req.Range = true
	if _, err := (Chain{notServed, f}).Fetch(context.Background(), req); !errors.Is(err, needle.ErrNotServed) {
		t.Errorf("a range no step reads: got %v, want ErrNotServed", err)
	}
}

// TestRandomReadWithoutRanges: a random read of a large plain chunk, which
// the plan would read by range, through a fetcher that reads no ranges (an
// RDMA-only chain) is served from the whole needle, not failed.
func TestRandomReadWithoutRanges(t *testing.T) {
	f, chunks := newFake(4 << 20)
	c := newCache(t, Chain{f}, Options{Capacity: 64 << 20})
	for _, off := range []int64{3<<20 + 100, 1 << 20} { // unaligned (readDirect), then aligned
		dst := make([]byte, 4096)
		if _, err := c.ReadChunkAt(context.Background(), chunks[0], off, dst, Random); err != nil ||
			!bytes.Equal(dst, f.chunks[chunks[0].FileID][off:off+4096]) {
			t.Fatalf("at %d: %v, or bytes differ", off, err)
		}
	}
}

type fetcherFunc func(context.Context, needle.Request) (int, error)

func (f fetcherFunc) Fetch(ctx context.Context, r needle.Request) (int, error) { return f(ctx, r) }

func BenchmarkReadChunkHit(b *testing.B) {
	f, chunks := newFake(4 << 20)
	c := newCache(b, f, Options{Capacity: 64 << 20})
	dst := make([]byte, 128<<10)
	for off := int64(0); off < 4<<20; off += int64(len(dst)) {
		c.ReadChunk(context.Background(), chunks[0], off, dst)
	}
	c.rc.Wait()
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := int64(i%32) * int64(len(dst))
		if _, err := c.ReadChunk(context.Background(), chunks[0], off, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// TestArenaSlotsComeBack reads concurrently through a cache far smaller
// than the data, so that blocks are evicted and slots reused under readers;
// every byte must match, and once the cache is emptied every slot must be
// free again: no reference leaks, none is dropped twice.
func TestArenaSlotsComeBack(t *testing.T) {
	f, chunks := newFake(3<<20, 2<<20, 1<<20+5, 700_000)
	c := newCache(t, f, Options{Capacity: 2 << 20, BlockSize: 64 << 10, MaxFetch: 256 << 10})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; i < 400; i++ {
				ch := chunks[rng.IntN(len(chunks))]
				off := rng.Int64N(ch.Size)
				dst := make([]byte, rng.IntN(300_000)+1)
				n, err := c.ReadChunk(context.Background(), ch, off, dst)
				if err != nil {
					t.Error(err)
					return
				}
				if want := f.chunks[ch.FileID][off : off+int64(n)]; !bytes.Equal(dst[:n], want) {
					t.Errorf("read %s at %d: bytes differ", ch.FileID, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	c.wg.Wait() // demand fetches hand their slots to the cache before ending
	c.rc.Wait()
	c.rc.Clear()
	if got, want := c.arena.freeSlots(), len(c.arena.slots); got != want {
		t.Errorf("free slots after emptying the cache: got %d, want all %d", got, want)
	}
	if s := c.Stats(); s.Uncached > 0 {
		t.Logf("%d blocks went to the heap while the arena was full", s.Uncached)
	}
}

// TestTruncatedChunkSharesNoBlock reads one needle as a 1000-byte chunk (a
// file weed mount truncated) and as its whole self: the short block cached
// for the first must not serve the second.
func TestTruncatedChunkSharesNoBlock(t *testing.T) {
	f, chunks := newFake(1 << 20)
	c := newCache(t, f, Options{})
	whole := chunks[0]
	short := needle.Chunk{FileID: whole.FileID, Size: 1000}
	if _, err := c.ReadChunk(context.Background(), short, 0, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	c.rc.Wait()
	dst := make([]byte, 256<<10)
	n, err := c.ReadChunk(context.Background(), whole, 0, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst[:n], f.chunks[whole.FileID][:n]) || n != len(dst) {
		t.Errorf("whole chunk after its truncated twin: got %d bytes that differ from the source", n)
	}
}

// TestSmallBlocksKeepBeingCached reads many chunks far smaller than a block,
// more than the cache holds: the cache must keep taking new ones in (each
// costs a whole slot), never running the arena dry.
func TestSmallBlocksKeepBeingCached(t *testing.T) {
	sizes := make([]int, 300)
	for i := range sizes {
		sizes[i] = 4096
	}
	f, chunks := newFake(sizes...)
	c := newCache(t, f, Options{Capacity: 8 << 20, BlockSize: 64 << 10})
	for round := 0; round < 3; round++ {
		for _, ch := range chunks {
			if _, err := c.ReadChunk(context.Background(), ch, 0, make([]byte, 4096)); err != nil {
				t.Fatal(err)
			}
		}
		c.rc.Wait()
	}
	if s := c.Stats(); s.Uncached != 0 {
		t.Errorf("%d blocks went to the heap: the arena ran dry", s.Uncached)
	}
}

// TestRandomMissCachesWholeChunk reads a block in the middle of an untouched
// chunk: the fetch starts at the chunk's start (the fetcher reads the whole
// needle anyway), so a later read of an earlier block fetches nothing.
func TestRandomMissCachesWholeChunk(t *testing.T) {
	const bs = 64 << 10
	f, chunks := newFake(16 * bs)
	c := newCache(t, f, Options{Capacity: 4 << 20, BlockSize: bs})
	dst := make([]byte, 4096)
	if _, err := c.ReadChunk(context.Background(), chunks[0], 9*bs+100, dst); err != nil {
		t.Fatal(err)
	}
	if got, want := f.bytes.Load(), int64(16*bs); got != want {
		t.Fatalf("first miss fetched %d bytes, want the whole chunk's %d", got, want)
	}
	c.rc.Wait()
	for _, off := range []int64{0, 3*bs + 5, 15 * bs} {
		if _, err := c.ReadChunk(context.Background(), chunks[0], off, dst); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst, f.chunks[chunks[0].FileID][off:off+4096]) {
			t.Fatalf("bytes at %d differ", off)
		}
	}
	// ristretto may drop a Set under load (its admission is best effort),
	// so one block may be fetched again; more would mean the whole chunk
	// was not kept.
	if got := f.calls.Load(); got > 2 {
		t.Errorf("fetches: got %d, want 1 (2 at most, when ristretto dropped a Set)", got)
	}
}

// A needle that memory holds only here and there (a stream through a file
// larger than the tier leaves it so: the eviction samples) costs one fetch
// when it is read again, not one per gap: the whole needle comes anyway,
// and the run goes past the held blocks to the missing ones beyond. Three
// gaps fetched it three times (four times the bytes of a 300 MB file at
// default flags, by hand). Each read is one call, and ristretto's sets are
// waited for between them: a block it has not taken in yet is held
// nowhere, and a read of it then fetches again (see fetchRun).
func TestGappedNeedleFetchedOnce(t *testing.T) {
	f, chunks := newFake(4 << 20)
	ch := chunks[0]
	c := newCache(t, f, Options{Capacity: 32 << 20, BlockSize: 256 << 10, MaxFetch: 8 << 20})
	want := f.chunks[ch.FileID]
	if !bytes.Equal(readWhole(t, c, ch), want) || f.calls.Load() != 1 {
		t.Fatalf("first read: wrong bytes or %d fetches", f.calls.Load())
	}
	// Gaps at blocks 1, 5-6 and 12: held 0, 2-4, 7-11 and 13-15.
	for _, b := range []int64{1, 5, 6, 12} {
		c.rc.Del(c.blockKey(ch, b))
	}
	c.rc.Wait()
	held := ""
	for b := int64(0); b < 16; b++ {
		if _, ok := c.rc.Get(c.blockKey(ch, b)); ok {
			held += "x"
		} else {
			held += "."
		}
	}
	if !bytes.Equal(readWhole(t, c, ch), want) {
		t.Fatal("read with gaps: wrong bytes")
	}
	if n := f.calls.Load() - 1; n != 1 {
		t.Fatalf("a needle with 3 gaps fetched %d times (held before: %s)", n, held)
	}
	if !bytes.Equal(readWhole(t, c, ch), want) || f.calls.Load() != 2 {
		t.Fatalf("third read: wrong bytes or %d fetches in all: the gaps were not all filled", f.calls.Load())
	}
}

// readWhole reads ch in one call, then lets ristretto take in what the
// read cached.
func readWhole(t *testing.T, c *Cache, ch needle.Chunk) []byte {
	t.Helper()
	buf := make([]byte, ch.Size)
	n, err := c.ReadChunk(context.Background(), ch, 0, buf)
	if err != nil || int64(n) != ch.Size {
		t.Fatalf("read %d of %d bytes: %v", n, ch.Size, err)
	}
	c.rc.Wait()
	return buf
}
