package pagecache

import (
	"context"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/needle/needletest"
	"github.com/weedfuse/weedfuse/internal/volume"
)

type oneLocator struct{ addr string }

func (l oneLocator) Locations(context.Context, uint32) ([]string, error) {
	return []string{l.addr}, nil
}
func (oneLocator) Invalidate(uint32) {}

// TestRandomReadOfTrickledRangeEnds: no reader waits forever on a volume
// server that sends a byte every 200 ms (never a stall of StallTimeout,
// 500 ms, by the byte). A sequential read's fetch is bounded by
// FetchTimeout; a random read of a large plain needle in no tier goes
// through readDirect, under the reader's own context (a FUSE request's: no
// deadline), and is cut off by the volume reader's stall rule, which counts
// 64 KiB as progress, not a byte. (The interval is above connPool's
// pollInterval, 100 ms, on purpose: this is not the context check; see
// internal/volume's TestTrickledAnswerEndsWithItsContext.)
func TestRandomReadOfTrickledRangeEnds(t *testing.T) {
	const size = 4 << 20 // past wholeNeedle: a random miss takes a range
	srv := needletest.NewTrickler(t, size, 200*time.Millisecond)
	r := volume.New(oneLocator{srv.Addr()}, volume.Options{StallTimeout: 500 * time.Millisecond, ReadRetryTime: time.Millisecond})
	defer r.Close()
	c, err := New(r, Options{FetchTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ch := needle.Chunk{FileID: "3,01637037d6", Size: size}

	read := func(access Access) (time.Duration, bool) {
		done := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(done)
			c.ReadChunkAt(context.Background(), ch, 1<<20, make([]byte, 4096), access)
		}()
		select {
		case <-done:
			return time.Since(start), true
		case <-time.After(8 * time.Second):
			srv.Close() // let the reader go before the cache closes
			<-done
			return time.Since(start), false
		}
	}

	// Control: the fetch path honours FetchTimeout.
	if d, ok := read(Sequential); !ok || d > 4*time.Second {
		t.Fatalf("sequential read: returned %v after %v; want an error near FetchTimeout (1s)", ok, d)
	}
	d, ok := read(Random)
	c.Close()
	if !ok || d > 4*time.Second {
		t.Errorf("random read returned %v after %v; want an error within a few StallTimeouts (4 KiB at 5 B/s is 14 min; a 200 answer of 64 MiB, years)", ok, d)
	}
}
