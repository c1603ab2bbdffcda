package rdma

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// serverPeer is one client connection. Its run goroutine reads frames and
// owns the request goroutines (wg); all replies are written under wmu.
type serverPeer struct {
	s      *Server
	raw    net.Conn // the accepted connection; Close closes it to end the peer
	nc     net.Conn // raw, or the TLS connection over it; set by handshake, then owned by run
	src    string   // the source IP, for MaxPeersPerSource
	refuse string   // set at accept: why a peer limit refuses this one ("" = none)
	ep     *endpoint
	wg     sync.WaitGroup // request goroutines

	br *bufio.Reader // owned by run

	wmu          sync.Mutex
	bw           *bufio.Writer // guarded by wmu
	writeDropped atomic.Bool   // a write timed out: the peer is being dropped

	mu       sync.Mutex
	closed   bool              // guarded by mu: no more needles may be pinned for this peer
	inflight map[uint64]*reply // guarded by mu: replies not released; nil value = request in progress
	pinned   int64             // guarded by mu: bytes of the replies in inflight
	replies  int               // guarded by mu: non-nil entries of inflight
	// pending and pendingBytes count replies admitted by the limits but
	// not yet in inflight (guarded by mu).
	pending      int
	pendingBytes int64
	// doomed holds released replies whose window could not be revoked:
	// their needles are unpinned only after the endpoint is closed.
	doomed []*reply // guarded by mu
}

// reply is one answered request whose bytes the peer may read until it
// releases it: the pinned needle and the window over exactly its bytes.
type reply struct {
	n       *slotNeedle
	w       *window
	size    int64
	expires time.Time
}

func (p *serverPeer) run() {
	s := p.s
	ctx, cancel := context.WithCancel(s.ctx)
	defer func() {
		cancel()
		p.nc.Close()
		p.wg.Wait()
		p.mu.Lock()
		p.closed = true
		revoke := append(slices.Collect(maps.Values(p.inflight)), p.doomed...)
		p.inflight, p.doomed = map[uint64]*reply{}, nil
		p.mu.Unlock()
		// The QP goes first, with every window (close deallocates them):
		// then no READ can touch a slot that is about to be unpinned.
		if p.ep != nil {
			p.ep.close()
			s.qps.Add(-1)
		}
		for _, r := range revoke {
			if r != nil {
				s.cache.put(r.n)
			}
		}
	}()
	remote := p.raw.RemoteAddr().String()
	if err := p.handshake(); err != nil {
		s.opts.Logf("weedrdma: peer %s: handshake: %v", remote, err)
		return
	}
	s.opts.Logf("weedrdma: peer %s connected (qpn %d, %s)", remote, p.ep.local().QPN, s.windows)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.watch(ctx)
	}()
	sem := make(chan struct{}, maxPeerRequests)
	err := func() error {
		for {
			if s.opts.IdleTimeout > 0 {
				p.nc.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
			}
			typ, payload, err := readFrame(p.br)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					s.idleDrops.Add(1)
					return fmt.Errorf("idle for %v: %w", s.opts.IdleTimeout, err)
				}
				return err
			}
			switch typ {
			case frameRequest:
				req, err := decodeRequest(payload)
				if err != nil {
					return err
				}
				p.release(req.Releases)
				if !p.reserve(req.ID) {
					s.refuse(statusBadRequest)
					rep := readReply{ID: req.ID, Status: statusBadRequest, Err: "request id already in use"}
					if err := p.write(frameReply, rep.encode()); err != nil {
						return err
					}
					continue
				}
				s.requests.Add(1)
				sem <- struct{}{}
				p.wg.Add(1)
				go func() {
					defer func() { <-sem; p.wg.Done() }()
					p.serve(ctx, req)
				}()
			case frameRelease:
				ids, err := decodeRelease(payload)
				if err != nil {
					return err
				}
				p.release(ids)
			default:
				return fmt.Errorf("%w: unexpected frame type %d", errProtocol, typ)
			}
		}
	}()
	s.opts.Logf("weedrdma: peer %s disconnected: %v", remote, err)
}

