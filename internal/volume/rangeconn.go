package volume

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// rangePool makes ranged GETs over plain HTTP on keep-alive connections of
// its own, without net/http. A random read beyond the caches is one 4 KiB
// ranged GET, and there net/http's request machinery (two goroutines per
// connection that hand each request and response across, a header map,
// a context per request) was half the mount's CPU per read: measured
// against a volume server here, 4 clients at once, net/http spent 87-99 µs
// of CPU per 4 KiB ranged GET and this client 41-48 µs, for 25-40% more
// requests per second on the same 2 cores.
//
// It reads one kind of answer, the one a volume server gives a ranged GET
// of a needle it holds: "206 Partial Content" with a Content-Length and
// a Content-Range. Any other answer (a 404, a 500, a redirect, the whole
// needle, a chunked body) is errUseHTTP: the connection is closed and the
// caller makes the request again through net/http, which handles all of
// them in one place. TLS goes through net/http too.
//
// Deadlines stand in for the context that net/http would watch: a request
// is abandoned when StallTimeout passes without a byte, and the reader's
// context is looked at every pollInterval while it waits, since watching
// a FUSE request's context costs a goroutine per request.
//
// It is safe for concurrent use; a connection is used by one request at a
// time, taken from the pool and put back after a complete answer.
type rangePool struct {
	dialer  net.Dialer
	stall   time.Duration
	maxIdle int

	mu sync.Mutex
	// idle holds each server's idle connections, the most recently used
	// last. Guarded by mu.
	idle map[string][]*rangeConn
}

// rangeConn is one keep-alive connection and its buffers.
type rangeConn struct {
	nc   net.Conn
	pr   pollReader
	br   *bufio.Reader
	req  []byte    // the request being sent
	idle time.Time // when it was put back in the pool
}

const (
	// pollInterval is how often a waiting request looks at its context.
	pollInterval = 100 * time.Millisecond
	// idleTimeout closes a connection idle this long instead of reusing
	// it: the server may have dropped it (Go's http.Server, which weed
	// uses, keeps idle connections for its read timeout at most).
	idleTimeout = 30 * time.Second
	// maxHeaderBytes bounds an answer's status line and headers.
	maxHeaderBytes = 16 << 10
)

// errUseHTTP says an answer is not one rangePool reads: the request is to
// be made through net/http instead.
var errUseHTTP = errors.New("answer left to net/http")

func newRangePool(stall time.Duration, maxIdle int) *rangePool {
	return &rangePool{
		dialer:  net.Dialer{Timeout: stall, KeepAlive: 30 * time.Second},
		stall:   stall,
		maxIdle: maxIdle,
		idle:    map[string][]*rangeConn{},
	}
}

// rangeGet is one ranged GET: the bytes [off, off+want) of the needle at
// path ("/<fid>?…") on addr, into dsts, which hold exactly want bytes. size
// is the chunk's size, which the answer's Content-Range must allow; auth,
// when not empty, is the Authorization header's value.
func (p *rangePool) rangeGet(ctx context.Context, addr, path, auth string, off, want, size int64, dsts [][]byte) error {
	for retried := false; ; retried = true {
		if err := ctx.Err(); err != nil {
			return err
		}
		rc, reused, err := p.take(ctx, addr)
		if err != nil {
			return err
		}
		keep, err := rc.get(ctx, p.stall, addr, path, auth, off, want, size, dsts)
		if err == nil {
			if keep {
				p.put(addr, rc)
			} else {
				rc.nc.Close()
			}
			return nil
		}
		rc.nc.Close()
		// A server may close an idle connection just as it is reused: the
		// request then fails before a byte of the answer. Once, on a new
		// connection, it is tried again, as net/http does.
		if !reused || retried || rc.pr.got > 0 || errors.Is(err, errStalled) || errors.Is(err, errUseHTTP) {
			return err
		}
	}
}

// take returns an idle connection to addr, or a new one.
func (p *rangePool) take(ctx context.Context, addr string) (*rangeConn, bool, error) {
	now := time.Now()
	p.mu.Lock()
	for conns := p.idle[addr]; len(conns) > 0; conns = p.idle[addr] {
		rc := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		p.idle[addr] = conns[:len(conns)-1]
		if now.Sub(rc.idle) < idleTimeout {
			p.mu.Unlock()
			return rc, true, nil
		}
		rc.nc.Close()
	}
	p.mu.Unlock()
	nc, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	rc := &rangeConn{nc: nc}
	rc.pr.nc = nc
	rc.br = bufio.NewReaderSize(&rc.pr, 16<<10)
	return rc, false, nil
}

// put returns a connection that answered in full to the pool.
func (p *rangePool) put(addr string, rc *rangeConn) {
	rc.idle = time.Now()
	rc.pr.ctx = nil // not kept alive by an idle connection
	p.mu.Lock()
	if len(p.idle[addr]) < p.maxIdle {
		p.idle[addr] = append(p.idle[addr], rc)
		rc = nil
	}
	p.mu.Unlock()
	if rc != nil {
		rc.nc.Close()
	}
}

// closeIdle closes every idle connection. Requests after it dial anew.
func (p *rangePool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*rangeConn{}
	p.mu.Unlock()
	for _, conns := range idle {
		for _, rc := range conns {
			rc.nc.Close()
		}
	}
}

