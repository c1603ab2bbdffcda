package pagecache

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
)

// TestDirectWriter writes files of awkward sizes in awkward pieces, with
// O_DIRECT and without, some copied (Write) and some kept in place
// (WriteKept, from page-aligned memory as the arena's slots are), and reads
// them back.
func TestDirectWriter(t *testing.T) {
	dir := t.TempDir()
	slots, err := newArena(64*(64<<10), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer slots.close()
	sizes := []int{1, 4095, 4096, 4097, directBufSize - 1, directBufSize, directBufSize + 1, 3*directBufSize + 17}
	// Written with O_DIRECT; through the page cache from the start; and
	// turned to the page cache after the open, as when a file system
	// refuses O_DIRECT at the first write.
	for _, mode := range []string{"direct", "buffered", "fallback"} {
		for _, size := range sizes {
			want := make([]byte, size)
			rng := rand.New(rand.NewPCG(uint64(size), 7))
			for i := range want {
				want[i] = byte(rng.Uint32())
			}
			path := tempName(dir, "f")
			w, err := createDirect(path, mode != "buffered")
			if err != nil {
				t.Fatal(err)
			}
			if mode == "fallback" {
				if err := w.buffered(); err != nil {
					t.Fatal(err)
				}
			}
			used := 0
			for p := want; len(p) > 0; {
				if rng.IntN(2) == 0 { // a run of aligned slots, kept
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
				t.Fatalf("size %d, mode %s: Flush: %v", size, mode, err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d, mode %s: read back %d bytes, not the %d written", size, mode, len(got), size)
			}
		}
	}
}