// watch revokes replies the peer did not release in time, and drops the
// peer when its QP leaves RTS: a READ outside a window, or through a
// revoked one, is a remote access error that puts the QP in the error
// state, and such a peer gets nothing more.
func (p *serverPeer) watch(ctx context.Context) {
	s := p.s
	period := 250 * time.Millisecond
	if rt := s.opts.ReplyTimeout; rt > 0 {
		period = min(period, max(rt/4, time.Millisecond))
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if bad, err := p.ep.broken(); bad {
			s.qpErrors.Add(1)
			s.opts.Logf("weedrdma: peer %s: QP left RTS (remote access error?)%s: dropping it", p.raw.RemoteAddr(), errSuffix(err))
			p.raw.Close()
			return
		}
		now := time.Now()
		var expired []uint64
		p.mu.Lock()
		for id, r := range p.inflight {
			if r != nil && !r.expires.IsZero() && now.After(r.expires) {
				expired = append(expired, id)
			}
		}
		p.mu.Unlock()
		if len(expired) > 0 {
			s.revoked.Add(uint64(p.release(expired)))
			s.opts.Logf("weedrdma: peer %s: revoked %d replies unreleased after %v", p.raw.RemoteAddr(), len(expired), s.opts.ReplyTimeout)
		}
	}
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// handshake runs TLS if configured, then the authentication exchange
// (auth.go), and only then creates and connects this peer's endpoint and
// answers with its parameters. The QP is RTS before the answer leaves, so
// the client may read at once.
func (p *serverPeer) handshake() error {
	s := p.s
	p.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if s.tls != nil {
		tc := tls.Server(p.nc, s.tls)
		if err := tc.Handshake(); err != nil {
			return err
		}
		p.nc = tc
	}
	p.br, p.bw = bufio.NewReaderSize(p.nc, 64<<10), bufio.NewWriterSize(p.nc, 16<<10)
	typ, payload, err := readFrame(p.br)
	if err != nil {
		return err
	}
	if typ == frameHello { // a client of protocol 2 or older
		h, err := decodeHello(payload)
		if err != nil && len(payload) >= 2 {
			h.Version = uint16(payload[0])<<8 | uint16(payload[1])
		}
		err = fmt.Errorf("protocol version %d, want %d", h.Version, protoVersion)
		ans := hello{Version: protoVersion, Status: statusBadRequest, Err: err.Error()}
		_ = p.write(frameHello, ans.encodeV2())
		return err
	}
	if typ != frameAuth {
		return fmt.Errorf("%w: first frame is type %d, not auth", errProtocol, typ)
	}
	ah, err := decodeAuthHello(payload)
	if err != nil {
		return err
	}
	ch := authChallenge{Version: protoVersion, Status: statusOK}
	refuse := func(status uint16, err error) error {
		ch.Status, ch.Err = status, err.Error()
		_ = p.write(frameAuth, ch.encode())
		return err
	}
	if ah.Version != protoVersion {
		return refuse(statusBadRequest, fmt.Errorf("protocol version %d, want %d", ah.Version, protoVersion))
	}
	if p.refuse != "" {
		s.refusedPeers.Add(1)
		return refuse(statusBusy, errors.New(p.refuse))
	}
	if ch.Nonce, err = newNonce(); err != nil {
		return err
	}
	secret := s.opts.Secret
	if len(secret) > 0 {
		ch.Mode |= authSecret
		ch.Proof = proof(secret, labelServer, ah.Nonce, ch.Nonce, nil)
	}
	if err := p.write(frameAuth, ch.encode()); err != nil {
		return err
	}
	typ, payload, err = readFrame(p.br)
	if err != nil {
		if len(secret) > 0 {
			s.authFailures.Add(1) // a client that cannot answer the challenge hangs up
		}
		return err
	}
	if typ != frameHello {
		return fmt.Errorf("%w: frame type %d, not hello", errProtocol, typ)
	}
	h, err := decodeHello(payload)
	if err != nil {
		return err
	}
	ans := hello{Version: protoVersion}
	refuseHello := func(status uint16, err error) error {
		ans.Status, ans.Err = status, err.Error()
		_ = p.write(frameHello, ans.encode())
		return err
	}
	if len(secret) > 0 && !proofOK(h.Proof, proof(secret, labelClientHello, ah.Nonce, ch.Nonce, qpBytes(h.QP))) {
		s.authFailures.Add(1)
		return refuseHello(statusAuth, fmt.Errorf("%w: the client did not prove the shared secret", errAuth))
	}
	// Authenticated (or no secret required): now the peer may cost a PD, CQ and QP.
	if p.ep, err = s.dev.newEndpoint(s.ar, 4, false, s.windows); err != nil {
		return refuseHello(statusBusy, err)
	}
	s.qps.Add(1)
	if err := p.ep.connect(h.QP); err != nil {
		return refuseHello(statusBadRequest, err)
	}
	ans.Status, ans.QP = statusOK, p.ep.local()
	if len(secret) > 0 {
		ans.Proof = proof(secret, labelServerHello, ah.Nonce, ch.Nonce, qpBytes(ans.QP))
	}
	if err := p.write(frameHello, ans.encode()); err != nil {
		return err
	}
	return p.nc.SetDeadline(time.Time{})
}

func (p *serverPeer) write(typ uint8, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if wt := p.s.opts.WriteTimeout; wt > 0 {
		p.nc.SetWriteDeadline(time.Now().Add(wt))
	}
	err := writeFrame(p.bw, typ, payload)
	if err == nil {
		err = p.bw.Flush()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && p.ep != nil && p.writeDropped.CompareAndSwap(false, true) {
		p.s.writeDrops.Add(1)
		p.s.opts.Logf("weedrdma: peer %s takes no frames for %v: dropping it", p.raw.RemoteAddr(), p.s.opts.WriteTimeout)
		p.raw.Close()
	}
	return err
}

// reserve claims a request id; false if the peer already uses it.
func (p *serverPeer) reserve(id uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.inflight[id]; dup {
		return false
	}
	p.inflight[id] = nil
	return true
}

// release revokes the windows of finished replies and unpins their needles;
// it returns how many it released. Unknown ids and ids whose request is
// still in progress are ignored: a client gets nothing from lying about ids
// but its own slots. A window that cannot be invalidated means a broken
// QP: the peer is dropped (closing the endpoint revokes every window)
// before the needle is unpinned.
func (p *serverPeer) release(ids []uint64) int {
	var rs []*reply
	p.mu.Lock()
	for _, id := range ids {
		if r := p.inflight[id]; r != nil {
			delete(p.inflight, id)
			p.pinned -= r.size
			p.replies--
			rs = append(rs, r)
		}
	}
	p.mu.Unlock()
	for i, r := range rs {
		if err := p.ep.closeWindow(r.w); err != nil {
			p.s.opts.Logf("weedrdma: peer %s: %v: dropping it", p.raw.RemoteAddr(), err)
			p.mu.Lock()
			p.doomed = append(p.doomed, rs[i:]...)
			p.mu.Unlock()
			p.raw.Close()
			return len(rs)
		}
		p.s.cache.put(r.n)
	}
	return len(rs)
}

// refuse counts an error reply, by its status.
func (s *Server) refuse(status uint16) {
	s.errReplies.Add(1)
	s.refusedMu.Lock()
	if s.refused == nil {
		s.refused = map[uint16]uint64{}
	}
	s.refused[status]++
	s.refusedMu.Unlock()
}

// serve answers one request. A pinned needle is recorded before the reply
// is written, because the client may release it as soon as it reads it.
func (p *serverPeer) serve(ctx context.Context, req readRequest) {
	rep, r := p.answer(ctx, req)
	p.mu.Lock()
	switch {
	case r != nil && !p.closed:
		p.inflight[req.ID] = r
		p.pinned += r.size
		p.replies++
		p.s.bytesOffered.Add(uint64(rep.Length))
		r = nil
	default:
		delete(p.inflight, req.ID)
	}
	p.mu.Unlock()
	if r != nil { // the peer went away meanwhile
		p.ep.closeWindow(r.w)
		p.s.cache.put(r.n)
	}
	if rep.Status != statusOK {
		p.s.refuse(rep.Status)
	}
	if err := p.write(frameReply, rep.encode()); err != nil {
		p.raw.Close() // the reader sees it and cleans up
	}
}

// admit checks the per-peer limits for one more reply of size bytes and
// counts it against them; unadmit undoes that.
func (p *serverPeer) admit(size int64) error {
	s := p.s
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := s.opts.MaxReplies; m > 0 && p.replies+p.pending >= m {
		return fmt.Errorf("peer limit: %d unreleased replies (limit %d)", p.replies+p.pending, m)
	}
	if m := s.opts.MaxPinnedBytes; m > 0 && p.pinned+p.pendingBytes+size > m {
		return fmt.Errorf("peer limit: %d bytes pinned by unreleased replies, %d more would pass the limit of %d",
			p.pinned+p.pendingBytes, size, m)
	}
	p.pending++
	p.pendingBytes += size
	return nil
}

func (p *serverPeer) unadmit(size int64) {
	p.mu.Lock()
	p.pending--
	p.pendingBytes -= size
	p.mu.Unlock()
}

// answer fetches (or finds) the whole stored needle and opens a window over
// exactly its bytes. A returned reply is pinned.
func (p *serverPeer) answer(ctx context.Context, req readRequest) (readReply, *reply) {
	s := p.s
	fail := func(status int, err error) (readReply, *reply) {
		return readReply{ID: req.ID, Status: uint16(status), Err: err.Error()}, nil
	}
	if _, _, _, err := needle.ParseFileID(req.FileID); err != nil {
		return fail(statusBadRequest, err)
	}
	n, hit, err := s.cache.get(ctx, s.ctx, req.FileID, req.JWT)
	if err != nil {
		return fail(replyStatus(err), err)
	}
	if hit && n.authed {
		if err := s.vol.authorize(ctx, req.FileID, req.JWT); err != nil {
			s.cache.put(n)
			return fail(replyStatus(err), err)
		}
	}
	// A range: only of a needle stored as is (a gzip-encoded one has no
	// logical ranges here), clipped at its end.
	off, size := 0, n.stored.size
	if req.Length > 0 {
		if n.stored.gzip {
			s.cache.put(n)
			return fail(statusNoRange, errors.New("range of a needle stored gzip-encoded: ask for the whole needle"))
		}
		if req.Offset >= uint64(size) {
			s.cache.put(n)
			return fail(statusBadRequest, fmt.Errorf("range at %d past the needle's %d bytes", req.Offset, size))
		}
		off = int(req.Offset)
		size = min(size-off, int(req.Length))
	}
	if err := p.admit(int64(size)); err != nil {
		s.cache.put(n)
		s.limitReplies.Add(1)
		return fail(statusLimit, err)
	}
	defer p.unadmit(int64(size))
	// A range gets a CRC32C of its own, over the bytes as the verified
	// needle has them (the whole needle was checked against the volume
	// server's checksum when it was fetched); the client checks the
	// transfer against it.
	var rangeCRC uint32
	if req.Length > 0 {
		rangeCRC = needle.CRC32C(0, s.cache.slotMem(n.slot)[off:off+size])
	}
	crc, sum := n.stored.crc, n.stored.sum
	if c, ccrc, csum, ok := s.corrupt(n); ok {
		s.cache.put(n)
		if ccrc != n.stored.crc && req.Length > 0 {
			// Corrupted before its CRC, or forged: the range's CRC is of
			// the flipped bytes too.
			rangeCRC = needle.CRC32C(0, s.cache.slotMem(c.slot)[off:off+size])
		}
		n, crc, sum = c, ccrc, csum
	}
	rep := readReply{ID: req.ID, Status: statusOK, Length: uint32(size), CRC: crc, HasSum: n.stored.hasSum,
		Gzip: n.stored.gzip, NeedleSum: sum}
	if req.Length > 0 {
		rep.Range, rep.CRC = true, rangeCRC
	}
	r := &reply{n: n, size: int64(size)}
	if s.opts.ReplyTimeout > 0 {
		r.expires = time.Now().Add(s.opts.ReplyTimeout)
	}
	if size > 0 {
		var err error
		if r.w, err = p.ep.openWindow(n.slot*s.cache.slotSize+off, size); err != nil {
			s.cache.put(n)
			p.raw.Close() // a bind that fails means a broken QP
			return fail(statusBusy, fmt.Errorf("expose the reply: %w", err))
		}
		rep.Addr, rep.RKey = r.w.addr, r.w.rkey
	}
	return rep, r
}

// corrupt implements the fault injection: when this reply is due, it
// returns a pinned scratch slot holding n's bytes with one byte flipped,
// and the transfer CRC and needle checksum to send with it: n's own
// (CorruptEveryN), which the client's transfer check catches; a transfer
// CRC of the flipped bytes (CorruptStoredEveryN), which only the needle's
// checksum catches; or both of the flipped bytes (ForgeEveryN), which only
// the filer's e_tag catches. The cached needle itself stays intact, so only
// this one reply is bad.
func (s *Server) corrupt(n *slotNeedle) (*slotNeedle, uint32, uint32, bool) {
	after, before, forge := uint64(s.opts.CorruptEveryN), uint64(s.opts.CorruptStoredEveryN), uint64(s.opts.ForgeEveryN)
	if after == 0 && before == 0 && forge == 0 || n.stored.size == 0 {
		return nil, 0, 0, false
	}
	k := s.okReplies.Add(1)
	due := func(every uint64) bool { return every > 0 && k%every == 0 }
	forged, stored := due(forge), due(before)
	if !forged && !stored && !due(after) {
		return nil, 0, 0, false
	}
	c, ok := s.cache.scratch(n)
	if !ok {
		return nil, 0, 0, false
	}
	mem := s.cache.slotMem(c.slot)[:c.stored.size]
	mem[len(mem)/2] ^= 0x5a
	switch {
	case forged:
		s.forged.Add(1)
		crc := needle.CRC32C(0, mem)
		sum := c.stored.sum
		if c.stored.hasSum {
			sum = crc
		}
		return c, crc, sum, true
	case stored:
		s.corruptedStored.Add(1)
		return c, needle.CRC32C(0, mem), c.stored.sum, true
	}
	s.corrupted.Add(1)
	return c, c.stored.crc, c.stored.sum, true
}

// replyStatus maps a fetch error to the status the client sees.
func replyStatus(err error) int {
	var ue *upstreamError
	switch {
	case errors.As(err, &ue):
		return ue.status
	case errors.Is(err, errBusy):
		return statusBusy
	case errors.Is(err, context.DeadlineExceeded):
		return statusTimeout
	}
	var tl *tooLargeError
	if errors.As(err, &tl) {
		return statusTooLarge
	}
	return statusUpstream
}
