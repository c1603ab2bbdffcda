package rdma

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// clientPeer is one weedrdma server. Its run goroutine owns the connection.
type clientPeer struct {
	c         *Client
	addr      string
	br        *breaker
	firstDone chan struct{} // closed when the first connection attempt ended

	mu   sync.Mutex
	conn *clientConn // guarded by mu; nil while not connected
}

func (p *clientPeer) current() *clientConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn
}

func (p *clientPeer) setConn(cn *clientConn) {
	p.mu.Lock()
	p.conn = cn
	p.mu.Unlock()
}

// run keeps one connection up until the Client closes: dial, serve until
// the connection dies, tear it down, wait out a backoff, dial again.
func (p *clientPeer) run() {
	c := p.c
	bo := backoff{min: 100 * time.Millisecond, max: 30 * time.Second}
	first, everUp := true, false
	for {
		cn, err := p.dial()
		if err == nil {
			if everUp {
				c.reconnects.Add(1)
			}
			everUp = true
			p.setConn(cn)
			// A new connection is news about the path: let the next read
			// probe it now rather than after a cooldown that grew while
			// the server was down.
			p.br.halfOpen()
			c.opts.Logf("rdma: connected to %s (local %s, qpn %d)", p.addr, c.dev.info.Name, cn.ep.local().QPN)
		} else if c.ctx.Err() == nil {
			c.opts.Logf("rdma: connect %s: %v", p.addr, err)
		}
		if first {
			close(p.firstDone)
			first = false
		}
		if cn != nil {
			up := time.Now()
			select {
			case <-cn.dead:
			case <-c.ctx.Done():
				cn.fail(errors.New("client closed"))
			}
			p.setConn(nil)
			cn.teardown()
			if c.ctx.Err() == nil {
				c.opts.Logf("rdma: connection to %s lost: %v", p.addr, cn.err())
			}
			if time.Since(up) > 10*time.Second {
				bo.reset()
			}
		}
		select {
		case <-time.After(bo.delay()):
		case <-c.ctx.Done():
			return
		}
	}
}

// dial opens the control connection, exchanges hellos and connects a new
// endpoint's QP.
func (p *clientPeer) dial() (_ *clientConn, err error) {
	c := p.c
	ctx, cancel := context.WithTimeout(c.ctx, handshakeTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	var ep *endpoint
	defer func() {
		if err != nil {
			nc.Close()
			if ep != nil {
				ep.close()
			}
		}
	}()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	if c.tls != nil {
		cfg := c.tls.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(p.addr)
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		nc = tc
	}
	br, bw := bufio.NewReaderSize(nc, 64<<10), bufio.NewWriterSize(nc, 16<<10)
	// Authentication first (auth.go): the server proves the shared secret
	// before this side spends an endpoint or believes any QP parameters.
	cnonce, err := newNonce()
	if err != nil {
		return nil, err
	}
	if err := writeFrame(bw, frameAuth, (&authHello{Version: protoVersion, Nonce: cnonce}).encode()); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	typ, payload, err := readFrame(br)
	if err != nil {
		return nil, err
	}
	if typ != frameAuth {
		return nil, fmt.Errorf("%w: answer is frame type %d, not auth (a weedrdma of another protocol version?)", errProtocol, typ)
	}
	ch, err := decodeAuthChallenge(payload)
	if err != nil {
		return nil, err
	}
	if ch.Status != statusOK {
		return nil, fmt.Errorf("server refused: %d %s", ch.Status, ch.Err)
	}
	secret := c.opts.Secret
	switch {
	case len(secret) == 0 && ch.Mode&authSecret != 0:
		return nil, fmt.Errorf("%w: the server requires the shared secret ([rdma] key in security.toml)", errAuth)
	case len(secret) > 0 && ch.Mode&authSecret == 0:
		return nil, fmt.Errorf("%w: the server does not prove the shared secret (not the weedrdma it should be, or one run without it)", errAuth)
	case len(secret) > 0 && !proofOK(ch.Proof, proof(secret, labelServer, cnonce, ch.Nonce, nil)):
		return nil, fmt.Errorf("%w: the server's proof of the shared secret is wrong", errAuth)
	}
	// Each read in flight posts up to crcPieces work requests.
	if ep, err = c.dev.newEndpoint(c.ar, c.opts.MaxConcurrent*c.opts.crcPieces+4, true, ""); err != nil {
		return nil, err
	}
	h := hello{Version: protoVersion, QP: ep.local()}
	if len(secret) > 0 {
		h.Proof = proof(secret, labelClientHello, cnonce, ch.Nonce, qpBytes(h.QP))
	}
	if err := writeFrame(bw, frameHello, h.encode()); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	typ, payload, err = readFrame(br)
	if err != nil {
		return nil, err
	}
	if typ != frameHello {
		return nil, fmt.Errorf("%w: answer is frame type %d, not hello", errProtocol, typ)
	}
	ans, err := decodeHello(payload)
	if err != nil {
		return nil, err
	}
	if ans.Status != statusOK {
		return nil, fmt.Errorf("server refused: %d %s", ans.Status, ans.Err)
	}
	if len(secret) > 0 && !proofOK(ans.Proof, proof(secret, labelServerHello, cnonce, ch.Nonce, qpBytes(ans.QP))) {
		return nil, fmt.Errorf("%w: the server's hello is not signed with the shared secret", errAuth)
	}
	if err := ep.connect(ans.QP); err != nil {
		return nil, err
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	cn := &clientConn{c: c, nc: nc, br: br, bw: bw, ep: ep, stop: make(chan struct{}), dead: make(chan struct{}),
		gone: make(chan struct{}), relKick: make(chan struct{}, 1),
		replies: map[uint64]chan readReply{}, wcs: map[uint64]chan error{}}
	cn.wg.Add(3)
	go func() { defer cn.wg.Done(); cn.readLoop() }()
	go func() { defer cn.wg.Done(); cn.pollLoop() }()
	go func() { defer cn.wg.Done(); cn.releaseLoop() }()
	return cn, nil
}

// withConn runs f with this peer's current connection and an arena slot.
func (p *clientPeer) withConn(ctx context.Context, f func(cn *clientConn, slot int) error) error {
	select {
	case <-p.firstDone:
	case <-ctx.Done():
		return fallbackf(reasonTimeout, true, "waiting for the first connection to %s", p.addr)
	}
	cn := p.current()
	if cn == nil {
		return fallbackf(reasonNotConnected, true, "not connected to %s", p.addr)
	}
	slot, err := p.c.slots.acquire(ctx)
	if err != nil {
		return &fallback{reason: reasonTimeout, err: err}
	}
	defer p.c.slots.release(slot)
	return f(cn, slot)
}
