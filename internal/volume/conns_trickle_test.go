package volume

import (
	"context"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/needle/needletest"
)

// TestTrickledAnswerEndsWithItsContext: a server that sends a byte more
// often than pollInterval (100 ms) never lets a poll of the socket time
// out, and StallTimeout cannot help either: bytes keep coming. connPool
// looks at the request's context before every read of the socket, so the
// Cache's FetchTimeout, a FUSE interrupt and Cache.Close (unmount) still
// end the request, as net/http's path (TLS) does. Were the context looked
// at only when a poll timed out, a 4 KiB range at 50 ms a byte would take
// 3.4 min and a 4 MiB needle 58 h.
func TestTrickledAnswerEndsWithItsContext(t *testing.T) {
	const size = 4096
	c := needle.Chunk{FileID: testFID, Size: size}

	for _, tc := range []struct {
		name  string
		fetch func(r *Reader, ctx context.Context) error
	}{
		{"whole needle", func(r *Reader, ctx context.Context) error {
			_, err := readChunk(r, ctx, c, 0, make([]byte, size))
			return err
		}},
		{"range", func(r *Reader, ctx context.Context) error {
			_, err := readRange(r, ctx, c, 0, [][]byte{make([]byte, size)})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := needletest.NewTrickler(t, size, 50*time.Millisecond)
			r := newTestReader(t, newFakeLocator([]string{s.Addr()}), Options{StallTimeout: time.Second, ReadRetryTime: time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- tc.fetch(r, ctx) }()
			select {
			case err := <-done:
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("returned %v after %v", err, d)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("still reading 5s after a 300ms context expired (a byte every 50ms: the whole answer takes %v)", size*50*time.Millisecond)
				s.Close()
				<-done
			}
		})
	}
}

// TestTrickledAnswerStallsWithoutADeadline: with no deadline on the
// context at all (a FUSE request's has none), a server that sends a byte
// every 50 ms is cut off after StallTimeout, since progress is 64 KiB, not
// a byte; the same bytes at full speed are read.
func TestTrickledAnswerStallsWithoutADeadline(t *testing.T) {
	const size = 4096
	c := needle.Chunk{FileID: testFID, Size: size}
	s := needletest.NewTrickler(t, size, 50*time.Millisecond)
	r := newTestReader(t, newFakeLocator([]string{s.Addr()}), Options{StallTimeout: 300 * time.Millisecond, ReadRetryTime: time.Millisecond})
	start := time.Now()
	_, err := readRange(r, context.Background(), c, 0, [][]byte{make([]byte, size)})
	if d := time.Since(start); err == nil || d > 3*time.Second {
		t.Errorf("returned %v after %v; want a stall error within a few StallTimeouts", err, d)
	}
}
