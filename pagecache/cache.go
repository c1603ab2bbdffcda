// Package pagecache sits between the file readers and the fetchers. It
// answers chunk reads from an in-memory block cache (ristretto, costed in
// bytes), shares one fetch among all readers waiting for the same block,
// prefetches ahead of sequential readers, and chains fetchers (RDMA, then
// HTTP). Fetcher is defined here, where it is consumed; the package imports
// nothing above it.
//
// Invariants:
//   - A block is the logical bytes [i*BlockSize, min((i+1)*BlockSize, size))
//     of one chunk. Chunks are immutable needles, so a block never changes and
//     a cached block never needs invalidation, only eviction.
//   - At most one fetch per block is in flight. Fetches are tracked in the
//     inflight table, outside ristretto, because ristretto may drop or refuse
//     a Set: a reader never waits on ristretto to hold what it needs.
//   - A prefetched block stays in the inflight table until a reader takes it
//     or it is abandoned (unread for raAbandon), so a scan through a full
//     cache (whose admission policy refuses new keys) is never fetched twice.
//     Prefetched bytes are bounded by the readahead budget: when it is full,
//     readahead pauses rather than dropping blocks a reader is about to take.
//   - Block buffers are never reused: a buffer handed to a reader stays valid
//     for as long as the reader holds it, whatever the cache evicts.
package pagecache

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/weedfuse/weedfuse/internal/volume"
)

// Options configure a Cache.
type Options struct {
	// Capacity is the memory, in bytes, for cached blocks and readahead
	// together. Default 128 MiB.
	Capacity int64
	// BlockSize is the unit of caching and of random-access fetches.
	// Default 256 KiB.
	BlockSize int64
	// MaxFetch bounds one fetch: a run of missing blocks is fetched in one
	// request of at most this size. Default 4 MiB.
	MaxFetch int64
	// Prefetchers bounds concurrent readahead fetches. Default 16.
	Prefetchers int
	// FetchTimeout bounds one fetch, so that no reader waits forever.
	// Default 60s; the fetcher's own retry budget is normally shorter.
	FetchTimeout time.Duration
}

func (o *Options) setDefaults() {
	if o.Capacity <= 0 {
		o.Capacity = 128 << 20
	}
	if o.BlockSize <= 0 {
		o.BlockSize = 256 << 10
	}
	if o.MaxFetch < o.BlockSize {
		o.MaxFetch = max(4<<20, o.BlockSize)
	}
	if o.Prefetchers <= 0 {
		o.Prefetchers = 16
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = time.Minute
	}
}

// Stats are the cache's counters.
type Stats struct {
	Hits, Misses       uint64 // block look-ups
	FetchedBytes       uint64 // bytes fetched for readers and readahead
	PrefetchedBytes    uint64 // of those, bytes fetched ahead of readers
	PrefetchUsedBytes  uint64 // prefetched bytes a reader then took
	PrefetchDropped    uint64 // prefetched blocks dropped unread
	Fetches, FetchErrs uint64
}

// Cache serves chunk reads from memory and fetches what it lacks. It is safe
// for concurrent use. Close stops its fetches and waits for them.
type Cache struct {
	f    Fetcher
	opts Options
	rc   *ristretto.Cache[string, []byte]
	// raBudget is the share of Capacity that prefetched, not yet read
	// blocks may hold.
	raBudget int64

	ctx         context.Context // ends on Close; parent of every fetch
	cancel      context.CancelFunc
	wg          sync.WaitGroup // fetch goroutines
	prefetchSem chan struct{}

	mu sync.Mutex
	// inflight holds every block being fetched, and prefetched blocks not
	// yet taken by a reader, by block key.
	inflight map[string]*fetch
	// raQueue lists prefetched blocks in the order they were started, for
	// dropping abandoned ones; raBytes is what prefetched blocks hold.
	raQueue []raItem
	raBytes int64

	hits, misses, fetched, prefetched, prefetchUsed, prefetchDropped, fetches, fetchErrs atomic.Uint64
}

// raAbandon is how long a prefetched block waits for its reader before it
// is dropped: a stream that stopped will not come back for it.
const raAbandon = 10 * time.Second

type raItem struct {
	key     string
	f       *fetch
	started time.Time
}

// fetch is one block's fetch. done closes when data or err is set.
type fetch struct {
	done     chan struct{}
	data     []byte
	err      error
	prefetch bool // started by readahead; stays in inflight until taken
}

// New returns a cache over f.
func New(f Fetcher, opts Options) (*Cache, error) {
	opts.setDefaults()
	raBudget := min(opts.Capacity/4, 256<<20)
	rcCost := opts.Capacity - raBudget
	rc, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters:        max(10*rcCost/opts.BlockSize, 1000),
		MaxCost:            rcCost,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("block cache: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		f: f, opts: opts, rc: rc, raBudget: raBudget,
		ctx: ctx, cancel: cancel,
		prefetchSem: make(chan struct{}, opts.Prefetchers),
		inflight:    make(map[string]*fetch),
	}, nil
}

