package volume

import (
	"context"
	"errors"
	"testing"

	"github.com/weedfuse/weedfuse/internal/needle/needletest"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// A chunk claiming more than a needle can hold is refused before any
// request, whatever the read path, and never lifts the body bound.
func TestHugeChunkIsRefused(t *testing.T) {
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: needletest.RandomBytes(t, 1000)})
	r := newTestReader(t, newFakeLocator([]string{v.addr}), quickOptions)
	ctx := context.Background()
	for _, size := range []int64{1 << 40, needle.MaxChunkSize + 1, -5} {
		c := needle.Chunk{FileID: testFID, Size: size}
		dst := make([]byte, 100)
		if _, err := readChunk(r, ctx, c, 0, dst); !errors.Is(err, needle.ErrChunkTooLarge) {
			t.Errorf("size %d: Fetch = %v, want ErrChunkTooLarge", size, err)
		}
		if _, err := readInto(r, ctx, c, 0, [][]byte{dst}); !errors.Is(err, needle.ErrChunkTooLarge) {
			t.Errorf("size %d: Fetch = %v, want ErrChunkTooLarge", size, err)
		}
		if _, err := readRange(r, ctx, c, 0, [][]byte{dst}); !errors.Is(err, needle.ErrChunkTooLarge) {
			t.Errorf("size %d: range Fetch = %v, want ErrChunkTooLarge", size, err)
		}
	}
	if hits := v.hits.Load(); hits != 0 {
		t.Errorf("%d requests for refused chunks", hits)
	}
}
