// Package pagecache sits between the file readers and the fetchers. It
// answers chunk reads from an in-memory block cache (ristretto, costed in
// bytes, over an arena outside the Go heap), shares one fetch among all
// readers waiting for the same block, prefetches ahead of sequential readers,
// and chains fetchers (RDMA, then HTTP). Fetcher is defined here, where it is
// consumed; the package imports nothing above it.
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
//   - Block memory is reference counted (see arena): a slot is reused only
//     when neither the cache, a fetch nor a reader holds it, so a buffer is
//     never recycled under a reader, whatever the cache evicts.
//   - Memory: the cache proper (ristretto's MaxCost) is Capacity bytes, so
//     a file of Capacity bytes fits whole; the arena adds the readahead
//     budget and a reserve for fetches in flight, 40 MiB at most with the
//     default MaxFetch. Both are one pool of slots: while nothing is read
//     ahead, demand fetches may use the readahead share too.
//   - A demand miss claims the whole chunk's missing blocks where none of
//     the chunk is held: the fetcher reads the whole needle in any case
//     (the only way to verify it), and then lands it straight in slots.
//
// Locks: Cache.mu is taken before arena.mu (claiming slots for a run of
// blocks) and before disk.mu (the disk tier's index); arena.mu and disk.mu
// are leaves, never held while another lock is taken.
package pagecache

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/weedfuse/weedfuse/internal/needle"
)

// Options configure a Cache.
type Options struct {
	// Capacity is the memory tier, in bytes: all the block memory the
	// cache maps (weed mount's -readerCacheSizeMB). Readahead takes up to
	// min(Capacity/8, MaxReadahead) of it and fetches in flight
	// min(Capacity/16, MaxFetch); cached blocks hold the rest. Default
	// 128 MiB.
	Capacity int64
	// BlockSize is the unit of caching, of ranged fetches and of the disk
	// tier's checksums. Default DefaultBlockSize.
	BlockSize int64
	// MaxFetch is the largest fetch the cache plans for: its reserve of
	// slots for fetches in flight holds one. Default 8 MiB, the largest
	// common chunk size.
	MaxFetch int64
	// Prefetchers bounds concurrent readahead fetches. Default 16.
	Prefetchers int
	// FetchTimeout bounds one fetch, so that no reader waits forever.
	// Default 60s; the fetcher's own retry budget is normally shorter.
	FetchTimeout time.Duration
	// DiskDir and DiskCapacity are the disk tier (weed mount's -cacheDir
	// and -cacheCapacityMB); no tier when either is zero.
	DiskDir      string
	DiskCapacity int64
	// Strict fetches and verifies whole needles for every miss, never a
	// range that nothing can check (-verify=strict).
	Strict bool
	// Warn reports a problem with the options that the cache worked
	// around (a disk capacity beyond the free space), or with the disk
	// cache's file system (coarse ctimes, which cost reads). May be nil.
	Warn func(string)
}