// get sends the request and reads its answer into dsts. keep says whether
// the connection may carry another request.
func (rc *rangeConn) get(ctx context.Context, stall time.Duration, addr, path, auth string, off, want, size int64, dsts [][]byte) (keep bool, err error) {
	rc.req = append(rc.req[:0], "GET "...)
	rc.req = append(rc.req, path...)
	rc.req = append(rc.req, " HTTP/1.1\r\nHost: "...)
	rc.req = append(rc.req, addr...)
	rc.req = append(rc.req, "\r\nRange: bytes="...)
	rc.req = strconv.AppendInt(rc.req, off, 10)
	rc.req = append(rc.req, '-')
	rc.req = strconv.AppendInt(rc.req, off+want-1, 10)
	if auth != "" {
		rc.req = append(rc.req, "\r\nAuthorization: "...)
		rc.req = append(rc.req, auth...)
	}
	rc.req = append(rc.req, "\r\n\r\n"...)

	rc.pr.start(ctx, stall)
	if err := rc.nc.SetWriteDeadline(time.Now().Add(stall)); err != nil {
		return false, err
	}
	if _, err := rc.nc.Write(rc.req); err != nil {
		return false, err
	}
	h, err := rc.readHead()
	if err != nil {
		return false, err
	}
	if h.code != 206 || h.chunked || h.length < 0 {
		return false, errUseHTTP
	}
	if len(h.encoding) > 0 && !bytesEqualFold(h.encoding, "identity") {
		return false, fmt.Errorf("ranged answer with Content-Encoding %q: %w", h.encoding, needle.ErrCorrupt)
	}
	if err := checkContentRange(string(h.contentRange), off, want, size); err != nil {
		return false, err
	}
	if h.length != want {
		return false, fmt.Errorf("ranged answer of %d bytes, %d asked for: %w", h.length, want, needle.ErrCorrupt)
	}
	for _, dst := range dsts {
		if got, err := io.ReadFull(rc.br, dst); err != nil {
			return false, fmt.Errorf("ranged body ended %d bytes into a %d-byte piece: %w", got, len(dst), unexpectedEOF(err))
		}
	}
	// Bytes past the body would be read as the next answer's.
	return !h.close && rc.br.Buffered() == 0, nil
}

// head is what rangeConn reads of an answer's status line and headers.
// Its byte slices point into the connection's buffer until the body is read.
type head struct {
	code         int
	length       int64 // Content-Length, or -1
	contentRange []byte
	encoding     []byte
	chunked      bool // a Transfer-Encoding was given
	close        bool // HTTP/1.0, or "Connection: close"
}

// readHead reads an answer's status line and headers.
func (rc *rangeConn) readHead() (head, error) {
	h := head{length: -1}
	line, err := rc.line(0)
	if err != nil {
		return h, err
	}
	read := len(line)
	proto, rest, _ := bytes.Cut(line, []byte(" "))
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.close = true
	default:
		return h, fmt.Errorf("answer with status line %q: %w", truncate(line), needle.ErrCorrupt)
	}
	code, _, _ := bytes.Cut(rest, []byte(" "))
	if len(code) != 3 || code[0] < '1' || code[0] > '9' || !isDigit(code[1]) || !isDigit(code[2]) {
		return h, fmt.Errorf("answer with status line %q: %w", truncate(line), needle.ErrCorrupt)
	}
	h.code = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	// The copies keep the values: the buffer moves on with each line.
	for {
		line, err := rc.line(read)
		if err != nil {
			return h, err
		}
		read += len(line)
		if len(line) == 0 {
			return h, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return h, fmt.Errorf("answer with header line %q: %w", truncate(line), needle.ErrCorrupt)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytesEqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || h.length >= 0 && h.length != n {
				return h, fmt.Errorf("answer with Content-Length %q: %w", truncate(value), needle.ErrCorrupt)
			}
			h.length = n
		case bytesEqualFold(name, "Content-Range"):
			h.contentRange = bytes.Clone(value)
		case bytesEqualFold(name, "Content-Encoding"):
			h.encoding = bytes.Clone(value)
		case bytesEqualFold(name, "Transfer-Encoding"):
			h.chunked = true
		case bytesEqualFold(name, "Connection"):
			h.close = h.close || bytesEqualFold(value, "close")
		}
	}
}

// line reads one header line, without its line end, once read bytes of
// the head have come before it.
func (rc *rangeConn) line(read int) ([]byte, error) {
	line, err := rc.br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull || read+len(line) > maxHeaderBytes:
		return nil, fmt.Errorf("answer's headers longer than %d bytes: %w", maxHeaderBytes, needle.ErrCorrupt)
	case err != nil:
		return nil, unexpectedEOF(err)
	}
	line = line[:len(line)-1]
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// bytesEqualFold compares b with the ASCII string s, ignoring case.
func bytesEqualFold(b []byte, s string) bool {
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

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// truncate keeps an error's quote of an answer short.
func truncate(b []byte) []byte {
	return b[:min(len(b), 80)]
}

// pollReader reads a connection for one request at a time, in waits of at
// most pollInterval: between them it looks at the request's context, and
// it gives up when stall passes without a byte.
type pollReader struct {
	nc    net.Conn
	ctx   context.Context
	stall time.Duration
	last  time.Time // when the request was sent or bytes last came
	got   int64     // bytes received for this request
}

// start arms the reader for a request made under ctx.
func (p *pollReader) start(ctx context.Context, stall time.Duration) {
	p.ctx, p.stall, p.last, p.got = ctx, stall, time.Now(), 0
}

func (p *pollReader) Read(b []byte) (int, error) {
	for {
		wait := min(pollInterval, time.Until(p.last.Add(p.stall)))
		if wait <= 0 {
			return 0, fmt.Errorf("no progress for %v: %w", p.stall, errStalled)
		}
		if err := p.nc.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return 0, err
		}
		n, err := p.nc.Read(b)
		if n > 0 {
			p.got += int64(n)
			p.last = time.Now()
			if isTimeout(err) {
				err = nil
			}
			return n, err
		}
		if !isTimeout(err) {
			return 0, err
		}
		if err := p.ctx.Err(); err != nil {
			return 0, err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}
