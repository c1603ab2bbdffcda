package volume

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
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

// TestSlowHeadThenBodyIsNotAStall: a whole head is progress. A server that
// takes most of StallTimeout to answer (a needle on a remote tier) and then
// most of it again to send 128 KiB is read: the body's StallTimeout starts
// at its head, not at the request.
func TestSlowHeadThenBodyIsNotAStall(t *testing.T) {
	const stall = 600 * time.Millisecond
	body := needletest.RandomBytes(t, 128<<10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		if _, err := http.ReadRequest(bufio.NewReader(nc)); err != nil {
			return
		}
		time.Sleep(stall * 2 / 3)
		fmt.Fprintf(nc, "HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\nContent-Range: bytes 0-%d/%d\r\n\r\n", len(body), len(body)-1, len(body))
		// The first 64 KiB after most of a stall, the rest at once.
		time.Sleep(stall * 2 / 3)
		nc.Write(body)
	}()
	r := newTestReader(t, newFakeLocator([]string{ln.Addr().String()}), Options{StallTimeout: stall, ReadRetryTime: time.Millisecond})
	got := make([]byte, len(body))
	c := needle.Chunk{FileID: testFID, Size: int64(len(body))}
	if _, err := readRange(r, context.Background(), c, 0, [][]byte{got}); err != nil {
		t.Fatalf("a head after 2/3 of StallTimeout and a body 2/3 of it later: %v", err)
	}
	if !bytes.Equal(got, body) {
		t.Error("wrong bytes")
	}
}
