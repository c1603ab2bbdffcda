package pagecache

import "sync"

// Readahead detects a sequential stream in the reads of one open file and
// says what to fetch ahead, as Mountpoint-S3 does: the window starts at Min
// and doubles with each sequential read up to Max; a read out of sequence
// drops back to random mode, where nothing is fetched ahead and reads fetch
// single blocks. Safe for concurrent use.
type Readahead struct {
	min, max int64

	mu sync.Mutex
	// next is the offset right after the furthest read so far.
	next int64
	// window is the current readahead window; 0 in random mode.
	window int64
	// until is how far ahead has been requested already.
	until int64
	// seqReads counts sequential reads in a row.
	seqReads int
}

// NewReadahead returns a detector whose window grows from lo to hi bytes.
func NewReadahead(lo, hi int64) *Readahead {
	return &Readahead{min: lo, max: max(lo, hi)}
}

// Observe records a read of [off, off+n) and returns the range to prefetch
// (n == 0: nothing). The kernel issues a buffered stream's readahead as
// several requests at once, which arrive out of order, so a read counts as
// sequential when it lands within the current window around the stream's
// end, not only exactly at it.
func (r *Readahead) Observe(off, n int64) (pfOff, pfLen int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := off + n
	slack := max(r.window, n)
	sequential := off == r.next || (r.seqReads > 0 && off >= r.next-slack && off <= r.next+slack)
	if !sequential {
		// Random mode. A first read at offset 0 still starts a stream.
		r.window, r.seqReads, r.until = 0, 0, 0
		r.next = end
		return 0, 0
	}
	r.seqReads++
	r.next = max(r.next, end)
	if r.window == 0 {
		r.window = r.min
	} else {
		r.window = min(2*r.window, r.max)
	}
	from := max(r.until, r.next)
	to := r.next + r.window
	if to <= from {
		return 0, 0
	}
	r.until = to
	return from, to - from
}
