package needle

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

func TestNeedleCRC(t *testing.T) {
	for _, tt := range []struct {
		header string
		sum    uint32
		ok     bool
	}{
		{`"5dfee6dc"`, 0x5dfee6dc, true},
		{`"0000000a"`, 10, true},
		{`"5DFEE6DC"`, 0x5dfee6dc, true},
		{``, 0, false},
		{`5dfee6dc`, 0, false},     // unquoted
		{`W/"5dfee6dc"`, 0, false}, // weak
		{`"5dfee6d"`, 0, false},
		{`"5dfee6dc0"`, 0, false},
		{`"5dfee6dg"`, 0, false},
		{`"+dfee6dc"`, 0, false},
		{`"d41d8cd98f00b204e9800998ecf8427e"`, 0, false}, // an MD5, as S3 gateways send
	} {
		sum, ok := NeedleCRC(tt.header)
		if sum != tt.sum || ok != tt.ok {
			t.Errorf("NeedleCRC(%s) = %#x, %v; want %#x, %v", tt.header, sum, ok, tt.sum, tt.ok)
		}
	}
}

func TestCRCMatches(t *testing.T) {
	data := []byte("123456789")
	var check uint32 = 0xe3069283 // CRC-32C's check value
	if !CRCMatches(data, check) {
		t.Error("raw CRC32C rejected")
	}
	if !CRCMatches(data, (check>>15|check<<17)+0xa282ead8) {
		t.Error("masked CRC32C rejected")
	}
	if CRCMatches(data, check^1) || CRCMatches([]byte("123456788"), check) {
		t.Error("a wrong CRC matched")
	}
}

// TestCRC32C: both implementations CRC32C may pick compute hash/crc32's
// CRC32C, whole and incrementally, for every length around the 8-byte steps
// and for large buffers.
func TestCRC32C(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20+13)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	impls := map[string]func(uint32, []byte) uint32{"picked": CRC32C, "hash/crc32": stdCRC, "slicing-by-8": slicing8CRC}
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
			// Piece by piece, as a stream or an RDMA transfer folds them in, at
			// odd boundaries.
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
	if got := CRC32C(0, []byte("123456789")); got != 0xe3069283 { // the CRC-32C check value
		t.Fatalf("check value %08x", got)
	}
	t.Logf("CRC32C uses %s", CRC32CImpl())
}