func (o *Options) setDefaults() {
	if o.Capacity <= 0 {
		o.Capacity = 128 << 20
	}
	if o.BlockSize <= 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.MaxFetch < o.BlockSize {
		o.MaxFetch = max(8<<20, o.BlockSize)
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
	Uncached           uint64 // blocks fetched to the heap: the arena was full
	// RangeFetches count ranged fetches (random misses of needles in no
	// tier); of their bytes, VerifiedRangeBytes were checked against a
	// block table and UnverifiedBytes could not be.
	RangeFetches, VerifiedRangeBytes, UnverifiedBytes uint64
	// Fills count needles written to the disk tier in the background after
	// a ranged fetch; MemoryFills those fetched whole into the memory
	// tier instead, when the disk tier had no room (see fillLater).
	Fills, MemoryFills uint64
	// MemoryCapacity is the memory tier's size; MemoryUsed what its
	// blocks, readahead and fetches hold now; ReadaheadBytes what
	// prefetched blocks not yet read hold.
	MemoryCapacity, MemoryUsed, ReadaheadBytes int64
	// Disk is the disk tier's; zero without one.
	Disk DiskStats
}

// Cache serves chunk reads from memory and fetches what it lacks. It is safe
// for concurrent use. Close stops its fetches and waits for them.
type Cache struct {
	f     Fetcher
	opts  Options
	arena *arena
	// rc maps block keys to arena slots. Each value it holds owns one
	// reference to its slot, dropped by onExit.
	rc *ristretto.Cache[string, blockRef]
	// raBudget is the share of Capacity that prefetched, not yet read
	// blocks may hold; reserve the share kept for fetches in flight.
	raBudget, reserve int64

	ctx         context.Context // ends on Close; parent of every fetch
	cancel      context.CancelFunc
	wg          sync.WaitGroup // fetch goroutines
	prefetchSem chan struct{}

	mu sync.Mutex
	// inflight holds every block being fetched, and prefetched blocks not
	// yet taken by a reader, by block key. Each entry's fetch owns one
	// reference to its slot while it is here.
	inflight map[string]*fetch
	// raQueue lists prefetched blocks in the order they were started, for
	// dropping abandoned ones; raBytes is what prefetched blocks hold.
	raQueue []raItem
	raBytes int64
	// passing is the bytes of the needles that planPass runs are
	// fetching into memory alone (see planLocked).
	passing int64
	// failed remembers blocks whose fetch just failed, until failHold has
	// passed: the kernel retries a failed readahead with a read of its
	// own, which should fail at once rather than wait out another retry
	// budget.
	failed map[string]failure

	// disk is the second tier; nil without one.
	disk *disk
	// fillSem bounds background fills of either tier.
	fillSem chan struct{}
	// edgeBufs holds *[]byte of a block each, for the blocks of a
	// direct read of the disk tier that lie partly outside the read.
	edgeBufs sync.Pool

	hits, misses, fetched, prefetched, prefetchUsed, prefetchDropped, fetches, fetchErrs, uncached atomic.Uint64
	rangeFetches, verifiedRange, unverified, fills, memoryFills                                    atomic.Uint64
}

// DefaultBlockSize is the default unit of caching: small enough that a
// random read of a needle in no tier fetches little (a 4 KiB read costs
// one 64 KiB range, not a 4 MiB needle), large enough that a 1 MiB read
// touches few blocks.
const DefaultBlockSize = 64 << 10

// smallNeedle is the size up to which a needle's block table sits in an
// extended attribute of its disk file rather than a file of its own.
const smallNeedle = 1 << 20

// wholeNeedle is the size up to which a random read fetches the whole
// needle, verified and kept: a range would save little. It was smallNeedle
// until random 4 KiB reads of a 1 GiB file of 1 MiB chunks at default flags
// ran at 330-450 IOPS against weed mount's 2,200-3,000 (0.15x; bench,
// chunks-1m-rand), each miss a whole 1 MiB GET; a needle past it takes
// ranges, and follows whole in the background (fillLater), as larger ones do.
const wholeNeedle = 256 << 10

// maxFills bounds the background fills in flight.
const maxFills = 2

// MaxReadahead bounds the bytes prefetched and not yet read, over all
// files: it is memory beyond the cache's capacity.
const MaxReadahead = 32 << 20

// failHold is how long a failed block fails at once.
const failHold = time.Second

type failure struct {
	err   error
	until time.Time
}

// raAbandon is how long a prefetched block waits for its reader before it
// is dropped: a stream that stopped will not come back for it.
const raAbandon = 10 * time.Second

type raItem struct {
	key     string
	f       *fetch
	started time.Time
}

// fetch is one block's fetch. done closes when the bytes or err are set.
type fetch struct {
	done chan struct{}
	ref  blockRef // the block's arena slot; zero when heap-backed
	heap []byte   // the block's bytes when the arena had no free slot
	n    int      // the block's length
	err  error
	// prefetch marks a readahead fetch: it stays in inflight until taken.
	prefetch bool
	// passed marks a block that a whole-needle run passes over, held or
	// in flight already when the run began: its bytes go to a slot of its
	// own, released when the fetch returns, and it is neither cached nor
	// in inflight.
	passed bool
}

// data is the block's bytes; the caller holds a reference (or the block is
// on the heap).
func (c *Cache) data(f *fetch) []byte {
	if f.ref.idx != 0 {
		return c.arena.bytes(f.ref)
	}
	return f.heap
}

// New returns a cache over f.
func New(f Fetcher, opts Options) (*Cache, error) {
	opts.setDefaults()
	// Readahead and fetches in flight take slots beside the cache's: keep
	// both modest, since they are memory beyond the capacity asked for.
	raBudget := min(opts.Capacity/8, MaxReadahead)
	reserve := min(opts.Capacity/16, opts.MaxFetch)
	rcCost := max(opts.Capacity-raBudget-reserve, opts.BlockSize)
	a, err := newArena(rcCost+raBudget+reserve, opts.BlockSize)
	if err != nil {
		return nil, err
	}
	c := &Cache{
		f: f, opts: opts, arena: a, raBudget: raBudget, reserve: reserve,
		prefetchSem: make(chan struct{}, opts.Prefetchers),
		inflight:    make(map[string]*fetch),
		failed:      make(map[string]failure),
		fillSem:     make(chan struct{}, maxFills),
	}
	c.edgeBufs.New = func() any {
		b := make([]byte, opts.BlockSize)
		return &b
	}
	if opts.DiskDir != "" && opts.DiskCapacity > 0 {
		if c.disk, err = newDisk(opts.DiskDir, opts.DiskCapacity, opts.BlockSize, opts.Warn); err != nil {
			a.close()
			return nil, err
		}
	}
	c.rc, err = ristretto.NewCache(&ristretto.Config[string, blockRef]{
		NumCounters:        max(10*rcCost/opts.BlockSize, 1000),
		MaxCost:            rcCost,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// Evicted, rejected, replaced or deleted: the slot reference the
		// cache held goes.
		OnExit: a.release,
	})
	if err != nil {
		a.close()
		return nil, fmt.Errorf("block cache: %w", err)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close cancels running fetches, waits for them and frees the memory. No
// read may run during or after Close.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
	c.rc.Close()
	c.arena.close()
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(),
		FetchedBytes: c.fetched.Load(), PrefetchedBytes: c.prefetched.Load(),
		PrefetchUsedBytes: c.prefetchUsed.Load(), PrefetchDropped: c.prefetchDropped.Load(),
		Fetches: c.fetches.Load(), FetchErrs: c.fetchErrs.Load(), Uncached: c.uncached.Load(),
		RangeFetches: c.rangeFetches.Load(), VerifiedRangeBytes: c.verifiedRange.Load(),
		UnverifiedBytes: c.unverified.Load(), Fills: c.fills.Load(), MemoryFills: c.memoryFills.Load(),
	}
	s.MemoryCapacity = int64(len(c.arena.slots)) * c.opts.BlockSize
	s.MemoryUsed = s.MemoryCapacity - int64(c.arena.freeSlots())*c.opts.BlockSize
	c.mu.Lock()
	s.ReadaheadBytes = c.raBytes
	c.mu.Unlock()
	if c.disk != nil {
		s.Disk = c.disk.stats()
	}
	return s
}

// blockKey names block blk of chunk ch by the chunk's Key (what decodes
// differently never shares a block) and the block's length:
// one needle may stand in files as chunks of different sizes (weed mount
// truncates by lowering a chunk's size), and a block cut short for one
// must never serve a reader of the other.
func (c *Cache) blockKey(ch needle.Chunk, blk int64) string {
	return ch.Key() + "#" + strconv.FormatInt(blk, 10) + "#" + strconv.FormatInt(c.blockLen(ch, blk), 10)
}

// blockLen is the length of block blk of chunk ch.
func (c *Cache) blockLen(ch needle.Chunk, blk int64) int64 {
	return min(c.opts.BlockSize, ch.Size-blk*c.opts.BlockSize)
}

// cached copies from a cached block, if the cache has it.
func (c *Cache) cached(key string, dst []byte, off, end, b int64) bool {
	ref, ok := c.rc.Get(key)
	if !ok || !c.arena.acquire(ref) {
		return false
	}
	err := c.copyBlock(dst, off, end, b, c.arena.bytes(ref))
	c.arena.release(ref)
	return err == nil // a wrong-sized block is a miss; the key rules it out
}

// Access says how a file is being read, as its reader's stream detector
// sees it: it decides how a miss is fetched (see plan).
type Access uint8

const (
	// Sequential reads fetch whole needles, verified, and keep them.
	Sequential Access = iota
	// Random reads of large plain needles in no tier fetch just their
	// blocks.
	Random
	// Buffered is Sequential for a reader whose bytes the kernel keeps in
	// its page cache of the mount's file (buffered reads through a cached
	// handle): the disk tier's copy of what it fetches is written past
	// the page cache (see plan).
	Buffered
	// Passing is Buffered for a stream through a file that the disk
	// tier cannot hold, past the part of it that the tier keeps (see
	// KeepsStream): its whole needles go to memory only (planPass).
	Passing
	// memoryFill is a background fill of a whole needle into memory
	// (fillMemory), no reader's access.
	memoryFill
)

// ReadChunk is ReadChunkAt for a sequential reader.
func (c *Cache) ReadChunk(ctx context.Context, ch needle.Chunk, off int64, dst []byte) (int, error) {
	return c.ReadChunkAt(ctx, ch, off, dst, Sequential)
}

// ReadChunkAt fills dst with the chunk's logical bytes from off, from the
// memory tier, then the disk tier, fetching each missing run of blocks
// once, as plan says for access. It returns fewer than len(dst) bytes only
// at the chunk's end.
func (c *Cache) ReadChunkAt(ctx context.Context, ch needle.Chunk, off int64, dst []byte, access Access) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read chunk %s: negative offset %d", ch.FileID, off)
	}
	if err := ch.CheckSize(); err != nil {
		return 0, fmt.Errorf("read chunk: %w", err)
	}
	end := min(off+int64(len(dst)), ch.Size)
	if off >= end {
		return 0, nil
	}
	bs := c.opts.BlockSize
	first, last := off/bs, (end-1)/bs
	if n, ok := c.readDiskDirect(ch, off, end, first, last, dst); ok {
		return n, nil
	}
	if access == Random {
		if n, ok, err := c.readDirect(ctx, ch, off, end, first, last, dst); ok {
			return n, err
		}
	}
	// Look every block up first, then start one fetch per missing run, so
	// that a large read costs one request per run rather than per block.
	// How far a run goes is plan's business. Every fetch in waits carries
	// a slot reference of this reader's.
	var waitBuf [8]*fetch // a 1 MiB read of 256 KiB blocks needs 4 or 5
	waits := waitBuf[:0]
	if n := int(last - first + 1); n <= len(waitBuf) {
		waits = waitBuf[:n]
	} else {
		waits = make([]*fetch, n)
	}
	defer func() {
		for _, f := range waits {
			if f != nil {
				c.arena.release(f.ref)
			}
		}
	}()
	for b := first; b <= last; {
		if c.cached(c.blockKey(ch, b), dst, off, end, b) {
			c.hits.Add(1)
			b++
			continue
		}
		b += c.claimRun(ch, b, last, access, false, waits[b-first:])
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
		c.take(c.blockKey(ch, b), f)
		if err := c.copyBlock(dst, off, end, b, c.data(f)); err != nil {
			return 0, fmt.Errorf("read chunk %s: %w", ch.FileID, err)
		}
	}
	return int(end - off), nil
}

