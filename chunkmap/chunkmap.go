// Package chunkmap maps a SeaweedFS file's chunk list to views: for any byte
// range of the file, which chunk (file id, offset in the chunk, length) or
// hole (zeros) holds each part.
//
// A chunk covers the file bytes [Offset, Offset+Size). Chunks may come in any
// order and may overlap; each byte belongs to the covering chunk of highest
// priority, and bytes no chunk covers are holes. Priority orders chunks by
//
//  1. ModifiedTsNs: the newer write wins;
//  2. the needle key of the file id: the larger key wins. This is the
//     explicit equal-timestamp rule SeaweedFS had before its current sweep:
//     NonOverlappingVisibleIntervals in weed/filer/filechunks.go sorted the
//     chunks by (timestamp, Fid.FileKey) and laid them down in that order.
//     Keys come from the master's sequencer, so the larger key is the later
//     assignment. A file id that does not parse counts as key 0;
//  3. position in the chunk list once manifests are expanded in place: the
//     later entry wins, as in SeaweedFS's incremental interval merge
//     (weed/filer/interval_list.go, where the inserted interval wins on
//     "interval.TsNs >= next.TsNs").
//
// This is a total order, so list order matters only to rule 3. SeaweedFS's
// current sweep (readResolvedChunks in weed/filer/filechunks_read.go) has no
// consistent rule for overlapping chunks with equal timestamps: a chunk that
// starts while an equal-timestamp chunk shows is never queued, and the first
// end of the two dequeues the one that shows, so everything after that end
// reads as a hole (a [0,10) and b [5,15) give a [0,10) and a hole at
// [10,15); a [0,15) and b [5,10) give a [0,10) and the same hole). weedfuse
// keeps the explicit rule above rather than reproduce that loss.
//
// Manifest chunks are replaced, where they stand in the list, by the chunks
// their blob lists; those chunks carry absolute file offsets and their own
// ModifiedTsNs, and the manifest chunk's own timestamp plays no part.
//
// Invariants of a built Map:
//   - its visible intervals are sorted, non-empty, and never overlap;
//   - each interval lies inside its chunk: 0 <= ChunkOff and
//     ChunkOff+Len <= Chunk.Size, and ChunkOff == FileOff - chunk.Offset;
//   - two touching intervals never come from the same chunk entry (a chunk's
//     bytes are split only where another chunk takes over);
//   - it is never modified after Build, so it is safe for concurrent use.
package chunkmap

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle"
)

// Fetcher returns the whole logical (decoded) bytes of a manifest blob. A
// manifest chunk's Size is the span of file bytes its children cover (what
// the filer records), not the blob's length, so the fetcher finds the
// blob's end from the stored needle. check validates a blob (Build parses
// it); a fetcher that holds several copies runs it on each copy it reads
// and reads the next when it fails, so that one corrupt replica does not
// fail the open. It calls check one blob at a time and returns the blob
// that passed, or an error wrapping check's. volume.Reader implements it.
// Safe for concurrent use.
type Fetcher interface {
	ReadNeedleChecked(ctx context.Context, c needle.Chunk, check func([]byte) error) ([]byte, error)
}

// View is one contiguous piece of a file range: a hole, or bytes of one chunk.
type View struct {
	FileOff  int64        // where this view starts in the file
	Len      int64        // > 0
	Hole     bool         // reads as zeros; Chunk is zero
	Chunk    needle.Chunk // the leaf chunk holding these bytes
	ChunkOff int64        // offset of FileOff inside the chunk's logical bytes
}

// span is one visible interval, kept small because a file may have a million
// of them: the chunk descriptor lives once in Map.chunks however many spans
// show pieces of it.
type span struct {
	start, end int64 // file bytes [start, end)
	chunkOff   int64 // offset of start inside the chunk
	chunk      int32 // index into Map.chunks
}

// Map is the settled view of one chunk list. Immutable after Build.
type Map struct {
	spans  []span // sorted by start, disjoint, non-empty
	chunks []needle.Chunk
}

// Build resolves manifests (via f; f may be nil if no chunk is a manifest,
// else error) and settles overlaps once; the returned Map is immutable and
// safe for concurrent use. Build never modifies chunks, but the Map shares
// their file id strings and cipher keys, so callers must not modify them
// afterwards either.
//
// It fails on a chunk whose range leaves [0, MaxInt64], on a data chunk of
// non-zero size without a file id, and on any manifest that cannot be
// fetched or decoded. It runs in O(n log n) for n resolved chunks. It
// fetches each manifest blob once, however often it is listed, and
// refuses a list that expands to more than MaxChunks entries or needs more
// than MaxManifests blobs (ErrTooManyChunks, ErrTooManyManifests).
func Build(ctx context.Context, chunks []*filerpb.FileChunk, f Fetcher) (*Map, error) {
	return build(ctx, chunks, f, defaultLimits)
}

