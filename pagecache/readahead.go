package pagecache

import "sync"

// Readahead detects a sequential stream in the reads of one file and
// says what to fetch ahead, as Mountpoint-S3 does: the window starts at Min
// and doubles with each sequential read up to Max; a read far from the
// stream drops back to random mode, where nothing is fetched ahead and
// reads fetch single blocks. Safe for concurrent use.
type Readahead struct {
	min, max int64

	mu sync.Mutex
	// next is the end of the stream: the offset right after the furthest
	// read so far. started is false before the first read.
	next    int64
	started bool
	// window is the current readahead window; 0 in random mode.
	window int64
	// until is how far ahead has been requested already.
	until int64
}

// NewReadahead returns a detector whose window grows from lo to hi bytes.
func NewReadahead(lo, hi int64) *Readahead {
	return &Readahead{min: lo, max: max(lo, hi)}
}

// Observe records a read of [off, off+n) and returns the range to prefetch
// (n == 0: nothing). The kernel issues a buffered stream's readahead as
// several requests at once, which arrive out of order, so once a stream is
// under way a read counts as sequential when it lands near the stream's end
// (within the window, and at least four minimal windows), not only exactly
// at it. A stream starts at offset 0, or with a read that continues the
// last one exactly.
func (r *Readahead) Observe(off, n int64) (pfOff, pfLen int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := off + n
	tolerance := max(r.window, 4*r.min)
	// A stream not yet under way starts only at offset 0 or with a read
	// that continues the last one exactly: near is not enough there, or a
	// random reader (4 jobs of 4 KiB reads over 2 GiB land within 4 MiB of
	// the last read 0.4 % of the time) would start streams that fetch whole
	// needles, a quarter of all it fetched in the bench.
	fresh := r.window == 0 && off != r.next && off != 0
	if !r.started || fresh || off < r.next-tolerance || off > r.next+tolerance {
		// Random, or a new stream. A read from offset 0 starts a stream
		// at once: whole files are read from their start.
		r.started, r.next, r.window, r.until = true, end, 0, 0
		if off != 0 {
			return 0, 0
		}
	}
	r.next = max(r.next, end)
	if r.window == 0 {
		r.window = r.min
	} else {
		r.window = min(2*r.window, r.max)
	}
	// The range starts at the read itself where nothing was asked for
	// yet (a new stream, or after a Rewind): prefetch runs then cover the
	// read's own blocks to its chunk's end, and the read joins them,
	// rather than claiming a run of its own that stops where readahead's
	// begins, in the middle of a needle that both would fetch.
	from := max(r.until, off)
	to := r.next + r.window
	if to <= from {
		return 0, 0
	}
	r.until = to
	return from, to - from
}

// Rewind says that readahead got only as far as off: what lies beyond was
// not fetched (every prefetcher was busy) and is to be asked for again.
func (r *Readahead) Rewind(off int64) {
	r.mu.Lock()
	if off < r.until {
		r.until = off
	}
	r.mu.Unlock()
}

// Access says how a read of [off, …) is to be fetched, by a reader whose
// readahead goes where ahead says: as a stream (Sequential, or Buffered
// for a buffered reader) while a stream is under way, and in a file's
// first startWindow bytes, where the kernel's readahead for a reader
// starting at 0 lands, out of order, before the stream is seen
// (os.ReadFile's first request may arrive at 1 MiB); Random otherwise. A
// random reader lands there rarely, and then fetches one whole needle,
// verified.
func (r *Readahead) Access(off int64, ahead Ahead) Access {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.window > 0 || off < startWindow {
		return ahead.stream()
	}
	return Random
}

// startWindow is the start of a file that is always read as a stream: the
// kernel's first two readahead windows at the mount's read_ahead_kb (4 MiB).
const startWindow = 8 << 20
