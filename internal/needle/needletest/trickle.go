package needletest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Trickler is a volume server on 127.0.0.1 that answers every GET, one per
// connection, with a correct head for a needle of size bytes (a 206 that
// matches a Range request, a 200 otherwise) and then one body byte per
// interval: never a stall, never done in time. Fetch paths' tests use it
// to show that a deadline, not the server, ends a read. It hangs up when
// the test ends, or at Close.
type Trickler struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn // guarded by mu
}

// NewTrickler starts a Trickler.
func NewTrickler(t testing.TB, size int64, every time.Duration) *Trickler {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Trickler{ln: ln}
	t.Cleanup(s.Close)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, nc)
			s.mu.Unlock()
			go trickle(nc, size, every)
		}
	}()
	return s
}

func trickle(nc net.Conn, size int64, every time.Duration) {
	defer nc.Close()
	req, err := http.ReadRequest(bufio.NewReader(nc))
	if err != nil {
		return
	}
	n := size
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
	if rng := req.Header.Get("Range"); rng != "" {
		var first, last int64
		fmt.Sscanf(rng, "bytes=%d-%d", &first, &last)
		n = last - first + 1
		head = fmt.Sprintf("HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\nContent-Range: bytes %d-%d/%d\r\n\r\n", n, first, last, size)
	}
	if _, err := nc.Write([]byte(head)); err != nil {
		return
	}
	for range n {
		time.Sleep(every)
		if _, err := nc.Write([]byte{'x'}); err != nil {
			return
		}
	}
}

// Addr is the server's host:port.
func (s *Trickler) Addr() string { return s.ln.Addr().String() }

// Close stops the server and hangs up every connection.
func (s *Trickler) Close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}