func build(ctx context.Context, chunks []*filerpb.FileChunk, f Fetcher, lim limits) (*Map, error) {
	r := resolver{f: f, lim: lim, leaves: make([]*filerpb.FileChunk, 0, min(len(chunks), lim.chunks))}
	if err := r.resolve(ctx, chunks, nil); err != nil {
		return nil, err
	}
	return settle(r.leaves)
}

// Whole returns the chunk that is all of a file of size bytes, when chunks
// is that one chunk alone: a data chunk (not a manifest) with a file id, at
// offset 0, of size bytes. It is what Build's map would show over the
// whole file, without building one: a file of one chunk is the commonest
// file, and opening it with FUSE passthrough needs nothing more.
func Whole(chunks []*filerpb.FileChunk, size int64) (needle.Chunk, bool) {
	if len(chunks) != 1 || size <= 0 {
		return needle.Chunk{}, false
	}
	c := chunks[0]
	if c.GetIsChunkManifest() || c.GetOffset() != 0 || c.GetSize() != uint64(size) || FileID(c) == "" {
		return needle.Chunk{}, false
	}
	return ChunkFromFiler(c), true
}

// checkRange rejects a chunk whose bytes do not fit in [0, MaxInt64]; such a
// list is corrupt, and serving some reading of it would hide that.
func checkRange(c *filerpb.FileChunk) error {
	off, size := c.GetOffset(), c.GetSize()
	if off < 0 || size > uint64(math.MaxInt64-off) {
		return fmt.Errorf("chunk %s: range offset %d size %d outside the file", FileID(c), off, size)
	}
	return nil
}

// rank is a chunk's place in the overlap order: it wins over every chunk of
// lower rank. The fields compare in order; seq is unique, so the order is total.
type rank struct {
	ts  int64
	key uint64
	seq int32
}

func (a rank) above(b rank) bool {
	if a.ts != b.ts {
		return a.ts > b.ts
	}
	if a.key != b.key {
		return a.key > b.key
	}
	return a.seq > b.seq
}

// entry is a resolved data chunk as the sweep needs it; seq indexes the leaf
// list Build resolved, which holds no zero-size chunks, so start < end.
type entry struct {
	start, end int64
	rank
}

// settle sweeps the chunks' start and end points in offset order, keeping the
// chunks that cover the sweep position in a max-heap by rank; the top is the
// chunk that shows. Each chunk is pushed at its start and removed at its end,
// so the heap holds only the chunks overlapping one point (one or two for a
// file written front to back), and the sweep is O(n log n) from its two sorts.
func settle(leaves []*filerpb.FileChunk) (*Map, error) {
	if len(leaves) > math.MaxInt32 {
		return nil, fmt.Errorf("chunkmap: %d chunks exceed the limit of %d", len(leaves), math.MaxInt32)
	}
	entries := make([]entry, 0, len(leaves))
	for i, c := range leaves {
		if c.GetFileId() == "" && c.GetFid() == nil {
			return nil, fmt.Errorf("chunkmap: chunk at offset %d size %d has no file id", c.GetOffset(), c.GetSize())
		}
		start := c.GetOffset()
		entries = append(entries, entry{
			start: start,
			end:   start + int64(c.GetSize()),
			rank:  rank{ts: c.GetModifiedTsNs(), key: needleKey(c), seq: int32(i)},
		})
	}
	// Lists usually come sorted by offset, which pdqsort handles in linear time.
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Compare(a.start, b.start) })
	ends := make([]int32, len(entries))
	for i := range ends {
		ends[i] = int32(i)
	}
	slices.SortFunc(ends, func(a, b int32) int { return cmp.Compare(entries[a].end, entries[b].end) })

	// spans[i].chunk holds the leaf's seq until the chunk table is built below.
	spans := make([]span, 0, len(entries))
	h := newRankHeap(entries)
	cur, curStart := int32(-1), int64(0) // the entry showing since curStart, -1 for a hole
	next, nextEnd := 0, 0                // first entry not yet pushed, first in ends not yet removed
	for nextEnd < len(ends) {
		// The winner can change only where an entry starts or ends. Every
		// entry starts before it ends, so it is pushed before it is removed.
		x := entries[ends[nextEnd]].end
		if next < len(entries) {
			x = min(x, entries[next].start)
		}
		for nextEnd < len(ends) && entries[ends[nextEnd]].end == x {
			h.remove(ends[nextEnd])
			nextEnd++
		}
		for next < len(entries) && entries[next].start == x {
			h.push(int32(next))
			next++
		}
		win := h.top()
		if win == cur {
			continue
		}
		if cur >= 0 {
			e := &entries[cur]
			spans = append(spans, span{start: curStart, end: x, chunkOff: curStart - e.start, chunk: e.seq})
		}
		cur, curStart = win, x
	}

	// Convert each visible leaf once, however many spans show it.
	chunkOf := make([]int32, len(leaves))
	visible := 0
	for _, s := range spans {
		if chunkOf[s.chunk] == 0 {
			visible++
			chunkOf[s.chunk] = int32(visible) // 1-based: 0 means not yet seen
		}
	}
	m := &Map{spans: spans, chunks: make([]needle.Chunk, visible)}
	for seq, ci := range chunkOf {
		if ci > 0 {
			m.chunks[ci-1] = ChunkFromFiler(leaves[seq])
		}
	}
	for i := range spans {
		spans[i].chunk = chunkOf[spans[i].chunk] - 1
	}
	return m, nil
}

