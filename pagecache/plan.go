package pagecache

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// plan is how a miss is fetched. The rules live here and nowhere else:
//
//  1. A needle whose bytes are on the disk tier is read from there, each
//     block checked against its table: in the reader's goroutine and
//     straight into its buffer (readDiskDirect), or, for blocks already
//     being fetched or read ahead, by the fetch (planDisk).
//  2. A sequential reader (a stream, or readahead), a small needle (up to
//     wholeNeedle: a range would save little), a needle that is not plain
//     bytes (gzipped or encrypted: its stored bytes cannot be cut) and
//     -verify=strict fetch the whole needle (planWhole). It is verified
//     against the volume server's CRC32C (and the e_tag where asked) while
//     it streams; memory keeps the blocks a reader wants soon, and the disk
//     tier the whole needle, with a table of its blocks' checksums.
//  3. A random read of any other needle fetches just the blocks it touches
//     (planRange), where a whole needle would cost its full size (4 or 64
//     MiB) for every miss once the data is larger than the caches. Where
//     the needle's table is known (it was once read whole, and its table
//     outlived its bytes), the read's whole 64 KiB blocks are fetched,
//     checked against it and kept. Where none is, nothing could check the
//     bytes, and the read fetches just the 4 KiB pages it touches, straight
//     into the reader's buffer, uncached (readDirect), as weed mount
//     serves every byte, and counted as unverified. While the disk tier has
//     room, the whole needle follows in the background (at most maxFills
//     at once), so that later reads are verified local reads; a full tier
//     takes no background fills, since they would only churn it.
//  4. A whole needle fetched for a buffered reader (Buffered: the kernel
//     keeps what it reads in its page cache of the mount's file) goes to
//     the disk tier past the page cache (planStream, diskWriter.dropBehind),
//     where it would be a second copy of the same bytes, when the fetch
//     keeps all of it in memory too (at most MaxFetch): the reader then
//     never reads it back from the disk tier while it streams.
//  5. A stream through a file that the disk tier cannot hold keeps only
//     what lies in the first quarter of the tier on disk, as weed mount
//     keeps chunks (Cache.KeepsStream); past it, a whole needle that the
//     fetch keeps all of in memory goes to memory only (planPass), while
//     the needles such fetches hold add up to at most 1/passShare of the
//     memory tier. Past that, as when many streams read at once, it goes
//     the way of rule 4: a needle held in memory alone that is evicted
//     before its reader reaches it costs a whole fetch again, where one
//     on disk costs a read of the disk tier.
//
// Measured side by side with weed mount (bench/results.md, beyond-rand4k:
// 4 KiB random reads of a 2 GiB file at default flags): 64 KiB ranges for
// every miss ran at 0.75-0.83x weed mount, 4 KiB pages where nothing can
// check a block at 0.98x (with the fs fingerprint fix of the same day),
// and at 1.51x once ranged GETs left net/http for internal/volume's own
// client; whole needles, the rule before, at 0.1x.
type plan uint8

// passShare: the needles of planPass runs being fetched hold at most
// 1/passShare of the memory tier.
// A stream's readahead stays within 1/8 of it (ReadaheadMax), so one or
// two streams pass; 64 readers of one 1 GiB file (bench, readers64) held
// needles in memory alone until they were evicted unread, and ran at
// 0.83-0.95x weed mount where they had run at 1.06-1.21x.
const passShare = 4

const (
	planWhole plan = iota
	planDisk
	planRange
	// planMemory fetches the whole needle, verified, into memory only: a
	// background fill while the disk tier has no room (fillMemory).
	planMemory
	// planStream is planWhole with the disk tier's copy written past the
	// page cache (rule 4).
	planStream
	// planPass fetches the whole needle into memory only, as planMemory
	// does, for a reader's stream (rule 5); its fetches are counted in
	// Cache.passing. Like every plan that fetches the whole needle, it
	// reads the disk tier's copy instead when a write of the needle is
	// under way already (fromWrite).
	planPass
)

