package volume

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// connPool makes GETs over plain HTTP on keep-alive connections of its
// own, without net/http; the Reader sends its GETs over plain HTTP through
// it. A random read beyond the caches is one 4 KiB ranged GET, and there
// net/http's request machinery (two goroutines per connection that hand
// each request and answer across, a header map of every header, a context
// per request) was half the mount's CPU per read: measured against a
// volume server here, 4 clients at once, net/http spent 87-99 µs of CPU
// per 4 KiB ranged GET and this client 41-48 µs, for 25-40% more requests
// per second on the same 2 cores. A shuffled epoch's small file is one
// GET of its whole needle: there, alternated runs over 16,384 files of
// 128 KiB, the mount's CPU fell 8-17 % with those on this client.
//
// It reads the answers a volume server gives a GET of a needle: a status
// line, headers, and a body of Content-Length bytes. Any other answer (a
// redirect, a chunked body, one it cannot parse) is
// errUseHTTP before the caller sees it: the connection is closed and the
// caller makes the request again through net/http, which handles every
// answer. TLS goes through net/http too.
//
// Deadlines stand in for the context that net/http would watch: a request
// is abandoned when its stall time passes without a byte, and its context
// is looked at before each read of the socket and every pollInterval while
// it waits, since watching a FUSE request's context costs a goroutine per
// request.
//
// It is safe for concurrent use; a connection carries one request at a
// time, taken from the pool and put back after an answer read to its end.
type connPool struct {
	dialer  net.Dialer
	stall   time.Duration
	maxIdle int

	mu sync.Mutex
	// idle holds each server's idle connections, the most recently used
	// last. Guarded by mu.
	idle map[string][]*conn
}

// conn is one keep-alive connection and its buffers.
type conn struct {
	nc   net.Conn
	pr   pollReader
	br   *bufio.Reader
	req  []byte    // the request being sent
	idle time.Time // when it was put back in the pool

	// raw is nc's descriptor, for quiet; nil where nc has none. peek is
	// made once per connection, and peeked and peekBuf are its result
	// and buffer, so that quiet allocates nothing.
	raw     syscall.RawConn
	peek    func(fd uintptr)
	peeked  bool
	peekBuf [1]byte
}

// newConn wraps a new connection to a volume server.
func newConn(nc net.Conn) *conn {
	c := &conn{nc: nc}
	c.pr.nc = nc
	c.br = bufio.NewReaderSize(&c.pr, 16<<10)
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.peek = func(fd uintptr) {
		_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		c.peeked = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	}
	return c
}

// quiet reports whether nothing (no byte, no EOF, no error) has arrived
// on the idle connection: one recvfrom with MSG_PEEK|MSG_DONTWAIT, which
// finds an empty socket without waiting and leaves any bytes in place.
// (RawConn.Control, unlike Read, ignores the read deadline the last
// request left behind.)
func (c *conn) quiet() bool {
	if c.raw == nil {
		return false
	}
	c.peeked = false
	return c.raw.Control(c.peek) == nil && c.peeked
}

const (
	// pollInterval is how often a waiting request looks at its context.
	pollInterval = 100 * time.Millisecond
	// idleTimeout closes a connection idle this long instead of reusing
	// it: the server may have dropped it.
	idleTimeout = 30 * time.Second
	// maxHeaderBytes bounds the status line and headers this client
	// reads; a longer head (a needle with large pairs) is net/http's.
	maxHeaderBytes = 64 << 10
)

// errUseHTTP says an answer is not one connPool reads: the request is to
// be made through net/http instead.
var errUseHTTP = errors.New("answer left to net/http")

func newConnPool(stall time.Duration, maxIdle int) *connPool {
	return &connPool{
		dialer:  net.Dialer{Timeout: stall, KeepAlive: 30 * time.Second},
		stall:   stall,
		maxIdle: maxIdle,
		idle:    map[string][]*conn{},
	}
}

