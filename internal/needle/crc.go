package needle

import (
	"encoding/binary"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NeedleCRC parses a volume server's ETag header, the checksum of the
// needle's stored bytes: 8 hex digits of a big-endian uint32, quoted
// (weed/storage/needle: Needle.Etag). Anything else, an absent header
// included, is not a checksum this package knows, and ok is false.
func NeedleCRC(header string) (sum uint32, ok bool) {
	hex, found := strings.CutPrefix(header, `"`)
	if !found {
		return 0, false
	}
	hex, found = strings.CutSuffix(hex, `"`)
	if !found || len(hex) != 8 {
		return 0, false
	}
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return 0, false
	}
	return uint32(v), true
}

// CRCMatches reports whether stored has the checksum sum: its raw CRC32C,
// as weed writes it now, or the masked form that old versions stored
// (weed/storage/needle/crc.go: CRC.Value).
func CRCMatches(stored []byte, sum uint32) bool {
	return CRCSumMatches(CRC32C(0, stored), sum)
}

// CRC32C (Castagnoli) covers needles (the volume server's checksum), RDMA
// transfers and the disk tier's blocks, all through CRC32C. hash/crc32
// computes it with the CPU's CRC32 instruction (SSE4.2, ARMv8) wherever the CPU reports one, by
// far the fastest way on real hardware. Under binary translation (qemu TCG,
// as in the integration/rxe VM) that instruction is emulated one bit at a
// time and runs at ~60 MiB/s, several times slower than a plain
// table-driven loop, and becomes most of a read's CPU time. So the first
// use times both on the CPU at hand and keeps the faster one. They compute
// the same function (TestCRC32C); only their speed differs, so the check is
// exactly as strong either way.

var (
	crcOnce sync.Once
	crcFn   func(crc uint32, p []byte) uint32 // set once by pickCRC
	crcName string                            // set once by pickCRC
)

// CRC32C returns crc updated with p, like crc32.Update with the Castagnoli
// table. Safe for concurrent use.
func CRC32C(crc uint32, p []byte) uint32 {
	crcOnce.Do(pickCRC)
	return crcFn(crc, p)
}

// CRC32CImpl names the implementation CRC32C uses: "hash/crc32" or
// "slicing-by-8".
func CRC32CImpl() string {
	crcOnce.Do(pickCRC)
	return crcName
}

// castagnoli is the CRC32C table of hash/crc32.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func stdCRC(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// pickCRC times both implementations over 64 KiB (best of three,
// interleaved so that a burst of load hits both) and keeps the table loop
// only when it is clearly faster: on hardware with the instruction it never
// is, so a noisy measurement cannot pick it there.
func pickCRC() {
	crcFn, crcName = stdCRC, "hash/crc32"
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var best [2]time.Duration
	for r := 0; r < 3; r++ {
		for i, f := range []func(uint32, []byte) uint32{stdCRC, slicing8CRC} {
			start := time.Now()
			f(0, buf)
			if d := time.Since(start); r == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	if 3*best[1] < 2*best[0] {
		crcFn, crcName = slicing8CRC, "slicing-by-8"
	}
}

// slicing8 holds the tables of the slicing-by-8 CRC32C: [0] is the
// byte-at-a-time table, [k] advances a byte through k more zero bytes.
var slicing8 = func() *[8][256]uint32 {
	t := new([8][256]uint32)
	for i := range 256 {
		crc := uint32(i)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ crc32.Castagnoli
			} else {
				crc >>= 1
			}
		}
		t[0][i] = crc
	}
	for i := range 256 {
		crc := t[0][i]
		for k := 1; k < 8; k++ {
			crc = t[0][crc&0xff] ^ crc>>8
			t[k][i] = crc
		}
	}
	return t
}()

// slicing8CRC is CRC32C eight bytes per step with table look-ups only.
func slicing8CRC(crc uint32, p []byte) uint32 {
	t := slicing8
	crc = ^crc
	for len(p) >= 8 {
		crc ^= binary.LittleEndian.Uint32(p)
		crc = t[0][p[7]] ^ t[1][p[6]] ^ t[2][p[5]] ^ t[3][p[4]] ^
			t[4][crc>>24] ^ t[5][crc>>16&0xff] ^ t[6][crc>>8&0xff] ^ t[7][crc&0xff]
		p = p[8:]
	}
	for _, b := range p {
		crc = t[0][byte(crc)^b] ^ crc>>8
	}
	return ^crc
}