// whole reports whether p fetches the whole needle (into the disk tier,
// but for planPass).
func (p plan) whole() bool { return p == planWhole || p == planStream || p == planPass }

// planLocked chooses how to fetch a missing block of ch.
func (c *Cache) planLocked(ch needle.Chunk, access Access) plan {
	switch {
	case c.disk != nil && c.disk.hasData(ch.Key()):
		return planDisk
	case access == memoryFill:
		return planMemory
	case access == Passing && ch.Size <= c.opts.MaxFetch && c.passing+ch.Size <= c.opts.Capacity/passShare:
		return planPass
	case (access == Buffered || access == Passing) && ch.Size <= c.opts.MaxFetch:
		return planStream
	case c.opts.Strict, access != Random, !ch.Plain(), ch.Size <= wholeNeedle:
		return planWhole
	}
	return planRange
}

// fetchPlanned fills dsts, the blocks of ch from start, as p says. A plan
// that cannot be carried out (the disk's copy is gone or bad, no fetcher
// reads ranges, a range fails its table) falls back to the whole needle.
func (c *Cache) fetchPlanned(ctx context.Context, ch needle.Chunk, start int64, dsts [][]byte, p plan) (int, error) {
	total := 0
	for _, d := range dsts {
		total += len(d)
	}
	if p == planDisk {
		if c.disk.read(ch.Key(), start, dsts) {
			return total, nil
		}
		p = planWhole
	}
	if p == planRange {
		n, err := c.fetchRange(ctx, ch, start, dsts)
		if err == nil || !errors.Is(err, needle.ErrNotServed) && !errors.Is(err, needle.ErrCorrupt) {
			return n, err
		}
	}
	// A plan that keeps the needle on disk writes it there as it comes,
	// unless the tier will not take it; memory's plans keep it in memory
	// alone. A fetch that writes nothing joins a write of the needle
	// under way, if there is one.
	var sink *diskWriter
	if c.disk != nil && p != planMemory && p != planPass {
		if sink = c.disk.writer(ch.Key(), ch.Size, false); sink != nil {
			sink.dropBehind = p == planStream
		}
	}
	req := needle.Request{Chunk: ch, Off: start, Dsts: dsts}
	if sink == nil {
		if ok, err := c.fromWrite(ctx, ch, start, dsts); err != nil {
			return 0, err
		} else if ok {
			return total, nil
		}
		return c.f.Fetch(ctx, req)
	}
	req.Whole = sink
	n, err := c.f.Fetch(ctx, req)
	if err != nil {
		sink.abort()
		return n, err
	}
	sink.commit(ch.Size)
	return n, nil
}