// rankHeap is a max-heap by rank of indices into entries, with each entry's
// heap position tracked so that an entry can be removed when it ends.
type rankHeap struct {
	entries []entry
	heap    []int32
	pos     []int32 // pos[e] is e's index in heap; stale once e is removed
}

func newRankHeap(entries []entry) *rankHeap {
	return &rankHeap{entries: entries, pos: make([]int32, len(entries))}
}

// top is the highest-ranked entry, or -1 when the heap is empty.
func (h *rankHeap) top() int32 {
	if len(h.heap) == 0 {
		return -1
	}
	return h.heap[0]
}

func (h *rankHeap) above(i, j int) bool {
	return h.entries[h.heap[i]].rank.above(h.entries[h.heap[j]].rank)
}

func (h *rankHeap) swap(i, j int) {
	h.heap[i], h.heap[j] = h.heap[j], h.heap[i]
	h.pos[h.heap[i]] = int32(i)
	h.pos[h.heap[j]] = int32(j)
}

func (h *rankHeap) push(e int32) {
	h.heap = append(h.heap, e)
	h.pos[e] = int32(len(h.heap) - 1)
	h.up(len(h.heap) - 1)
}

func (h *rankHeap) remove(e int32) {
	i, last := int(h.pos[e]), len(h.heap)-1
	if i != last {
		h.swap(i, last)
	}
	h.heap = h.heap[:last]
	if i != last {
		// The moved entry may belong above or below its new place.
		h.down(i)
		h.up(i)
	}
}

func (h *rankHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.above(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *rankHeap) down(i int) {
	for {
		best, l, r := i, 2*i+1, 2*i+2
		if l < len(h.heap) && h.above(l, best) {
			best = l
		}
		if r < len(h.heap) && h.above(r, best) {
			best = r
		}
		if best == i {
			return
		}
		h.swap(i, best)
		i = best
	}
}

// Views appends to dst the views covering [off, off+size) clipped to
// [0, fileSize), contiguous and in order, holes included; adjacent views
// never overlap. Binary search, O(log n + k) for k views.
func (m *Map) Views(dst []View, off, size, fileSize int64) []View {
	if size <= 0 {
		return dst
	}
	end := fileSize
	if off < 0 || size <= math.MaxInt64-off { // else off+size overflows: clip to fileSize
		end = min(off+size, fileSize)
	}
	off = max(off, 0)
	if off >= end {
		return dst
	}
	// First span that ends after off.
	lo, hi := 0, len(m.spans)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.spans[mid].end <= off {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	pos := off
	for _, s := range m.spans[lo:] {
		if s.start >= end {
			break
		}
		if pos < s.start {
			dst = append(dst, View{FileOff: pos, Len: s.start - pos, Hole: true})
			pos = s.start
		}
		stop := min(s.end, end)
		dst = append(dst, View{
			FileOff:  pos,
			Len:      stop - pos,
			Chunk:    m.chunks[s.chunk],
			ChunkOff: s.chunkOff + pos - s.start,
		})
		pos = stop
	}
	if pos < end {
		dst = append(dst, View{FileOff: pos, Len: end - pos, Hole: true})
	}
	return dst
}

// Extent is the end of the last visible interval: the size the chunks alone
// give the file, 0 when nothing is visible.
func (m *Map) Extent() int64 {
	if len(m.spans) == 0 {
		return 0
	}
	return m.spans[len(m.spans)-1].end
}

// Intervals returns every visible interval in file order, holes left out
// (they are the gaps between intervals). For tests and debugging.
func (m *Map) Intervals() []View {
	out := make([]View, len(m.spans))
	for i, s := range m.spans {
		out[i] = View{FileOff: s.start, Len: s.end - s.start, Chunk: m.chunks[s.chunk], ChunkOff: s.chunkOff}
	}
	return out
}
