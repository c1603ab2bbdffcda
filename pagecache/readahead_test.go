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
			{0, mb, mb, mb},
			{mb, mb, 2 * mb, 2 * mb},
			{2 * mb, mb, 4 * mb, 3 * mb},
			{3 * mb, mb, 7 * mb, 1 * mb}, // window 4 MiB capped: until 8 MiB
			{4 * mb, mb, 8 * mb, mb},
		}},
		{"random drops the window", []step{
			{0, mb, mb, mb},
			{50 * mb, 4096, 0, 0},
			{7 * mb, 4096, 0, 0},
			{7*mb + 4096, 4096, 7*mb + 8192, mb},
		}},
		{"out-of-order kernel readahead stays sequential", []step{
			{0, mb, mb, mb},
			{2 * mb, mb, 3 * mb, 2 * mb},
			{mb, mb, 5 * mb, 2 * mb}, // late, but inside the window
			{3 * mb, mb, 7 * mb, mb},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReadahead(mb, 4*mb)
			for i, s := range tc.steps {
				off, n := r.Observe(s.off, s.n)
				if off != s.wantOff || n != s.wantLen {
					t.Errorf("step %d: Observe(%d, %d) = (%d, %d), want (%d, %d)", i, s.off, s.n, off, n, s.wantOff, s.wantLen)
				}
			}
		})
	}
}