// fromWrite serves dsts, the blocks of ch from start, from the disk tier
// when the needle is being fetched whole into it already (a stream's
// earlier run, or a fill): it waits for that write and reads from there,
// rather than fetch it all again. It reports false, with no error, when
// no write is under way or the needle did not land; an error is ctx's.
func (c *Cache) fromWrite(ctx context.Context, ch needle.Chunk, start int64, dsts [][]byte) (bool, error) {
	if c.disk == nil {
		return false, nil
	}
	done := c.disk.written(ch.Key())
	if done == nil {
		return false, nil
	}
	select {
	case <-done:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	return c.disk.read(ch.Key(), start, dsts), nil
}

// fetchRange reads the blocks of a range and checks each against the
// needle's table, if the disk tier knows one. A block that fails is an
// error wrapping needle.ErrCorrupt (the caller then reads the whole
// needle); one with nothing to check it is counted as unverified.
func (c *Cache) fetchRange(ctx context.Context, ch needle.Chunk, start int64, dsts [][]byte) (int, error) {
	n, err := c.f.Fetch(ctx, needle.Request{Chunk: ch, Off: start, Dsts: dsts, Range: true})
	if err != nil {
		return n, err
	}
	c.rangeFetches.Add(1)
	var t *diskTable
	if c.disk != nil {
		t = c.disk.table(ch.Key())
	}
	off := start
	for _, d := range dsts {
		switch {
		case t == nil || int64(len(d)) != min(c.opts.BlockSize, t.length-off):
			// No table, or a block cut short by the chunk's end inside
			// the needle, whose checksum covers more than was fetched.
			c.unverified.Add(uint64(len(d)))
		case t.blockOK(off, c.opts.BlockSize, d):
			c.verifiedRange.Add(uint64(len(d)))
		default:
			return 0, fmt.Errorf("range of chunk %s at %d fails its block checksum: %w", ch.FileID, off, needle.ErrCorrupt)
		}
		off += int64(len(d))
	}
	if t == nil {
		c.fillLater(ch)
	}
	return n, nil
}

// fillLater fetches the whole needle of ch in the background, verified,
// so that later reads of it are local and checked: into the disk tier when
// it has room for it without evicting, or else into memory (fillMemory).
// At most maxFills run at once. The fill is owned by c.wg and ends with
// c.ctx.
func (c *Cache) fillLater(ch needle.Chunk) {
	if c.disk == nil || !c.disk.roomFor(ch.Size) {
		c.fillMemory(ch)
		return
	}
	select {
	case c.fillSem <- struct{}{}:
	default:
		return
	}
	sink := c.disk.writer(ch.Key(), ch.Size, false)
	if sink == nil {
		<-c.fillSem
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.fillSem }()
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.FetchTimeout)
		defer cancel()
		if _, err := c.f.Fetch(ctx, needle.Request{Chunk: ch, Whole: sink}); err != nil {
			sink.abort()
			return
		}
		sink.commit(ch.Size)
		c.fills.Add(1)
	}()
}

// fillMemory fetches the whole needle of ch into memory blocks in the
// background, as a demand miss of it would, when memory has free slots
// for all of it beyond the readahead budget and the reserve for fetches in
// flight: a memory tier that random reads of data larger than the caches
// never fill (they fetch uncached pages, readDirect) then holds needles
// whose later reads are hits. A full tier takes no fills (they would only
// churn it), nor does a needle of more than a quarter of it. Beyond every
// cache (bench, beyond-rand4k: 2 GiB, 256 MiB of memory and 128 MiB of
// disk), it is a hit for a sixth of the random reads that the disk tier
// could not take.
func (c *Cache) fillMemory(ch needle.Chunk) {
	bs := c.opts.BlockSize
	nb := (ch.Size + bs - 1) / bs
	if ch.Size > c.opts.Capacity/4 || int64(c.arena.freeSlots()) < nb+(c.raBudget+c.reserve)/bs {
		return
	}
	select {
	case c.fillSem <- struct{}{}:
	default:
		return
	}
	c.mu.Lock()
	untouched := c.untouchedLocked(ch, nb-1)
	c.mu.Unlock()
	if !untouched {
		<-c.fillSem
		return
	}
	waits := make([]*fetch, 1)
	c.claimRun(ch, 0, nb-1, memoryFill, false, waits)
	f := waits[0]
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		<-f.done
		c.arena.release(f.ref)
		if f.err == nil {
			c.memoryFills.Add(1)
		}
		<-c.fillSem
	}()
}

// ErrNoRoom is FillDisk's answer when there is no disk tier, or it has no
// room left without evicting.
var ErrNoRoom = errors.New("disk cache has no room")

