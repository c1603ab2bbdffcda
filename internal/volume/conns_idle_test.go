package volume

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/needle/needletest"
)

// TestIdleConnWithStrayBytesIsNotReused: a server (or a proxy before it)
// that sends one answer twice, the copy a moment later, leaves the copy in
// an idle kept-alive connection. Were the connection reused, the next
// request on it, for another needle of the same size (every full chunk of
// a file is), would read the copy as its own answer, and the copy passes
// its own needle's CRC: the first needle's bytes for the second, with no
// error. connPool peeks at an idle connection before it reuses it and
// dials anew when anything arrived, as net/http closes an idle connection
// that receives an unsolicited answer.
func TestIdleConnWithStrayBytesIsNotReused(t *testing.T) {
	const fidA, fidB = "3,01637037d6", "3,02637037d6"
	a := needletest.RandomBytes(t, 4096)
	b := bytes.Repeat([]byte{'B'}, 4096)
	answer := func(data []byte) string {
		sum := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nEtag: \"%08x\"\r\nContent-Length: %d\r\n\r\n%s", sum, len(data), data)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					data := b
					if strings.Contains(req.URL.Path, fidA) {
						data = a
					}
					nc.Write([]byte(answer(data)))
					if n == 0 {
						// The same answer again, a moment later.
						time.Sleep(20 * time.Millisecond)
						nc.Write([]byte(answer(data)))
					}
				}
			}()
		}
	}()

	r := newTestReader(t, newFakeLocator([]string{ln.Addr().String()}), quickOptions)
	got := make([]byte, 4096)
	if _, err := readChunk(r, context.Background(), needle.Chunk{FileID: fidA, Size: 4096}, 0, got); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("needle A: err %v, or bytes differ", err)
	}
	time.Sleep(100 * time.Millisecond) // the copy has arrived
	clear(got)
	_, err = readChunk(r, context.Background(), needle.Chunk{FileID: fidB, Size: 4096}, 0, got)
	switch {
	case err != nil:
		t.Logf("needle B: %v (an error is acceptable)", err)
	case bytes.Equal(got, a):
		t.Errorf("needle B was served needle A's bytes, with no error (one connection: %d accepted)", accepted.Load())
	case !bytes.Equal(got, b):
		t.Errorf("needle B: bytes differ")
	}
}

// quiet tells an idle connection with nothing on it (even one whose last
// read deadline has passed) from one that received bytes or an EOF, and
// leaves the bytes in place.
func TestQuietSeesStrayBytesAndEOF(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pair := func() (client, server net.Conn) {
		t.Helper()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close(); server.Close() })
		return client, server
	}
	// settle gives bytes sent on loopback time to arrive.
	settle := func() { time.Sleep(20 * time.Millisecond) }

	nc, s := pair()
	c := newConn(nc)
	nc.SetReadDeadline(time.Now().Add(-time.Second))
	if !c.quiet() {
		t.Error("an idle connection with nothing on it is not quiet")
	}
	s.Write([]byte("x"))
	settle()
	if c.quiet() {
		t.Error("a connection with a stray byte is quiet")
	}
	b := make([]byte, 2)
	nc.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := nc.Read(b); n != 1 || b[0] != 'x' {
		t.Errorf("after the peek, read %q, %v; want the stray byte", b[:n], err)
	}

	nc, s = pair()
	c = newConn(nc)
	s.Close()
	settle()
	if c.quiet() {
		t.Error("a connection the server closed is quiet")
	}
}

// BenchmarkQuiet: the peek every reuse of a connection pays.
func BenchmarkQuiet(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	c := newConn(nc)
	b.ReportAllocs()
	for b.Loop() {
		if !c.quiet() {
			b.Fatal("not quiet")
		}
	}
}
