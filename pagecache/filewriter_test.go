package pagecache

import (
	"bytes"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// TestFileWriter writes files of awkward sizes in awkward pieces, some
// copied (Write), some kept in place (WriteKept, from the arena's slots,
// as a fetch hands them) and some read into its buffer (Fill), in the second round past the page cache,
// and reads them back.
func TestFileWriter(t *testing.T) {
	testFileWriter(t, t.TempDir())
}

// TestFileWriterDontCacheRefused: where the file system refuses
// RWF_DONTCACHE (tmpfs), the writes go through the page cache instead.
func TestFileWriterDontCacheRefused(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm here")
	}
	defer noDontCache.Store(false)
	dir, err := os.MkdirTemp("/dev/shm", "filewriter")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	testFileWriter(t, dir)
	t.Logf("RWF_DONTCACHE refused on tmpfs: %v", noDontCache.Load())
}

func TestFirstBytes(t *testing.T) {
	b := func(n int) []byte { return make([]byte, n) }
	lens := func(iovs [][]byte) []int {
		var l []int
		for _, v := range iovs {
			l = append(l, len(v))
		}
		return l
	}
	for _, tc := range []struct {
		iovs []int
		n    int
		want []int
	}{
		{[]int{100}, 64, []int{64}},
		{[]int{10, 100, 3}, 64, []int{10, 54}},
		{[]int{10, 54, 3}, 64, []int{10, 54}},
		{[]int{10, 20}, 64, []int{10, 20}},
		{[]int{0, 70}, 64, []int{0, 64}},
	} {
		var iovs [][]byte
		for _, n := range tc.iovs {
			iovs = append(iovs, b(n))
		}
		if got := lens(firstBytes(nil, iovs, tc.n)); !slices.Equal(got, tc.want) {
			t.Errorf("firstBytes(%v, %d) = %v, want %v", tc.iovs, tc.n, got, tc.want)
		}
	}
}

// TestWritevAt writes slices of awkward sizes, empty ones among them,
// across writePiece boundaries, and reads them back.
func TestWritevAt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sizes := range [][]int{
		{},
		{0},
		{0, writePiece + 3, 0, 5, 0},
		{writePiece - 1, 1, writePiece, 2*writePiece + 1},
		{1, 2, 3},
	} {
		var iovs [][]byte
		var want []byte
		for _, n := range sizes {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			iovs = append(iovs, b)
			want = append(want, b...)
		}
		path := tempName(t.TempDir(), "f")
		w, err := createFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.writevAt(iovs, 0); err != nil {
			t.Fatalf("sizes %v: %v", sizes, err)
		}
		w.Close()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("sizes %v: read back %d bytes, not the %d written", sizes, len(got), len(want))
		}
	}
}

func testFileWriter(t *testing.T, dir string) {
	slots, err := newArena(64*(64<<10), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer slots.close()
	sizes := []int{1, 4095, 4096, 4097, writeBufSize - 1, writeBufSize, writeBufSize + 1, 3*writeBufSize + 17}
	for round := range 2 {
		for _, size := range sizes {
			want := make([]byte, size)
			rng := rand.New(rand.NewPCG(uint64(size), uint64(round)))
			for i := range want {
				want[i] = byte(rng.Uint32())
			}
			path := tempName(dir, "f")
			w, err := createFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if round == 1 {
				w.passPageCache(int64(size))
			}
			used := 0
			for p := want; len(p) > 0; {
				mode := rng.IntN(3)
				if mode == 1 { // read into the writer's own buffer
					room, err := w.Fill()
					if err != nil || len(room) == 0 {
						t.Fatalf("size %d: Fill = %d bytes, %v", size, len(room), err)
					}
					k := min(len(p), len(room), 1+rng.IntN(300<<10))
					copy(room, p[:k])
					if err := w.Filled(k); err != nil {
						t.Fatalf("size %d: Filled: %v", size, err)
					}
					p = p[k:]
					continue
				}
				if mode == 0 { // a run of aligned slots, kept
					k := min(len(p), (1+rng.IntN(20))*(64<<10))
					if used+k > len(slots.mem) {
						// Kept bytes stay until written: wait for
						// them before the slots are used again.
						if err := w.submitKept(); err != nil {
							t.Fatal(err)
						}
						if err := w.wait(); err != nil {
							t.Fatal(err)
						}
						used = 0
					}
					slot := slots.mem[used : used+k]
					used += k
					copy(slot, p)
					if err := w.WriteKept(slot); err != nil {
						t.Fatalf("size %d: WriteKept: %v", size, err)
					}
					p = p[k:]
					continue
				}
				k := min(len(p), 1+rng.IntN(300<<10))
				if n, err := w.Write(p[:k]); n != k || err != nil {
					t.Fatalf("size %d: Write = %d, %v", size, n, err)
				}
				p = p[k:]
			}
			if err := w.Flush(); err != nil {
				t.Fatalf("size %d, round %d: Flush: %v", size, round, err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d, round %d: read back %d bytes, not the %d written", size, round, len(got), size)
			}
		}
	}
}