// FillDisk fetches the whole needle of ch into the disk tier, verified,
// unless it is there already, and waits for it. wrote says that this call
// wrote it, through the kernel's page cache (a fill never writes past it),
// where its pages then are; a needle found on disk, or written by another
// fetch it waited for, is not this call's (wrote false). Without evict it
// returns ErrNoRoom when the tier has no room left without evicting: a scan
// that fills a whole directory ahead of its readers should stop there, since
// pushing out what it filled earlier would gain nothing. With evict the
// least recently used needles make room, as for a reader's own fetch: a fill
// just ahead of a reader stands for that fetch. It returns ErrNoRoom when
// there is no disk tier. Any other error says the needle is not on disk (a
// failed fetch, another fill of it that failed, a closing mount). A failed
// fetch fails reads and fills of the needle at once for failHold, as a
// reader's failed fetch does (fetchRun): they would otherwise wait out the
// same retries again. Safe for concurrent use; the caller bounds how many
// run at once (OpenWhole's fills: one per open in flight).
func (c *Cache) FillDisk(ctx context.Context, ch needle.Chunk, evict bool) (wrote bool, err error) {
	if c.disk == nil || ch.Size <= 0 {
		return false, ErrNoRoom
	}
	key := ch.Key()
	return c.fillDisk(ctx, ch, key, diskName(key), evict)
}

// fillDisk is FillDisk of a needle on a disk tier, given its key and its
// disk name, which costs a hash to make (OpenWhole has made it already).
func (c *Cache) fillDisk(ctx context.Context, ch needle.Chunk, key, name string, evict bool) (wrote bool, err error) {
	if c.disk.hasDataNamed(name) {
		return false, nil
	}
	if err := c.heldFailure(ch); err != nil {
		return false, fmt.Errorf("fill chunk %s: %w", ch.FileID, err)
	}
	if !evict && !c.disk.roomFor(ch.Size) {
		return false, ErrNoRoom
	}
	sink := c.disk.writerNamed(key, name, ch.Size, true)
	if sink == nil {
		done := c.disk.writtenNamed(name)
		if done == nil {
			if c.disk.hasDataNamed(name) {
				return false, nil
			}
			// Too large for the tier, or writes paused after the disk
			// filled up.
			return false, ErrNoRoom
		}
		// Another fetch is writing it.
		select {
		case <-done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		if !c.disk.hasDataNamed(name) {
			return false, fmt.Errorf("fill chunk %s: another write of it failed", ch.FileID)
		}
		return false, nil
	}
	fctx, cancel := context.WithTimeout(ctx, c.opts.FetchTimeout)
	defer cancel()
	if _, err := c.f.Fetch(fctx, needle.Request{Chunk: ch, Whole: sink}); err != nil {
		sink.abort()
		// The caller giving up, or the cache closing, is no failure of
		// the needle.
		if ctx.Err() == nil && c.ctx.Err() == nil {
			c.holdFailure(ch, err)
		}
		return false, fmt.Errorf("fill chunk %s: %w", ch.FileID, err)
	}
	sink.commit(ch.Size)
	if !c.disk.hasDataNamed(name) {
		return false, fmt.Errorf("fill chunk %s: not written to the disk cache", ch.FileID)
	}
	c.fills.Add(1)
	return true, nil
}

// OpenWhole opens the disk tier's copy of ch's logical bytes, exactly
// ch.Size long and every block checked against its table now (or when
// last opened, if the file has not changed since), for a file
// that is that one chunk: the kernel can then read the file itself (FUSE
// passthrough) with no request to the mount. A FillDisk of the needle under
// way (a scan's or a prefetch round's, ahead of its readers) is waited for,
// up to ctx: the file is then passed through, where its reads would come
// to the mount, wait for the same write and read the cache file. A
// reader's own write of a needle is not waited for: it may be large, and
// its reads join the fetch (a small needle's fill below, should a reader
// start one first, waits for it).
//
// A needle of wholeNeedle bytes or less that no tier holds or fetches is
// first filled into the disk tier, as a reader's own fetch would be (it
// may evict), and then opened: the first read of it would fetch it whole
// anyway (plan rule 2), and passed through it costs the mount no READ and
// the kernel no second copy in FUSE's page cache. A shuffled loader's
// first epoch over 16,384 files of 128 KiB, where the directory's scan
// reaches about three in four files before their reader: the reader read
// 3,700-3,830 files through the mount before, none after; alternated runs
// (medians of five, then of four), 2,093 -> 2,171 and 1,925 -> 2,170
// files/s, 7.28 -> 6.89 and 8.29 -> 6.98 s of mount CPU.
// A needle held in memory or being fetched is left to its reads, and so
// is one whose file fails its check here (removed and counted: its reads
// fetch it again, through the mount).
//
// It reports false when the chunk is not on disk whole (or failed the
// check, which removes it, or the fill failed); the caller then reads
// through the cache as usual. The caller closes the file. Safe for
// concurrent use.
func (c *Cache) OpenWhole(ctx context.Context, ch needle.Chunk) (*os.File, bool) {
	if c.disk == nil || ch.Size <= 0 || ch.CheckSize() != nil {
		return nil, false
	}
	key := ch.Key()
	name := diskName(key) // a hash: once per open, not per lookup
	if done := c.disk.fillingNamed(name); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, false
		}
	} else if ch.Size <= wholeNeedle && !c.disk.hasDataNamed(name) && c.untouched(ch) {
		if _, err := c.fillDisk(ctx, ch, key, name, true); err != nil {
			return nil, false
		}
	}
	return c.disk.openWholeNamed(name, key, ch.Size)
}

