package rdma

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// TestCRC32C: both implementations crc32c may pick compute hash/crc32's
// CRC32C, whole and incrementally, for every length around the 8-byte steps
// and for large buffers.
func TestCRC32C(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20+13)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	impls := map[string]func(uint32, []byte) uint32{"picked": crc32c, "hash/crc32": stdCRC, "slicing-by-8": slicing8CRC}
	for name, f := range impls {
		for n := 0; n < 70; n++ {
			if got, want := f(0, buf[:n]), crc32.Checksum(buf[:n], castagnoli); got != want {
				t.Fatalf("%s: %d bytes: %08x, want %08x", name, n, got, want)
			}
		}
		for _, n := range []int{4095, 4096, 128 << 10, len(buf)} {
			want := crc32.Checksum(buf[:n], castagnoli)
			if got := f(0, buf[:n]); got != want {
				t.Fatalf("%s: %d bytes: %08x, want %08x", name, n, got, want)
			}
			// Piece by piece, as readSlot folds pieces in, at odd boundaries.
			crc := uint32(0)
			for off := 0; off < n; {
				k := min(n-off, 1+rng.IntN(200<<10))
				crc = f(crc, buf[off:off+k])
				off += k
			}
			if crc != want {
				t.Fatalf("%s: %d bytes piecewise: %08x, want %08x", name, n, crc, want)
			}
		}
	}
	if got := crc32c(0, []byte("123456789")); got != 0xe3069283 { // the CRC-32C check value
		t.Fatalf("check value %08x", got)
	}
	t.Logf("crc32c uses %s", crcImpl())
}