// get sends a GET of path ("/<fid>?…") with the headers hdr to addr, and
// passes the answer to handle with a body that ends at Content-Length. The
// answer carries its status, its Content-Length and, of its headers, those
// in keptHeaders.
func (p *connPool) get(ctx context.Context, addr, path string, hdr [][2]string, handle func(*http.Response, io.Reader) error) error {
	// An address from hostile metadata must not add lines to the request;
	// net/http refuses it with its own error.
	if !printable(addr) || !printable(path) {
		return errUseHTTP
	}
	for retried := false; ; retried = true {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, reused, err := p.take(ctx, addr)
		if err != nil {
			return err
		}
		keep, err := c.get(ctx, p.stall, addr, path, hdr, handle)
		if err == nil && keep {
			p.put(addr, c)
		} else {
			c.nc.Close()
		}
		// A server may close an idle connection just as it is reused: the
		// request then fails before a byte of the answer. Once, on a new
		// connection, it is tried again, as net/http does.
		if err == nil || !reused || retried || c.pr.got > 0 || errors.Is(err, errStalled) || errors.Is(err, errUseHTTP) {
			return err
		}
	}
}

// take returns an idle connection to addr on which nothing arrived while
// it was idle, or a new one.
func (p *connPool) take(ctx context.Context, addr string) (*conn, bool, error) {
	for c := p.takeIdle(addr); c != nil; c = p.takeIdle(addr) {
		// A connection that received bytes while idle (an answer sent
		// twice, by a server or a proxy before it) would hand them to
		// the next request as its answer: a copy of another needle of the
		// same size passes its own CRC, so the bytes would be wrong with
		// no error. One that reached EOF was closed by the server. Either
		// is closed rather than reused, as net/http does.
		if c.quiet() {
			return c, true, nil
		}
		c.nc.Close()
	}
	nc, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return newConn(nc), false, nil
}

// takeIdle removes from the pool and returns the most recently used idle
// connection to addr that has not been idle for idleTimeout, or nil. It
// closes the older ones it passes.
func (p *connPool) takeIdle(addr string) *conn {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for conns := p.idle[addr]; len(conns) > 0; conns = p.idle[addr] {
		c := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		p.idle[addr] = conns[:len(conns)-1]
		if now.Sub(c.idle) < idleTimeout {
			return c
		}
		c.nc.Close()
	}
	return nil
}

// put returns a connection whose answer was read to its end to the pool.
func (p *connPool) put(addr string, c *conn) {
	c.idle = time.Now()
	c.pr.ctx = nil // not kept alive by an idle connection
	p.mu.Lock()
	if len(p.idle[addr]) < p.maxIdle {
		p.idle[addr] = append(p.idle[addr], c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// closeIdle closes every idle connection. Requests after it dial anew.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*conn{}
	p.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			c.nc.Close()
		}
	}
}

// get sends the request and hands its answer to handle. keep says whether
// the connection may carry another request.
func (c *conn) get(ctx context.Context, stall time.Duration, addr, path string, hdr [][2]string, handle func(*http.Response, io.Reader) error) (keep bool, err error) {
	c.req = append(c.req[:0], "GET "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, addr...)
	for _, h := range hdr {
		c.req = append(c.req, "\r\n"...)
		c.req = append(c.req, h[0]...)
		c.req = append(c.req, ": "...)
		c.req = append(c.req, h[1]...)
	}
	c.req = append(c.req, "\r\n\r\n"...)

	c.pr.start(ctx, stall)
	if err := c.nc.SetWriteDeadline(time.Now().Add(stall)); err != nil {
		return false, err
	}
	if _, err := c.nc.Write(c.req); err != nil {
		return false, err
	}
	h, err := readHead(c.br)
	if err != nil {
		return false, err
	}
	// A whole head is progress, as it is on net/http's path: a server that
	// took its time to answer (a remote tier) gets StallTimeout anew for
	// its body.
	c.pr.progressed()
	if h.code/100 == 3 || h.code/100 == 1 || h.coded || h.length < 0 {
		return false, errUseHTTP
	}
	resp := &http.Response{
		Status:        h.status,
		StatusCode:    h.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h.header,
		ContentLength: h.length,
	}
	body := &io.LimitedReader{R: c.br, N: h.length}
	resp.Body = io.NopCloser(body)
	if err := handle(resp, body); err != nil {
		return false, err
	}
	// A body not read to its end, or bytes past it, would be read as the
	// next answer's.
	return !h.close && body.N == 0 && c.br.Buffered() == 0, nil
}

// keptHeaders are the headers an answer of connPool carries, the ones
// this package reads.
var keptHeaders = []string{"Content-Encoding", "Content-Range", "Etag"}