// readDiskDirect serves a read of a needle held on disk from its file, in
// the reader's goroutine, as a local file system serves one: each block the
// read touches that memory does not hold is read from the file, checked
// against its table and copied into dst, and is not kept in memory. Blocks
// that lie whole inside the read land in dst itself, and each run of them
// is one preadv, so a 1 MiB sequential read costs one system call and one
// pass for the checksums; the kernel's page cache over the cache's files
// is the memory that data on disk needs (Prefetch asks the kernel to read
// it ahead). Through the fetch path a read of a needle on disk cost a
// fetch's goroutine, an arena slot per block, a copy into it and a cache
// insertion: random 4 KiB reads ran at a third of s3fs serving them from
// its local copy (bench, rand4k-4), and a 1 GiB re-read at 0.4-0.6x a local
// file, with the mount's CPU the limit. ok is false when the needle is not
// (or no longer) on disk, or a block fails: the read then goes the usual
// way, which fetches it again.
func (c *Cache) readDiskDirect(ch needle.Chunk, off, end, first, last int64, dst []byte) (int, bool) {
	if c.disk == nil {
		return 0, false
	}
	key := ch.Key()
	if !c.disk.usedData(key) || c.inflightAny(ch, first, last) {
		return 0, false
	}
	bs := c.opts.BlockSize
	lastOfChunk := (ch.Size - 1) / bs
	// edge holds the blocks read through a buffer: the read's first and
	// last when they stick out of it, and the chunk's last (its table may
	// cover needle bytes past the chunk's end).
	var edge [2]*[]byte
	edgeBlk := [2]int64{-1, -1}
	defer func() {
		for _, bp := range edge {
			if bp != nil {
				c.edgeBufs.Put(bp)
			}
		}
	}()
	var spanBuf [17][]byte
	for b := first; b <= last; {
		if c.cached(c.blockKey(ch, b), dst, off, end, b) {
			c.hits.Add(1)
			b++
			continue
		}
		// The run of blocks from b on that memory does not hold, read
		// with one call.
		from := b
		span := spanBuf[:0]
		for ; b <= last; b++ {
			if b > from {
				if _, ok := c.rc.Get(c.blockKey(ch, b)); ok {
					break
				}
			}
			bstart := b * bs
			if bstart >= off && bstart+bs <= end && b < lastOfChunk {
				span = append(span, dst[bstart-off:bstart-off+bs:bstart-off+bs])
				continue
			}
			i := 0
			if b == last && b != first {
				i = 1
			}
			edge[i], edgeBlk[i] = c.edgeBufs.Get().(*[]byte), b
			span = append(span, (*edge[i])[:c.blockLen(ch, b)])
		}
		if !c.disk.read(key, from*bs, span) {
			return 0, false
		}
		for i, blk := range span {
			if bb := from + int64(i); bb == edgeBlk[0] || bb == edgeBlk[1] {
				if err := c.copyBlock(dst, off, end, bb, blk); err != nil {
					return 0, false
				}
			}
		}
		c.misses.Add(uint64(len(span)))
	}
	return int(end - off), true
}

