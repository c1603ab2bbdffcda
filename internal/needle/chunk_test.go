package needle

import (
	"errors"
	"testing"
)

// A chunk claiming more than a needle can hold is refused, and never lifts
// the bound on a needle's stored bytes.
func TestHugeChunkLimits(t *testing.T) {
	for _, size := range []int64{1 << 40, MaxChunkSize + 1, -5} {
		c := Chunk{FileID: "3,01637037d6", Size: size}
		if err := c.CheckSize(); !errors.Is(err, ErrChunkTooLarge) {
			t.Errorf("size %d: CheckSize = %v, want ErrChunkTooLarge", size, err)
		}
	}
	if got := StoredLimit(Chunk{Size: 1 << 40}); got > MaxChunkSize+MaxChunkSize/8+64<<10 {
		t.Errorf("StoredLimit of a 1 TiB claim = %d", got)
	}
	c := Chunk{FileID: "3,01637037d6", Size: MaxChunkSize}
	if err := c.CheckSize(); err != nil {
		t.Errorf("CheckSize at the ceiling: %v", err)
	}
}

// Only the key lengths AES takes pass, and no key at all.
func TestCheckCipherKeyLengths(t *testing.T) {
	for n := range 40 {
		c := Chunk{FileID: "3,01637037d6", CipherKey: make([]byte, n)}
		err := c.CheckCipherKey()
		switch n {
		case 0, 16, 24, 32:
			if err != nil {
				t.Errorf("%d-byte key: %v", n, err)
			}
		default:
			if !errors.Is(err, ErrBadCipherKey) || errors.Is(err, ErrCorrupt) {
				t.Errorf("%d-byte key: err = %v, want ErrBadCipherKey and not ErrCorrupt", n, err)
			}
		}
	}
}