// copyBlock copies the part of block b's data that lies in [off, end) into
// dst, which starts at off. A block shorter than that part is a broken
// invariant, never a short read: it would leave dst partly unwritten.
func (c *Cache) copyBlock(dst []byte, off, end, b int64, data []byte) error {
	bstart := b * c.opts.BlockSize
	from, to := max(off, bstart), min(end, bstart+c.opts.BlockSize)
	if bstart+int64(len(data)) < to {
		return fmt.Errorf("block %d holds %d bytes, %d needed", b, len(data), to-bstart)
	}
	copy(dst[from-off:to-off], data[from-bstart:to-bstart])
	return nil
}

// take moves a prefetched block a reader waited on from the inflight table
// into the cache, handing the cache the fetch's slot reference.
func (c *Cache) take(key string, f *fetch) {
	if !f.prefetch {
		return
	}
	c.mu.Lock()
	mine := c.inflight[key] == f
	if mine {
		delete(c.inflight, key)
		c.raBytes -= c.opts.BlockSize
		c.prefetchUsed.Add(uint64(f.n))
	}
	c.mu.Unlock()
	if mine {
		c.cacheBlock(key, f)
	}
}

// cacheBlock gives the cache a fetch's slot reference (or drops a heap
// block, which is never cached: the arena bounds the cache's memory).
func (c *Cache) cacheBlock(key string, f *fetch) {
	if f.ref.idx == 0 {
		return
	}
	// A block pins a whole slot, whatever its length: charging the slot
	// keeps ristretto's budget and the arena in step.
	if !c.rc.Set(key, f.ref, c.opts.BlockSize) {
		c.arena.release(f.ref) // dropped: onExit will not run for it
	}
}