// inflightAny reports whether a block of ch from first to last is being
// fetched or was read ahead: the reader then takes it the usual way, or
// readahead's blocks would wait unread until abandoned, holding its budget
// (a needle lands on disk while a stream's readahead of it is under way).
func (c *Cache) inflightAny(ch needle.Chunk, first, last int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.inflight) == 0 {
		return false
	}
	for b := first; b <= last; b++ {
		if _, ok := c.inflight[c.blockKey(ch, b)]; ok {
			return true
		}
	}
	return false
}

// pageSize is the unit of a direct read: what the kernel caches.
const pageSize = 4096

// readDirect serves a random read that no tier holds, of a needle whose
// blocks nothing could check, with one ranged GET of the 4 KiB pages the
// read touches, into dst (through a buffer when the read is not page
// aligned). It reports ok = false when the read is not such a read: some
// of its blocks are cached or in flight, the needle is on disk or has a
// known table (then whole blocks are fetched and checked), the plan is
// not a range, or no fetcher reads ranges. A 64 KiB block for a 4 KiB read cost the volume server a
// larger disk read for bytes that are then kept at random and rarely read
// again when the data is larger than the caches.
func (c *Cache) readDirect(ctx context.Context, ch needle.Chunk, off, end, first, last int64, dst []byte) (int, bool, error) {
	key := ch.Key()
	for b := first; b <= last; b++ {
		if _, ok := c.rc.Get(c.blockKey(ch, b)); ok {
			return 0, false, nil
		}
	}
	c.mu.Lock()
	p := c.planLocked(ch, Random)
	busy := false
	for b := first; b <= last && !busy; b++ {
		_, busy = c.inflight[c.blockKey(ch, b)]
	}
	c.mu.Unlock()
	if p != planRange || busy || (c.disk != nil && c.disk.table(key) != nil) {
		return 0, false, nil
	}
	from, to := off&^(pageSize-1), min((end+pageSize-1)&^(pageSize-1), ch.Size)
	buf := dst[:end-off]
	if from != off || to != end {
		buf = make([]byte, to-from)
	}
	// Under the reader's own context (a FUSE request's, which has no
	// deadline): a server that trickles the range is cut off by the
	// fetcher's stall rule (volume.Options.StallTimeout). A deadline here
	// cost a timer and, for a context go-fuse made, a goroutine per read:
	// a fifth more of the mount's CPU in random 4 KiB reads.
	n, err := c.f.Fetch(ctx, needle.Request{Chunk: ch, Off: from, Dsts: [][]byte{buf}, Range: true})
	if errors.Is(err, needle.ErrNotServed) {
		// No step reads ranges (an RDMA-only chain): the blocks are
		// fetched whole instead.
		return 0, false, nil
	}
	c.misses.Add(uint64(last - first + 1))
	if err == nil && int64(n) != to-from {
		err = fmt.Errorf("read range of chunk %s at %d: got %d bytes, want %d", ch.FileID, from, n, to-from)
	}
	if err != nil {
		return 0, true, err
	}
	c.rangeFetches.Add(1)
	c.unverified.Add(uint64(n))
	c.fetched.Add(uint64(n))
	if from != off || to != end {
		copy(dst[:end-off], buf[off-from:])
	}
	c.fillLater(ch)
	return int(end - off), true, nil
}
