package volume

import (
	"hash/crc32"
	"strconv"
	"strings"
)

// castagnoli is the CRC32C table; hash/crc32 uses the CPU's CRC32
// instruction for it where there is one (SSE 4.2, ARMv8).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
	return CRCSumMatches(crc32.Checksum(stored, castagnoli), sum)
}
