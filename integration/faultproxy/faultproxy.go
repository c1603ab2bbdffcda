// Package faultproxy is an HTTP reverse proxy for tests that stands in front
// of one server (a SeaweedFS volume server) and spoils its answers on
// request: it flips a byte of a body, cuts a body short, stalls in the middle
// of a body, or answers with an error status. Everything else is passed
// through unchanged, headers included, so that a client cannot tell the
// proxy from the server until a fault strikes.
//
// A volume server reached through it is started with -publicUrl=<Addr()>, so
// that the master and filer report the proxy as the server's public URL, and
// the client reads public URLs (weed mount's -volumeServerAccess=publicUrl).
// The proxy listens before it knows its target (SetTarget), since the server
// needs the proxy's address on its command line.
package faultproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what the proxy does to an answer that a rule selects.
type Fault int

const (
	// Pass forwards the answer unchanged.
	Pass Fault = iota
	// Flip forwards the answer with one body byte inverted (XOR 0xFF): the
	// byte in the middle of the body, or the first when the length is not
	// known. Status, headers and length are unchanged.
	Flip
	// Truncate sends the status and headers, with the server's
	// Content-Length, then half of the body, and drops the connection.
	Truncate
	// Stall sends the status, headers and half of the body, then sends
	// nothing more until the client gives up or the proxy closes.
	Stall
	// Unavailable answers 503 without asking the server.
	Unavailable
)

func (f Fault) String() string {
	switch f {
	case Pass:
		return "pass"
	case Flip:
		return "flip"
	case Truncate:
		return "truncate"
	case Stall:
		return "stall"
	case Unavailable:
		return "unavailable"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Match selects the requests a fault applies to.
type Match func(r *http.Request) bool

// AnyGet selects every GET.
func AnyGet(r *http.Request) bool { return r.Method == http.MethodGet }

// RangedGet selects GETs with a Range header: reads of part of a needle.
func RangedGet(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Range") != ""
}

// Stats counts what the proxy saw since Start or the last ResetStats.
type Stats struct {
	// Requests counts every request; Ranged and Whole count the GETs with
	// and without a Range header.
	Requests, Ranged, Whole int64
	// Faulted counts the answers a fault was applied to.
	Faulted int64
}

func (s Stats) String() string {
	return fmt.Sprintf("%d requests (%d ranged, %d whole GETs), %d faulted", s.Requests, s.Ranged, s.Whole, s.Faulted)
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	ln     net.Listener
	srv    *http.Server
	client *http.Client
	target atomic.Pointer[string]
	closed chan struct{}
	once   sync.Once

	mu    sync.Mutex
	fault Fault
	match Match
	left  int // faults left to apply; < 0 for no limit

	requests, ranged, whole, faulted atomic.Int64
}

// Start listens on a free port of 127.0.0.1 and serves. Until SetTarget is
// called every request gets 502.
func Start() (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{
		ln:     ln,
		closed: make(chan struct{}),
		client: &http.Client{
			Transport: &http.Transport{
				Proxy: nil,
				// The client's Accept-Encoding is forwarded as it is; the
				// proxy must not ask for gzip on its own.
				DisableCompression:  true,
				MaxIdleConnsPerHost: 64,
			},
			// Redirects belong to the client.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		left: -1,
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget sets the host:port of the server behind the proxy.
func (p *Proxy) SetTarget(hostPort string) { p.target.Store(&hostPort) }

// SetFault applies f to the answers of the requests that m selects (all, if
// m is nil), to the next n of them, or to all of them if n <= 0. Pass turns
// faults off.
func (p *Proxy) SetFault(f Fault, m Match, n int) {
	if m == nil {
		m = func(*http.Request) bool { return true }
	}
	if n <= 0 {
		n = -1
	}
	p.mu.Lock()
	p.fault, p.match, p.left = f, m, n
	p.mu.Unlock()
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Requests: p.requests.Load(), Ranged: p.ranged.Load(), Whole: p.whole.Load(),
		Faulted: p.faulted.Load(),
	}
}

// ResetStats zeroes the counters.
func (p *Proxy) ResetStats() {
	p.requests.Store(0)
	p.ranged.Store(0)
	p.whole.Store(0)
	p.faulted.Store(0)
}

// Close stops the proxy, releasing any stalled answers. It is idempotent.
func (p *Proxy) Close() error {
	var err error
	p.once.Do(func() {
		close(p.closed)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err = p.srv.Shutdown(ctx); err != nil {
			err = p.srv.Close()
		}
		p.client.CloseIdleConnections()
	})
	return err
}

// pick decides the fault for r and counts it.
func (p *Proxy) pick(r *http.Request) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == Pass || p.left == 0 || !p.match(r) {
		return Pass
	}
	if p.left > 0 {
		p.left--
	}
	return p.fault
}

// hopHeaders are connection-level headers that a proxy must not forward
// (RFC 9110, section 7.6.1).
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if r.Method == http.MethodGet {
		if r.Header.Get("Range") != "" {
			p.ranged.Add(1)
		} else {
			p.whole.Add(1)
		}
	}
	target := p.target.Load()
	if target == nil {
		http.Error(w, "faultproxy: no target yet", http.StatusBadGateway)
		return
	}
	fault := p.pick(r)
	if fault != Pass {
		p.faulted.Add(1)
	}
	if fault == Unavailable {
		http.Error(w, "faultproxy: injected 503", http.StatusServiceUnavailable)
		return
	}

	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+*target+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	out.ContentLength = r.ContentLength
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if r.Header.Get("Accept-Encoding") == "" {
		// Go's transport would otherwise add gzip; DisableCompression
		// already stops that, this keeps the header absent as sent.
		out.Header.Del("Accept-Encoding")
	}
	resp, err := p.client.Do(out)
	if err != nil {
		http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()

	for k, vs := range resp.Header {
		w.Header()[k] = append([]string(nil), vs...)
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	if resp.ContentLength >= 0 {
		w.Header().Set("Content-Length", fmt.Sprint(resp.ContentLength))
	}
	w.WriteHeader(resp.StatusCode)

	hasBody := r.Method != http.MethodHead && resp.StatusCode/100 == 2 && resp.StatusCode != http.StatusNoContent
	if fault == Pass || !hasBody {
		io.Copy(w, resp.Body)
		return
	}
	// Half of the body, where the fault strikes; at least one byte.
	half := int64(0)
	if resp.ContentLength > 0 {
		half = resp.ContentLength / 2
	}
	switch fault {
	case Flip:
		io.Copy(w, &flipReader{r: resp.Body, at: half})
	case Truncate:
		io.CopyN(w, resp.Body, half)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		// Abort the connection: the client sees the body end before its
		// Content-Length.
		panic(http.ErrAbortHandler)
	case Stall:
		io.CopyN(w, resp.Body, half)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-r.Context().Done():
		case <-p.closed:
		}
		panic(http.ErrAbortHandler)
	}
}

// flipReader inverts the byte at offset at of the stream.
type flipReader struct {
	r   io.Reader
	at  int64
	pos int64
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if f.at >= f.pos && f.at < f.pos+int64(n) {
		b[f.at-f.pos] ^= 0xFF
	}
	f.pos += int64(n)
	return n, err
}
