package pagecache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// A chunk claiming far more than a needle can hold is refused at once: no
// fetch, no walk over its claimed blocks, an error the mount turns to EIO.
func TestHugeChunkIsRefused(t *testing.T) {
	f, chunks := newFake(1000)
	c := newCache(t, f, Options{Capacity: 8 << 20, BlockSize: 64 << 10})
	cases := []struct {
		name string
		size int64
		ok   bool
	}{
		{"1 TiB", 1 << 40, false},
		{"just past the ceiling", needle.MaxChunkSize + 1, false},
		{"negative", -1, false},
		{"real", 1000, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := chunks[0]
			ch.Size = tc.size
			calls := f.calls.Load()
			start := time.Now()
			dst := make([]byte, 100)
			_, err := c.ReadChunkAt(context.Background(), ch, 1<<30-50, dst, Random)
			if tc.ok {
				if _, err := c.ReadChunkAt(context.Background(), ch, 0, dst, Random); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, needle.ErrChunkTooLarge) {
				t.Fatalf("ReadChunkAt = %v, want ErrChunkTooLarge", err)
			}
			if _, err := c.ReadChunkAt(context.Background(), ch, 0, dst, Sequential); !errors.Is(err, needle.ErrChunkTooLarge) {
				t.Fatalf("sequential ReadChunkAt = %v, want ErrChunkTooLarge", err)
			}
			if got := c.Prefetch(ch, 0, 1<<30, KernelAhead); got != 1<<30 {
				t.Errorf("Prefetch = %d", got)
			}
			c.Forget(ch)
			if got := f.calls.Load(); got != calls {
				t.Errorf("%d fetches for a refused chunk", got-calls)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("refusal took %v", took)
			}
		})
	}
}