// claimRun registers fetches for the run of blocks from b on that are
// neither cached nor in flight, starts one fetch for them, and stores in
// waits (as far as it is long) what each block of the run waits on, each
// with a slot reference for the caller. want is the last block the caller
// needs; the plan for the miss says how far past it the run goes (see
// planLocked). A whole-needle run on a chunk nobody has touched starts at
// the chunk's start, where the arena has room: the blocks before b come
// with the needle anyway. It returns how many blocks from b on it covered
// (at least one).
func (c *Cache) claimRun(ch needle.Chunk, b, want int64, access Access, prefetch bool, waits []*fetch) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := c.blockKey(ch, b)
	if fl, ok := c.failed[key]; ok {
		if time.Now().Before(fl.until) {
			f := &fetch{done: make(chan struct{}), err: fl.err}
			close(f.done)
			if len(waits) > 0 {
				waits[0] = f
			}
			return 1
		}
		delete(c.failed, key)
	}
	if f, ok := c.inflight[key]; ok {
		if len(waits) > 0 {
			c.arena.addRef(f.ref) // the inflight entry holds one
			waits[0] = f
		}
		if !prefetch {
			c.hits.Add(1) // shared a fetch already under way
		}
		return 1
	}
	p := c.planLocked(ch, access)
	if p == planPass {
		c.passing += ch.Size
	}
	last := (ch.Size - 1) / c.opts.BlockSize
	switch {
	case !p.whole():
		last = want
	case c.disk != nil:
		// The whole needle lands on disk; memory takes what a reader
		// will want soon.
		last = min(last, max(want, b+c.opts.MaxFetch/c.opts.BlockSize-1))
	}
	// Prefetched blocks wait in inflight for a reader, so readahead never
	// reaches back: a stream that began mid-chunk would not take them.
	from := b
	var pre []blockRef
	if p.whole() && !prefetch && b > 0 && c.untouchedLocked(ch, last) {
		from = 0
		for blk := from; blk < b; blk++ {
			ref, ok := c.arena.alloc(int(c.blockLen(ch, blk)))
			if !ok { // no room to spare: fetch only what was asked for
				for _, r := range pre {
					c.arena.release(r)
				}
				pre, from = nil, b
				break
			}
			pre = append(pre, ref)
		}
	}
	// A whole-needle run goes past blocks held (or in flight) already,
	// their bytes landing in slots of their own, let go once the fetch
	// returns, to the missing blocks beyond: the
	// needle comes whole whatever the run, so a needle whose blocks
	// memory kept only here and there (the sampled eviction of a stream
	// through a file larger than the tier) costs one GET, not one per gap.
	// The reader waits only on the run's first stretch (prefix): it reads
	// the held block after it itself, and finds the later ones in flight.
	var (
		run     []*fetch
		prefix  = true
		covered int64 // blocks from b on in the run's first stretch
	)
	for blk := from; blk <= last; blk++ {
		key := c.blockKey(ch, blk)
		if blk > b && !c.absentLocked(key) {
			if !p.whole() {
				break
			}
			// Each in a slot of its own: a sink may keep Dsts where they
			// lie until the fetch returns (needle.KeptWriter), and
			// disk.read checks each block after one preadv. A slot, not
			// the heap, so that memory stays within the arena; with none
			// free the run ends here.
			size := int(c.blockLen(ch, blk))
			ref, ok := c.arena.alloc(size)
			if !ok {
				break
			}
			run = append(run, &fetch{n: size, ref: ref, passed: true})
			prefix = false
			continue
		}
		size := int(c.blockLen(ch, blk))
		f := &fetch{done: make(chan struct{}), prefetch: prefetch, n: size}
		idx := blk - b // index into waits; negative before b
		ref, ok := blockRef{}, true
		if blk < b {
			ref = pre[blk-from]
		} else if ref, ok = c.arena.alloc(size); !ok && blk == b {
			// Blocks handed to ristretto but not yet processed still hold
			// their slots; once it has caught up (evicting to its budget,
			// which leaves slots free), try again. Its processing never
			// takes c.mu, so waiting under it cannot deadlock.
			c.rc.Wait()
			ref, ok = c.arena.alloc(size)
		}
		if ok {
			f.ref = ref
		} else {
			// The arena is full: only what the reader waits for goes to
			// the heap, uncached, so that memory stays bounded.
			if blk > b && (idx >= int64(len(waits)) || !prefix) {
				break
			}
			// A block's capacity: the disk tier reads a chunk's last
			// block whole when its needle goes on (disk.read).
			f.heap = make([]byte, size, c.opts.BlockSize)
			c.uncached.Add(1)
		}
		c.inflight[key] = f
		if prefetch {
			c.raQueue = append(c.raQueue, raItem{key, f, time.Now()})
			c.raBytes += c.opts.BlockSize
		}
		run = append(run, f)
		if prefix && idx >= 0 && idx < int64(len(waits)) {
			c.arena.addRef(f.ref)
			waits[idx] = f
		}
		if prefix && blk >= b {
			covered++
		}
	}
	// A run cut short by a full arena ends with the blocks it passed.
	for len(run) > 0 && run[len(run)-1].passed {
		c.arena.release(run[len(run)-1].ref)
		run = run[:len(run)-1]
	}
	if !prefetch && access != memoryFill {
		c.misses.Add(uint64(covered))
	}
	c.trimReadaheadLocked()
	c.wg.Add(1)
	go c.fetchRun(ch, from, run, p)
	return covered
}

