package pagecache

import (
	"encoding/binary"
	"fmt"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// diskTable is a needle's logical length and the CRC32C of each of its
// blocks. On disk it takes one of two forms (see disk): a .sum file
// (encodeSum), or, for a small needle, its .dat's extended attribute
// (encodeXattr). Both end with the CRC32C of all that comes before, so a
// torn or flipped one parses as nothing.
type diskTable struct {
	length int64
	crcs   []uint32
}

const (
	sumMagic = "WFSUM\x00\x01\x00"
	// xattrTable is the extended attribute that holds a small needle's
	// table; xattrMagic begins its value.
	xattrTable = "user.weedfuse.t"
	xattrMagic = "WFX1"
	// xattrMax bounds an attribute table (88 bytes for 1 MiB of 64 KiB
	// blocks): a longer one (a small BlockSize) goes to a .sum.
	xattrMax = 256
)

// blockOK checks the block of a needle starting at off against its table.
// data is the whole table block (shorter only at the needle's end).
func (t *diskTable) blockOK(off, bs int64, data []byte) bool {
	i := off / bs
	if off%bs != 0 || i >= int64(len(t.crcs)) || int64(len(data)) != min(bs, t.length-off) {
		return false
	}
	return needle.CRC32C(0, data) == t.crcs[i]
}

// encodeSum is a table as its .sum file holds it: magic, the key, length,
// block size, the block count, the checksums, and the seal.
func encodeSum(key string, n, bs int64, crcs []uint32) []byte {
	b := make([]byte, 0, 32+len(key)+4*len(crcs))
	b = append(b, sumMagic...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(key)))
	b = append(b, key...)
	b = binary.LittleEndian.AppendUint64(b, uint64(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(bs))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(crcs)))
	return seal(b, crcs)
}

// parseSum reads a table file written for key with blocks of bs bytes.
func parseSum(b []byte, key string, bs int64) (*diskTable, error) {
	bad := func(what string) (*diskTable, error) {
		return nil, fmt.Errorf("disk cache table: %s", what)
	}
	if len(b) < len(sumMagic)+2+8+4+4+4 || string(b[:len(sumMagic)]) != sumMagic {
		return bad("no magic")
	}
	body, ok := unseal(b)
	if !ok {
		return bad("checksum")
	}
	r := body[len(sumMagic):]
	kl := int(binary.LittleEndian.Uint16(r))
	r = r[2:]
	if len(r) < kl+16 || string(r[:kl]) != key {
		return bad("another key")
	}
	r = r[kl:]
	length := int64(binary.LittleEndian.Uint64(r))
	blockSize := int64(binary.LittleEndian.Uint32(r[8:]))
	n := int64(binary.LittleEndian.Uint32(r[12:]))
	r = r[16:]
	if int64(len(r)) != 4*n {
		return bad("shape")
	}
	return decodeTable(length, blockSize, bs, r, bad)
}

// encodeXattr is a small needle's table as its .dat's attribute holds it:
// magic, the CRC32C of the key, length, block size, the checksums, and the
// seal. It is kept short, 28 bytes for a 128 KiB needle, so that it fits
// in the inode beside the file's other metadata: a longer one takes a
// block of its own, which cost as much as a .sum file.
func encodeXattr(key string, n, bs int64, crcs []uint32) []byte {
	b := make([]byte, 0, xattrSize(len(crcs)))
	b = append(b, xattrMagic...)
	b = binary.LittleEndian.AppendUint32(b, needle.CRC32C(0, []byte(key)))
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, uint32(bs))
	return seal(b, crcs)
}

// xattrSize is the length of an attribute table of n blocks.
func xattrSize(n int) int { return 20 + 4*n }

// parseXattr reads an attribute table written for key with blocks of bs
// bytes.
func parseXattr(b []byte, key string, bs int64) (*diskTable, error) {
	bad := func(what string) (*diskTable, error) {
		return nil, fmt.Errorf("disk cache attribute table: %s", what)
	}
	if len(b) < xattrSize(1) || (len(b)-xattrSize(0))%4 != 0 || string(b[:len(xattrMagic)]) != xattrMagic {
		return bad("no magic")
	}
	body, ok := unseal(b)
	if !ok {
		return bad("checksum")
	}
	r := body[len(xattrMagic):]
	if binary.LittleEndian.Uint32(r) != needle.CRC32C(0, []byte(key)) {
		return bad("another key")
	}
	length := int64(binary.LittleEndian.Uint32(r[4:]))
	blockSize := int64(binary.LittleEndian.Uint32(r[8:]))
	return decodeTable(length, blockSize, bs, r[12:], bad)
}

// seal appends the checksums to a table's header b, and then the CRC32C
// of all of it.
func seal(b []byte, crcs []uint32) []byte {
	for _, c := range crcs {
		b = binary.LittleEndian.AppendUint32(b, c)
	}
	return binary.LittleEndian.AppendUint32(b, needle.CRC32C(0, b))
}

// unseal returns b without its seal, if the seal is right. len(b) >= 4.
func unseal(b []byte) ([]byte, bool) {
	body, tail := b[:len(b)-4], b[len(b)-4:]
	return body, needle.CRC32C(0, body) == binary.LittleEndian.Uint32(tail)
}

// decodeTable makes the table of a needle of length bytes from its
// checksums, raw, written with blocks of blockSize bytes, if that is what
// the cache uses (bs) and the count fits the length.
func decodeTable(length, blockSize, bs int64, raw []byte, bad func(string) (*diskTable, error)) (*diskTable, error) {
	n := int64(len(raw) / 4)
	if blockSize != bs || length <= 0 || n != (length+bs-1)/bs {
		return bad("shape")
	}
	t := &diskTable{length: length, crcs: make([]uint32, n)}
	for i := range t.crcs {
		t.crcs[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	return t, nil
}