// head is an answer's status line and headers, as connPool reads them.
type head struct {
	status string // "206 Partial Content"
	code   int
	length int64 // Content-Length, or -1
	header http.Header
	coded  bool // a Transfer-Encoding was given
	close  bool // HTTP/1.0, or "Connection: close"
}

// readHead reads an answer's status line and headers. What it cannot read
// is errUseHTTP.
func readHead(br *bufio.Reader) (head, error) {
	h := head{length: -1, header: make(http.Header, 2)}
	line, err := headLine(br, 0)
	if err != nil {
		return h, err
	}
	read := len(line)
	proto, status, _ := bytes.Cut(line, []byte(" "))
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.close = true
	default:
		return h, errUseHTTP
	}
	code, _, _ := bytes.Cut(status, []byte(" "))
	if len(code) != 3 || code[0] < '1' || code[0] > '9' || !isDigit(code[1]) || !isDigit(code[2]) {
		return h, errUseHTTP
	}
	h.code = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	h.status = string(status)
	for {
		line, err := headLine(br, read)
		if err != nil {
			return h, err
		}
		read += len(line)
		if len(line) == 0 {
			return h, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return h, errUseHTTP
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || h.length >= 0 && h.length != n {
				return h, errUseHTTP
			}
			h.length = n
		case asciiEqualFold(name, "Transfer-Encoding"):
			h.coded = true
		case asciiEqualFold(name, "Connection"):
			h.close = h.close || asciiEqualFold(value, "close")
		default:
			for _, k := range keptHeaders {
				if asciiEqualFold(name, k) {
					h.header[k] = append(h.header[k], string(value))
				}
			}
		}
	}
}

// headLine reads one line of a head, without its line end, once read bytes
// of the head came before it.
func headLine(br *bufio.Reader, read int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull || read+len(line) > maxHeaderBytes:
		return nil, errUseHTTP
	case err != nil:
		return nil, fmt.Errorf("answer's head: %w", unexpectedEOF(err))
	}
	line = line[:len(line)-1]
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// asciiEqualFold compares b with the ASCII string s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// printable reports whether s holds only visible ASCII, no space or
// control byte.
func printable(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// pollReader reads a connection for one request at a time, in waits of at
// most pollInterval: before each it looks at the request's context, and
// it gives up when its stall time passes without progress (progressBytes
// more).
type pollReader struct {
	nc    net.Conn
	ctx   context.Context
	stall time.Duration
	last  time.Time // when the request was sent or the last progress came
	got   int64     // bytes received for this request
	mark  int64     // got at the last progress
}

// progressBytes is what counts as progress for a stall: not a byte, which
// a server that trickles its answer (a byte every 200 ms) would send for
// ever without a stall, but 64 KiB, or the answer's end. A link slower
// than 64 KiB per StallTimeout (13 KB/s at the default 5 s) is abandoned
// for the next replica, as a stalled one is.
const progressBytes = 64 << 10

// start arms the reader for a request made under ctx.
func (p *pollReader) start(ctx context.Context, stall time.Duration) {
	p.ctx, p.stall, p.last, p.got, p.mark = ctx, stall, time.Now(), 0, 0
}

// progressed counts what was received so far as progress.
func (p *pollReader) progressed() { p.mark, p.last = p.got, time.Now() }

func (p *pollReader) Read(b []byte) (int, error) {
	for {
		// Looked at on every pass, not only when a wait times out: a
		// server that sends a byte more often than pollInterval never
		// lets one time out, and would hold a cancelled request for as
		// long as its body lasts.
		if err := p.ctx.Err(); err != nil {
			return 0, err
		}
		now := time.Now()
		wait := min(pollInterval, p.last.Add(p.stall).Sub(now))
		if wait <= 0 {
			return 0, fmt.Errorf("no progress for %v: %w", p.stall, errStalled)
		}
		if err := p.nc.SetReadDeadline(now.Add(wait)); err != nil {
			return 0, err
		}
		n, err := p.nc.Read(b)
		if n > 0 {
			p.got += int64(n)
			if p.got-p.mark >= progressBytes {
				p.progressed()
			}
			if isTimeout(err) {
				err = nil
			}
			return n, err
		}
		if !isTimeout(err) {
			return 0, err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}
