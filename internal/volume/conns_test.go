package volume

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/needle/needletest"
)

// TestRangeGetsMatchData: random ranges of a needle, some split across
// several buffers, come back as the needle's bytes, over reused
// connections.
func TestRangeGetsMatchData(t *testing.T) {
	data := needletest.RandomBytes(t, 1<<20)
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: data})
	s := newScripted(t, 0, func(req *http.Request) string { return partial(req, data, "") })
	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{})
	rs := newTestReader(t, newFakeLocator([]string{s.addr}), Options{})
	c := needle.Chunk{FileID: testFID, Size: int64(len(data))}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		off := rng.Int64N(int64(len(data)))
		n := min(1+rng.Int64N(64<<10), int64(len(data))-off)
		dst := make([]byte, n)
		cut := rng.Int64N(n + 1)
		got, err := readRange(r, context.Background(), c, off, [][]byte{dst[:cut], dst[cut:]})
		if err != nil || int64(got) != n || !bytes.Equal(dst, data[off:off+n]) {
			t.Fatalf("range %d [%d,+%d): got %d, err %v, or bytes differ", i, off, n, got, err)
		}
		clear(dst)
		if _, err := readRange(rs, context.Background(), c, off, [][]byte{dst}); err != nil || !bytes.Equal(dst, data[off:off+n]) {
			t.Fatalf("scripted range %d [%d,+%d): err %v, or bytes differ", i, off, n, err)
		}
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("%d connections for 200 ranges one after another; want 1", n)
	}
	if s := r.Stats(); s.RangeFetches != 200 {
		t.Errorf("stats %+v", s)
	}
}

// TestRangeGetAnswersLeftToHTTP: answers other than a plain 206 go through
// net/http, with its meanings: a 404 everywhere is fs.ErrNotExist, a JWT
// is sent either way.
func TestRangeGetAnswersLeftToHTTP(t *testing.T) {
	data := needletest.RandomBytes(t, 1000)
	v := newFakeVolume(t)
	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{})
	c := needle.Chunk{FileID: testFID, Size: 1000}
	if _, err := readRange(r, context.Background(), c, 10, [][]byte{make([]byte, 10)}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing needle: err = %v, want fs.ErrNotExist", err)
	}

	key := []byte("readsecret123")
	v.put(testFID, fakeNeedle{data: data})
	v.requireJWT(key)
	r = newTestReader(t, newFakeLocator([]string{v.addr}), Options{ReadSigningKey: key})
	dst := make([]byte, 100)
	if _, err := readRange(r, context.Background(), c, 500, [][]byte{dst}); err != nil || !bytes.Equal(dst, data[500:600]) {
		t.Errorf("with a JWT: err = %v, or bytes differ", err)
	}
}

// scripted is a volume server that answers each request with what answer
// returns for it, a raw HTTP answer, on connections it closes after
// closeAfter answers (0: never).
type scripted struct {
	addr     string
	accepted atomic.Int64
	requests atomic.Int64
}

func newScripted(t *testing.T, closeAfter int, answer func(req *http.Request) string) *scripted {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					s.requests.Add(1)
					if _, err := io.WriteString(nc, answer(req)); err != nil || n == closeAfter {
						return
					}
				}
			}()
		}
	}()
	return s
}

// partial is a 206 answer to req, of data's bytes, with extra header lines.
func partial(req *http.Request, data []byte, extra string) string {
	var first, last int
	fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-%d", &first, &last)
	body := data[first : last+1]
	return fmt.Sprintf("HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\nContent-Range: bytes %d-%d/%d\r\n%s\r\n%s",
		len(body), first, last, len(data), extra, body)
}

// TestRangeGetServerClosedIdleConnection: a server that hangs up after
// each answer, without saying so, costs a retry on a new connection, not
// an error or a penalty.
func TestRangeGetServerClosedIdleConnection(t *testing.T) {
	data := needletest.RandomBytes(t, 4096)
	s := newScripted(t, 1, func(req *http.Request) string { return partial(req, data, "") })
	r := newTestReader(t, newFakeLocator([]string{s.addr}), Options{})
	c := needle.Chunk{FileID: testFID, Size: int64(len(data))}
	for i := range 5 {
		dst := make([]byte, 100)
		time.Sleep(10 * time.Millisecond) // the hang-up arrives first
		if _, err := readRange(r, context.Background(), c, int64(i*100), [][]byte{dst}); err != nil || !bytes.Equal(dst, data[i*100:i*100+100]) {
			t.Fatalf("range %d: err = %v, or bytes differ", i, err)
		}
	}
	if st := r.Stats(); st.ReplicaFailures != 0 || st.Retries != 0 {
		t.Errorf("stats %+v: a closed idle connection was blamed on the server", st)
	}
	if n := s.accepted.Load(); n != 5 {
		t.Errorf("%d connections; want 5, one per answer", n)
	}
}