// untouchedLocked reports whether no block of ch through last is in flight
// or cached: the first touch of a needle, as a random reader makes it. A
// sequential reader, whose earlier blocks were just read, never reaches
// back for blocks it has done with.
func (c *Cache) untouchedLocked(ch needle.Chunk, last int64) bool {
	for blk := int64(0); blk <= last; blk++ {
		if !c.absentLocked(c.blockKey(ch, blk)) {
			return false
		}
	}
	return true
}

// holdLocked makes reads of the block named key fail at once with err
// until failHold has passed.
func (c *Cache) holdLocked(key string, err error) {
	if len(c.failed) > 4096 {
		clear(c.failed) // a bound, not a policy: entries live a second
	}
	c.failed[key] = failure{err, time.Now().Add(failHold)}
}

// holdFailure makes reads of every block of ch fail at once with err, as
// after a failed fetch of them (fetchRun); FillDisk's fetches hold theirs.
func (c *Cache) holdFailure(ch needle.Chunk, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for b := int64(0); b <= (ch.Size-1)/c.opts.BlockSize; b++ {
		c.holdLocked(c.blockKey(ch, b), err)
	}
}

// heldFailure returns the error a block of ch fails with at once
// (holdLocked), or nil.
func (c *Cache) heldFailure(ch needle.Chunk) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for b := int64(0); b <= (ch.Size-1)/c.opts.BlockSize; b++ {
		if fl, ok := c.failed[c.blockKey(ch, b)]; ok && now.Before(fl.until) {
			return fl.err
		}
	}
	return nil
}

