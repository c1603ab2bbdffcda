package volume

import (
	"context"
	"errors"
	"testing"
)

// A chunk claiming more than a needle can hold is refused before any
// request, whatever the read path, and never lifts the body bound.
func TestHugeChunkIsRefused(t *testing.T) {
	v := newFakeVolume(t)
	v.put(testFID, needle{data: randomBytes(t, 1000)})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	ctx := context.Background()
	for _, size := range []int64{1 << 40, MaxChunkSize + 1, -5} {
		c := Chunk{FileID: testFID, Size: size}
		dst := make([]byte, 100)
		if _, err := readChunk(r, ctx, c, 0, dst); !errors.Is(err, ErrChunkTooLarge) {
			t.Errorf("size %d: Fetch = %v, want ErrChunkTooLarge", size, err)
		}
		if _, err := readInto(r, ctx, c, 0, [][]byte{dst}); !errors.Is(err, ErrChunkTooLarge) {
			t.Errorf("size %d: Fetch = %v, want ErrChunkTooLarge", size, err)
		}
		if _, err := readRange(r, ctx, c, 0, [][]byte{dst}); !errors.Is(err, ErrChunkTooLarge) {
			t.Errorf("size %d: range Fetch = %v, want ErrChunkTooLarge", size, err)
		}
	}
	if hits := v.hits.Load(); hits != 0 {
		t.Errorf("%d requests for refused chunks", hits)
	}
	if got := storedLimit(Chunk{Size: 1 << 40}); got > MaxChunkSize+MaxChunkSize/8+64<<10 {
		t.Errorf("storedLimit of a 1 TiB claim = %d", got)
	}
	c := Chunk{FileID: testFID, Size: MaxChunkSize}
	if err := c.CheckSize(); err != nil {
		t.Errorf("CheckSize at the ceiling: %v", err)
	}
}