// Close cancels running fetches, waits for them and frees the cache.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
	c.rc.Close()
}

// BlockSize is the cache's block size.
func (c *Cache) BlockSize() int64 { return c.opts.BlockSize }

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(),
		FetchedBytes: c.fetched.Load(), PrefetchedBytes: c.prefetched.Load(),
		PrefetchUsedBytes: c.prefetchUsed.Load(), PrefetchDropped: c.prefetchDropped.Load(),
		Fetches: c.fetches.Load(), FetchErrs: c.fetchErrs.Load(),
	}
}

func blockKey(fid string, blk int64) string {
	return fid + "#" + strconv.FormatInt(blk, 10)
}

// blockLen is the length of block blk of chunk ch.
func (c *Cache) blockLen(ch volume.Chunk, blk int64) int64 {
	return min(c.opts.BlockSize, ch.Size-blk*c.opts.BlockSize)
}

// ReadChunk fills dst with the chunk's logical bytes from off, from cached
// blocks where it can, fetching each missing run of blocks once. It returns
// fewer than len(dst) bytes only at the chunk's end.
func (c *Cache) ReadChunk(ctx context.Context, ch volume.Chunk, off int64, dst []byte) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read chunk %s: negative offset %d", ch.FileID, off)
	}
	end := min(off+int64(len(dst)), ch.Size)
	if off >= end {
		return 0, nil
	}
	bs := c.opts.BlockSize
	first, last := off/bs, (end-1)/bs
	// Look every block up first, then start one fetch per missing run, so
	// that a large read costs one request per run rather than per block.
	waits := make([]*fetch, last-first+1)
	for b := first; b <= last; {
		if data, ok := c.rc.Get(blockKey(ch.FileID, b)); ok {
			c.hits.Add(1)
			c.copyBlock(dst, off, end, b, data)
			b++
			continue
		}
		run := c.claimRun(ch, b, last, false, waits[b-first:])
		b += run
	}
	for i, f := range waits {
		if f == nil {
			continue
		}
		b := first + int64(i)
		select {
		case <-f.done:
		case <-ctx.Done():
			return 0, fmt.Errorf("read chunk %s: %w", ch.FileID, ctx.Err())
		}
		if f.err != nil {
			return 0, f.err
		}
		c.take(ch.FileID, b, f)
		c.copyBlock(dst, off, end, b, f.data)
	}
	return int(end - off), nil
}

// copyBlock copies the part of block b's data that lies in [off, end) into
// dst, which starts at off.
func (c *Cache) copyBlock(dst []byte, off, end, b int64, data []byte) {
	bstart := b * c.opts.BlockSize
	from, to := max(off, bstart), min(end, bstart+int64(len(data)))
	copy(dst[from-off:to-off], data[from-bstart:to-bstart])
}

// take hands a finished fetch's block to a reader: a prefetched block leaves
// the inflight table and joins the cache.
func (c *Cache) take(fid string, b int64, f *fetch) {
	if !f.prefetch {
		return
	}
	key := blockKey(fid, b)
	c.mu.Lock()
	if c.inflight[key] == f {
		delete(c.inflight, key)
		c.raBytes -= int64(len(f.data))
		c.prefetchUsed.Add(uint64(len(f.data)))
	}
	c.mu.Unlock()
	c.rc.Set(key, f.data, int64(len(f.data)))
}