// untouched reports whether no block of ch is cached or in flight.
func (c *Cache) untouched(ch needle.Chunk) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.untouchedLocked(ch, (ch.Size-1)/c.opts.BlockSize)
}

// absentLocked reports whether the block named key is neither in flight
// nor cached.
func (c *Cache) absentLocked(key string) bool {
	if _, ok := c.inflight[key]; ok {
		return false
	}
	_, ok := c.rc.Get(key)
	return !ok
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
			c.raBytes -= c.opts.BlockSize
			c.prefetchDropped.Add(1)
			c.arena.release(f.ref)
		}
		c.raQueue = c.raQueue[1:]
	}
	if len(c.raQueue) == 0 {
		c.raQueue = nil
	}
}

// fetchRun fetches blocks b, b+1, … of ch as plan p says, into their slots,
// and completes their fetches. Demand fetches leave the inflight table once
// done, their slot reference passing to the cache; prefetches stay until
// taken.
func (c *Cache) fetchRun(ch needle.Chunk, b int64, run []*fetch, p plan) {
	defer c.wg.Done()
	start := b * c.opts.BlockSize
	total := 0
	for _, f := range run {
		total += f.n
	}
	// The run lands straight in its slots.
	dsts := make([][]byte, len(run))
	for i, f := range run {
		dsts[i] = c.data(f)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.FetchTimeout)
	n, err := c.fetchPlanned(ctx, ch, start, dsts, p)
	cancel()
	c.fetches.Add(1)
	if err == nil && n != total {
		err = fmt.Errorf("read chunk %s at %d: got %d bytes, want %d", ch.FileID, start, n, total)
	}
	if err != nil {
		c.fetchErrs.Add(1)
	} else {
		c.fetched.Add(uint64(n))
		if run[0].prefetch {
			c.prefetched.Add(uint64(n))
		}
	}
	// A block goes to the cache before it leaves the inflight table and
	// before its readers wake, so that a reader that comes after them
	// finds it in one or the other. ristretto takes a Set in the
	// background, though, and a block neither table holds meanwhile is
	// fetched again: a stream's next read, right behind a needle's fetch,
	// fetched the needle twice (a sequential pass over a file larger than
	// the tier sent a tenth more; a test with gaps, one fetch in ten more).
	// So a whole needle's blocks (demand fetches leave inflight only here)
	// are set and waited for before they leave it. A ranged run of a
	// random reader, whose next read is elsewhere, is not worth the wait.
	// Until then the inflight entry holds a reference of its own: ristretto
	// may evict a block as soon as it takes it in, and a reader that finds
	// the entry must not take a slot already freed (and reused).
	setFirst := err == nil && p.whole()
	if setFirst {
		for i, f := range run {
			if !f.passed && !f.prefetch {
				c.arena.addRef(f.ref)
				c.cacheBlock(c.blockKey(ch, b+int64(i)), f)
			}
		}
		c.rc.Wait()
	}
	c.mu.Lock()
	if p == planPass {
		c.passing -= ch.Size
	}
	// A failure of the fetcher itself is held for failHold; the cache
	// closing is not a failure of the block.
	hold := err != nil && c.ctx.Err() == nil
	for i, f := range run {
		if f.passed {
			c.arena.release(f.ref) // the fetch has returned: no sink holds it
			continue
		}
		key := c.blockKey(ch, b+int64(i))
		f.err = err
		if hold {
			c.holdLocked(key, err)
		}
		if (!f.prefetch || err != nil) && c.inflight[key] == f {
			// ristretto's Set never blocks, nor takes c.mu.
			if err != nil || setFirst {
				c.arena.release(f.ref) // the fetch's, or the entry's own
			} else {
				c.cacheBlock(key, f)
			}
			delete(c.inflight, key)
			if f.prefetch {
				c.raBytes -= c.opts.BlockSize
			}
		}
		close(f.done)
	}
	c.trimReadaheadLocked()
	c.mu.Unlock()
}