// TestRangeGetHostileAnswers: answers that do not hold exactly the bytes
// asked for are errors wrapping needle.ErrCorrupt; answers connPool does
// not read (chunked, a head too long for it, not HTTP) are read by
// net/http, with its meanings.
func TestRangeGetHostileAnswers(t *testing.T) {
	data := needletest.RandomBytes(t, 4096)
	const (
		ok = iota
		corrupt
		failed
	)
	cases := []struct {
		name   string
		answer func(req *http.Request) string
		want   int
	}{
		{"wrong content-range", func(req *http.Request) string {
			return "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nContent-Range: bytes 0-9/4096\r\n\r\n" + string(data[:10])
		}, corrupt},
		{"long body", func(req *http.Request) string {
			return "HTTP/1.1 206 Partial Content\r\nContent-Length: 11\r\nContent-Range: bytes 100-109/4096\r\n\r\n" + string(data[100:111])
		}, corrupt},
		{"gzip", func(req *http.Request) string { return partial(req, data, "Content-Encoding: gzip\r\n") }, corrupt},
		{"two lengths", func(req *http.Request) string {
			return "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nContent-Length: 11\r\nContent-Range: bytes 100-109/4096\r\n\r\n" + string(data[100:110])
		}, failed},
		{"not http", func(req *http.Request) string { return "SSH-2.0-OpenSSH\r\n\r\n" }, failed},
		{"large head", func(req *http.Request) string {
			return partial(req, data, strings.Repeat("X-Pad: "+strings.Repeat("a", 1000)+"\r\n", 20))
		}, ok},
		{"head too long for connPool", func(req *http.Request) string {
			return partial(req, data, strings.Repeat("X-Pad: "+strings.Repeat("a", 1000)+"\r\n", 100))
		}, ok},
		{"line too long for connPool", func(req *http.Request) string {
			return partial(req, data, "X-Pad: "+strings.Repeat("a", 20000)+"\r\n")
		}, ok},
		{"chunked", func(req *http.Request) string {
			return "HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\nContent-Range: bytes 100-109/4096\r\n\r\na\r\n" + string(data[100:110]) + "\r\n0\r\n\r\n"
		}, ok},
		{"http/1.0", func(req *http.Request) string {
			return strings.Replace(partial(req, data, ""), "HTTP/1.1", "HTTP/1.0", 1)
		}, ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newScripted(t, 0, tc.answer)
			r := newTestReader(t, newFakeLocator([]string{s.addr}), Options{ReadRetryTime: time.Millisecond})
			dst := make([]byte, 10)
			_, err := readRange(r, context.Background(), needle.Chunk{FileID: testFID, Size: 4096}, 100, [][]byte{dst})
			switch {
			case tc.want == corrupt && !errors.Is(err, needle.ErrCorrupt):
				t.Errorf("err = %v, want needle.ErrCorrupt", err)
			case tc.want == failed && err == nil:
				t.Error("no error")
			case tc.want == ok && (err != nil || !bytes.Equal(dst, data[100:110])):
				t.Errorf("err = %v, or bytes differ", err)
			}
		})
	}
}

// TestRangeGetStallAndCancel: a server that sends nothing is left after
// StallTimeout, and a cancelled read returns within about pollInterval.
func TestRangeGetStallAndCancel(t *testing.T) {
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: make([]byte, 1000)})
	v.setFault(stall)
	c := needle.Chunk{FileID: testFID, Size: 1000}

	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{StallTimeout: 200 * time.Millisecond, ReadRetryTime: time.Millisecond})
	start := time.Now()
	if _, err := readRange(r, context.Background(), c, 0, [][]byte{make([]byte, 10)}); !errors.Is(err, errStalled) {
		t.Errorf("err = %v, want errStalled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a stalled server held the read %v", d)
	}

	r = newTestReader(t, newFakeLocator([]string{v.addr}), Options{StallTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if _, err := readRange(r, ctx, c, 0, [][]byte{make([]byte, 10)}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancellation took %v", d)
	}
	if r.Stats().ReplicaFailures != 0 {
		t.Error("our own cancellation was blamed on the replica")
	}
}

// FuzzReadHead: no answer's head panics the parser, and one it accepts has
// a three-digit status and a length of -1 or more.
func FuzzReadHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nContent-Range: bytes 0-9/100\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nEtag: \"1234abcd\"\r\nContent-Length: -1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readHead(bufio.NewReaderSize(bytes.NewReader(b), 16<<10))
		if err == nil && (h.code < 100 || h.code > 999 || h.length < -1) {
			t.Errorf("accepted head %+v", h)
		}
	})
}

// TestHostileAddress: a volume server address that would add lines to the
// request is refused, not sent.
func TestHostileAddress(t *testing.T) {
	v := newFakeVolume(t)
	v.put(testFID, fakeNeedle{data: make([]byte, 100)})
	r := newTestReader(t, newFakeLocator([]string{v.addr + "\r\nX-Evil: 1"}), Options{ReadRetryTime: time.Millisecond})
	if _, err := readRange(r, context.Background(), needle.Chunk{FileID: testFID, Size: 100}, 0, [][]byte{make([]byte, 10)}); err == nil {
		t.Error("read through a hostile address")
	}
	if v.hits.Load() != 0 {
		t.Error("a request went out to a hostile address")
	}
}
