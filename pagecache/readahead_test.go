package pagecache

import "testing"

func TestReadahead(t *testing.T) {
	const mb = 1 << 20
	type step struct {
		off, n           int64
		wantOff, wantLen int64
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"sequential grows to max", []step{
			{0, mb, 0, 2 * mb}, // a new stream's range covers its first read
			{mb, mb, 2 * mb, 2 * mb},
			{2 * mb, mb, 4 * mb, 3 * mb},
			{3 * mb, mb, 7 * mb, 1 * mb}, // window 4 MiB capped: until 8 MiB
			{4 * mb, mb, 8 * mb, mb},
		}},
		{"a stream may start anywhere, after one read", []step{
			{50 * mb, mb, 0, 0},
			{51 * mb, mb, 51 * mb, 2 * mb},
		}},
		{"random reads fetch nothing ahead", []step{
			{0, mb, 0, 2 * mb},
			{500 * mb, 4096, 0, 0},
			{70 * mb, 4096, 0, 0},
			{300 * mb, 4096, 0, 0},
		}},
		{"a random read near the last one starts no stream", []step{
			{500 * mb, 4096, 0, 0},
			{501 * mb, 4096, 0, 0},
			{499 * mb, 4096, 0, 0},
			{499*mb + 4096, 4096, 499*mb + 4096, mb + 4096}, // exactly after: a stream
		}},
		{"out-of-order kernel readahead stays sequential", []step{
			{0, mb, 0, 2 * mb},
			{2 * mb, mb, 2 * mb, 3 * mb}, // early: not asked for yet, so included
			{mb, mb, 5 * mb, 2 * mb},     // late, but near the stream's end
			{3 * mb, mb, 7 * mb, mb},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReadahead(mb, 4*mb)
			for i, s := range tc.steps {
				off, n := r.Observe(s.off, s.n)
				if n == 0 {
					off = s.wantOff // nothing to fetch: the offset is moot
				}
				if off != s.wantOff || n != s.wantLen {
					t.Errorf("step %d: Observe(%d, %d) = (%d, %d), want (%d, %d)", i, s.off, s.n, off, n, s.wantOff, s.wantLen)
				}
			}
		})
	}
}

func TestReadaheadRewind(t *testing.T) {
	const mb = 1 << 20
	r := NewReadahead(mb, 8*mb)
	r.Observe(0, mb)  // asks for [0, 2) MiB
	r.Observe(mb, mb) // asks for [2, 4) MiB
	r.Rewind(3 * mb)  // only [2, 3) MiB was fetched
	off, n := r.Observe(2*mb, mb)
	if off != 3*mb || n != 4*mb {
		t.Errorf("after a rewind to 3 MiB: Observe = (%d, %d), want (%d, %d)", off, n, 3*mb, 4*mb)
	}
}

// TestReadaheadAccess: a stream, and a file's first startWindow bytes, are
// fetched as a stream of the reader's kind (Buffered for one whose
// readahead is the kernel's), anything else as Random.
func TestReadaheadAccess(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name   string
		reads  []int64 // 1 MiB reads observed first
		off    int64
		ahead  Ahead
		access Access
	}{
		{"start, buffered", nil, 0, KernelAhead, Buffered},
		{"start, O_DIRECT", nil, 0, MemoryAhead, Sequential},
		{"first window, buffered", nil, startWindow - 1, KernelAhead, Buffered},
		{"past the first window, no stream", nil, startWindow, KernelAhead, Random},
		{"a stream, buffered", []int64{50 * mb, 51 * mb}, 52 * mb, KernelAhead, Buffered},
		{"a stream, O_DIRECT", []int64{50 * mb, 51 * mb}, 52 * mb, MemoryAhead, Sequential},
		{"random reads", []int64{500 * mb, 70 * mb}, 300 * mb, KernelAhead, Random},
	} {
		r := NewReadahead(mb, 4*mb)
		for _, off := range tc.reads {
			r.Observe(off, mb)
		}
		if got := r.Access(tc.off, tc.ahead); got != tc.access {
			t.Errorf("%s: Access(%d, %d) = %d, want %d", tc.name, tc.off, tc.ahead, got, tc.access)
		}
	}
}