// Ahead says where readahead of a needle held on disk goes, which depends
// on how its reader reads.
type Ahead uint8

const (
	// KernelAhead asks the kernel to read the cache file ahead, as for a
	// local file; the reader's own reads then copy and check the bytes
	// (readDiskDirect). Right for a reader whose requests reach the mount
	// several at a time (buffered reads, the kernel's readahead): the one
	// copy into its buffer beats a copy into memory and another out.
	KernelAhead Ahead = iota
	// MemoryAhead copies and checks the blocks into the memory tier in
	// the background. Right for a reader that sends one request at a
	// time and waits for it (O_DIRECT): with KernelAhead it would do the
	// copy and the checks of every request itself, in series, where here
	// they overlap with its previous request.
	MemoryAhead
	// PassingAhead is KernelAhead for a stream whose needles the disk
	// tier does not keep (Passing).
	PassingAhead
)

// stream is the Access of a stream whose reader reads as a says: the
// kernel's readahead for a buffered reader, into its page cache
// (Buffered), or the memory tier's copies for an O_DIRECT one.
func (a Ahead) stream() Access {
	switch a {
	case KernelAhead:
		return Buffered
	case PassingAhead:
		return Passing
	}
	return Sequential
}

// KeepsStream reports whether the disk tier keeps the needles a buffered
// stream reads at off through a file of size bytes: always while the file
// fits in the tier with its tables (disk.holds), and otherwise (as weed
// mount keeps a chunk) only in the first quarter of the tier's capacity.
// Past that, a stream would fill the tier with needles that a later stream
// evicts before it reaches them, and the writing cost more than it could
// save: a cold buffered read of 1 GiB in 1 MiB chunks at the default 128
// MiB ran at 340-393 MB/s with 2.0-2.4 s of the mount's CPU while it wrote
// all of it, and at 659-719 MB/s with 1.2-1.6 s with no disk tier (three
// runs each by hand; weed mount 512-562 MB/s). An O_DIRECT stream keeps
// all it reads: passing it too made a cold GiB at 1024 MiB 1.21x weed
// mount where it was 0.92x, but its second read (no page cache keeps it)
// 0.64x where it was 1.02x, three quarters of it fetched again.
func (c *Cache) KeepsStream(size, off int64) bool {
	if c.disk == nil {
		return true
	}
	return c.disk.holds(size) || off < c.disk.capacity/4
}