// claimRun registers fetches for the run of blocks from b that are neither
// cached nor in flight (at most through last and MaxFetch bytes), starts one
// fetch for them, and stores in waits (as far as it is long) what each block
// of the run waits on. It returns how many blocks it covered (at least one).
func (c *Cache) claimRun(ch volume.Chunk, b, last int64, prefetch bool, waits []*fetch) int64 {
	maxBlocks := max(c.opts.MaxFetch/c.opts.BlockSize, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	var run []*fetch
	for n := int64(0); b+n <= last && n < maxBlocks; n++ {
		key := blockKey(ch.FileID, b+n)
		if f, ok := c.inflight[key]; ok {
			if n == 0 {
				if len(waits) > 0 {
					waits[0] = f
				}
				if !prefetch {
					c.hits.Add(1) // shared a fetch already under way
				}
				return 1
			}
			break
		}
		if n > 0 {
			if _, ok := c.rc.Get(key); ok {
				break
			}
		}
		f := &fetch{done: make(chan struct{}), prefetch: prefetch}
		c.inflight[key] = f
		if prefetch {
			c.raQueue = append(c.raQueue, raItem{key, f, time.Now()})
			c.raBytes += c.blockLen(ch, b+n)
		}
		run = append(run, f)
		if n < int64(len(waits)) {
			waits[n] = f
		}
	}
	if !prefetch {
		c.misses.Add(uint64(len(run)))
	}
	c.trimReadaheadLocked()
	c.wg.Add(1)
	go c.fetchRun(ch, b, run)
	return int64(len(run))
}

// trimReadaheadLocked drops prefetched blocks that nobody took within
// raAbandon, oldest first.
func (c *Cache) trimReadaheadLocked() {
	for len(c.raQueue) > 0 && time.Since(c.raQueue[0].started) > raAbandon {
		key, f := c.raQueue[0].key, c.raQueue[0].f
		if c.inflight[key] == f {
			select {
			case <-f.done:
			default:
				return // still being fetched; its fetch timeout bounds this
			}
			delete(c.inflight, key)
			c.raBytes -= int64(len(f.data))
			c.prefetchDropped.Add(1)
		}
		c.raQueue = c.raQueue[1:]
	}
	if len(c.raQueue) == 0 {
		c.raQueue = nil
	}
}

// fetchRun fetches blocks b, b+1, … of ch in one request and completes their
// fetches. Demand fetches leave the inflight table once done (their readers
// hold them); prefetches stay until taken.
func (c *Cache) fetchRun(ch volume.Chunk, b int64, run []*fetch) {
	defer c.wg.Done()
	bs := c.opts.BlockSize
	start := b * bs
	end := min(start+int64(len(run))*bs, ch.Size)
	buf := make([]byte, end-start)
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.FetchTimeout)
	n, err := c.f.ReadChunk(ctx, ch, start, buf)
	cancel()
	c.fetches.Add(1)
	if err == nil && int64(n) != end-start {
		err = fmt.Errorf("read chunk %s at %d: got %d bytes, want %d", ch.FileID, start, n, end-start)
	}
	if err != nil {
		c.fetchErrs.Add(1)
	} else {
		c.fetched.Add(uint64(n))
		if run[0].prefetch {
			c.prefetched.Add(uint64(n))
		}
	}
	c.mu.Lock()
	for i, f := range run {
		key := blockKey(ch.FileID, b+int64(i))
		if err != nil {
			f.err = err
		} else {
			// Each block gets its own buffer, so that the cache's cost for
			// it is its true size whatever happens to its neighbours.
			lo := int64(i) * bs
			f.data = append([]byte(nil), buf[lo:min(lo+bs, int64(len(buf)))]...)
		}
		if !f.prefetch || err != nil {
			if c.inflight[key] == f {
				delete(c.inflight, key)
				if f.prefetch {
					c.raBytes -= c.blockLen(ch, b+int64(i))
				}
			}
		} else {
			// The block was counted at its expected length when claimed.
			c.raBytes += int64(len(f.data)) - c.blockLen(ch, b+int64(i))
		}
		if err == nil && !f.prefetch {
			c.rc.Set(key, f.data, int64(len(f.data)))
		}
		close(f.done)
	}
	c.trimReadaheadLocked()
	c.mu.Unlock()
}

// Prefetch starts fetching the blocks of [off, off+n) of ch that are neither
// cached nor in flight, without waiting. It gives up quietly when all
// prefetchers are busy or the readahead budget is full: readahead is an
// optimisation, never a queue that grows without bound.
func (c *Cache) Prefetch(ch volume.Chunk, off, n int64) {
	end := min(off+n, ch.Size)
	if off < 0 || off >= end || c.ctx.Err() != nil {
		return
	}
	bs := c.opts.BlockSize
	last := (end - 1) / bs
	for b := off / bs; b <= last; {
		if _, ok := c.rc.Get(blockKey(ch.FileID, b)); ok {
			b++
			continue
		}
		c.mu.Lock()
		full := c.raBytes >= c.raBudget
		c.mu.Unlock()
		if full {
			return
		}
		select {
		case c.prefetchSem <- struct{}{}:
		default:
			return
		}
		claimed := c.claimRunReleasing(ch, b, last)
		b += claimed
	}
}

// claimRunReleasing claims a prefetch run and releases its prefetcher slot
// when the run's fetch ends (or at once, when nothing needed fetching).
func (c *Cache) claimRunReleasing(ch volume.Chunk, b, last int64) int64 {
	waits := make([]*fetch, 1)
	n := c.claimRun(ch, b, last, true, waits)
	f := waits[0]
	if f == nil || !f.prefetch {
		<-c.prefetchSem
		return n
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		<-f.done
		<-c.prefetchSem
	}()
	return n
}

// Forget drops the cached blocks of a chunk that its file no longer uses.
func (c *Cache) Forget(ch volume.Chunk) {
	bs := c.opts.BlockSize
	for b := int64(0); b*bs < ch.Size; b++ {
		c.rc.Del(blockKey(ch.FileID, b))
	}
}