// Prefetch starts fetching the blocks of [off, off+n) of ch that are neither
// cached nor in flight, without waiting. It gives up when all prefetchers
// are busy or the readahead budget is full, and returns the offset in the
// chunk up to which it got (off+n, or less): readahead is an optimisation,
// never a queue that grows without bound. ahead says where readahead of a
// needle held on disk goes.
func (c *Cache) Prefetch(ch needle.Chunk, off, n int64, ahead Ahead) int64 {
	end := min(off+n, ch.Size)
	if off < 0 || off >= end || c.ctx.Err() != nil || ch.CheckSize() != nil {
		return off + n
	}
	if ahead != MemoryAhead && c.disk != nil {
		// Read from disk in the reader's goroutine (readDiskDirect):
		// the kernel reads ahead, as for a local file. The name is a
		// hash, made once for both.
		if name := diskName(ch.Key()); c.disk.hasDataNamed(name) {
			c.disk.willNeedNamed(name, off, end-off)
			return off + n
		}
	}
	access := ahead.stream()
	bs := c.opts.BlockSize
	last := (end - 1) / bs
	for b := off / bs; b <= last; {
		if _, ok := c.rc.Get(c.blockKey(ch, b)); ok {
			b++
			continue
		}
		c.mu.Lock()
		c.trimReadaheadLocked()
		full := c.raBytes >= c.raBudget
		_, busy := c.inflight[c.blockKey(ch, b)]
		c.mu.Unlock()
		if busy {
			// In flight already (a run may have passed a held block to
			// it): joining it needs no prefetcher, and would hold one
			// until that fetch ends.
			b++
			continue
		}
		if full {
			return b * bs
		}
		select {
		case c.prefetchSem <- struct{}{}:
		default:
			return b * bs
		}
		b += c.claimRunReleasing(ch, b, last, access)
	}
	return off + n
}

// claimRunReleasing claims a prefetch run and releases its prefetcher slot
// when the run's fetch ends (or at once, when it joined a fetch under way).
func (c *Cache) claimRunReleasing(ch needle.Chunk, b, want int64, access Access) int64 {
	waits := make([]*fetch, 1)
	n := c.claimRun(ch, b, want, access, true, waits)
	f := waits[0]
	c.arena.release(f.ref) // readahead keeps no reference of its own
	if !f.prefetch {
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
func (c *Cache) Forget(ch needle.Chunk) {
	if ch.CheckSize() != nil {
		return // never read, so never cached: no blocks to walk
	}
	bs := c.opts.BlockSize
	for b := int64(0); b*bs < ch.Size; b++ {
		c.rc.Del(c.blockKey(ch, b))
	}
}
