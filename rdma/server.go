package rdma

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// ServerOptions configure a Server (cmd/weedrdma's flags).
type ServerOptions struct {
	// VolumeServer is the HTTP address ("127.0.0.1:8080") of the volume
	// server whose needles this server serves.
	VolumeServer string
	// VolumeTLS, when set, reads the volume server over https with it
	// (security.toml's [https.client]).
	VolumeTLS *tls.Config
	// Device selects the verbs device ("" = first active port, "mlx5_0",
	// "mlx5_0:2"); GIDIndex < 0 picks one (IPv4-mapped RoCE v2 first).
	Device   string
	GIDIndex int
	TLS      TLSFiles
	// CacheBytes is the registered arena: hot needles stay in it (LRU).
	// Default 256 MiB.
	CacheBytes int64
	// SlotBytes is one arena slot, the largest needle served: a read is
	// always of a whole needle, the unit that its checksum covers, and a
	// larger one is refused (413) and read over HTTP. Default 8 MiB: a
	// 4 MiB chunk (weed's default -maxMB) with room for gzip and sealing.
	SlotBytes int
	// FetchTimeout bounds one fetch from the volume server. Default 30 s.
	FetchTimeout time.Duration
	// Logf logs peer events; default log.Printf.
	Logf func(format string, args ...any)

	// Secret is the shared secret (security.toml's [rdma] key) every peer
	// must prove before it gets a QP; the server proves it too. Nil: no
	// shared secret (mutual TLS, or an insecure server on loopback).
	Secret []byte
	// Windows picks how replies are exposed: "" or "auto" (type 2 memory
	// windows when the device has them and enforces their bounds, which a
	// probe at start checks, else per-reply MRs), "mw" (memory windows
	// even if unbounded; fail without them) or "mr" (per-reply MRs; tests
	// force the fallback with it).
	Windows string

	// Limits; zero picks the default, negative turns a limit off.
	MaxPeers          int           // control connections overall (default 1024)
	MaxPeersPerSource int           // control connections per source IP (default 128)
	MaxPinnedBytes    int64         // bytes one peer's unreleased replies pin (default CacheBytes/2)
	MaxReplies        int           // one peer's unreleased replies (default 256)
	ReplyTimeout      time.Duration // an unreleased reply is revoked after it (default 60 s)
	IdleTimeout       time.Duration // a peer that sends no frame for this long is dropped (default 5 min)
	WriteTimeout      time.Duration // bounds writing one frame to a peer (default 10 s)

	// CorruptEveryN and CorruptStoredEveryN are fault injection, for tests
	// only: when > 0, every Nth successful reply points at a private copy
	// of the needle with one byte flipped. CorruptEveryN flips it after
	// the transfer CRC32C was computed, as if the wire or the client's
	// memory had corrupted it; CorruptStoredEveryN before, as if this
	// server's own memory had, so that only the needle's checksum from
	// the volume server can tell. Clients must detect both and fall back.
	CorruptEveryN       int
	CorruptStoredEveryN int
	// ForgeEveryN is fault injection too: every Nth reply points at a
	// copy with one byte flipped and carries the transfer CRC32C and the
	// needle checksum of the flipped bytes, as a forging server would.
	// Only the filer's e_tag MD5 can tell; clients must check it.
	ForgeEveryN int
}

// Window modes (ServerStats.WindowMode).
const (
	windowsMW = "memory-window" // a type 2 MW per reply, bound to the peer's QP
	windowsMR = "per-reply-mr"  // an MR per reply, over exactly its bytes
)

// maxPeerRequests bounds one peer's requests in progress; the peer's reader
// stops reading frames beyond it (back-pressure through TCP).
const maxPeerRequests = 64

// Server serves needles of one volume server to rdma Clients. Each
// authenticated control connection gets its own PD, CQ and QP and its own
// registration of the arena (without remote access: each reply gets a
// window of its own), within the limits of ServerOptions; a peer that goes
// away (EOF, protocol error, TLS failure, a QP that left RTS) has its QP
// destroyed, its windows revoked and its slots unpinned.
// Serve and Close are safe for concurrent use.
type Server struct {
	opts  ServerOptions
	dev   *device
	ar    *arena
	cache *needleCache
	vol   *volumeHTTP
	tls   *tls.Config

	ctx    context.Context // canceled by Close; parent of every fetch
	cancel context.CancelFunc
	wg     sync.WaitGroup // Serve loops and peer goroutines

	mu        sync.Mutex
	closed    bool                      // guarded by mu
	listeners map[net.Listener]struct{} // guarded by mu
	peers     map[*serverPeer]struct{}  // guarded by mu

	windows   string // windowsMW or windowsMR
	mwBounded bool   // the probe found memory windows bounded (probeWindows)

	requests, errReplies, bytesOffered, peersSeen atomic.Uint64
	upstreamCorrupt                               atomic.Uint64
	authFailures, refusedPeers, limitReplies      atomic.Uint64
	revoked, qpErrors, idleDrops, writeDrops      atomic.Uint64
	qps                                           atomic.Int64
	okReplies, corrupted, corruptedStored, forged atomic.Uint64 // fault injection

	refusedMu sync.Mutex
	refused   map[uint16]uint64 // error replies by status; guarded by refusedMu
}

// NewServer opens the device and maps and carves the arena. Without a
// usable RDMA device (or in a build without the engine) it fails with an
// error wrapping errors.ErrUnsupported where that is the cause.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.VolumeServer == "" {
		return nil, errors.New("rdma server: no volume server address")
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 256 << 20
	}
	if opts.SlotBytes <= 0 {
		opts.SlotBytes = 8 << 20
	}
	if opts.CacheBytes < int64(opts.SlotBytes) {
		return nil, fmt.Errorf("rdma server: cache of %d bytes holds no %d-byte slot", opts.CacheBytes, opts.SlotBytes)
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 30 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&opts.MaxPeers, 1024)
	def(&opts.MaxPeersPerSource, 128)
	def(&opts.MaxReplies, 256)
	if opts.MaxPinnedBytes == 0 {
		opts.MaxPinnedBytes = opts.CacheBytes / 2
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&opts.ReplyTimeout, 60*time.Second)
	defDur(&opts.IdleTimeout, 5*time.Minute)
	defDur(&opts.WriteTimeout, 10*time.Second)
	if len(opts.Secret) > 0 && len(opts.Secret) < minSecret {
		return nil, fmt.Errorf("rdma server: secret of %d bytes, want at least %d", len(opts.Secret), minSecret)
	}
	switch opts.Windows {
	case "", "auto", "mw", "mr":
	default:
		return nil, fmt.Errorf("rdma server: windows %q: want auto, mw or mr", opts.Windows)
	}
	tcfg, err := opts.TLS.serverConfig()
	if err != nil {
		return nil, err
	}
	dev, err := openDevice(opts.Device, opts.GIDIndex)
	if err != nil {
		return nil, fmt.Errorf("rdma server: %w", err)
	}
	ar, err := newArena(int(opts.CacheBytes))
	if err != nil {
		dev.close()
		return nil, fmt.Errorf("rdma server: %w", err)
	}
	s := &Server{opts: opts, dev: dev, ar: ar, vol: newVolumeHTTP(opts.VolumeServer, opts.VolumeTLS), tls: tcfg,
		listeners: map[net.Listener]struct{}{}, peers: map[*serverPeer]struct{}{}, windows: windowsMR}
	if err := s.pickWindows(); err != nil {
		ar.free()
		dev.close()
		return nil, fmt.Errorf("rdma server: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cache = newNeedleCache(ar.mem, opts.SlotBytes, s.fill)
	return s, nil
}

// Device describes the port and GID the server listens on.
func (s *Server) Device() DeviceInfo { return s.dev.info }

// pickWindows sets how replies are exposed (ServerOptions.Windows): memory
// windows where the device has them and enforces their bounds (probed:
// Soft-RoCE does not, see probeWindows), else an MR per reply.
func (s *Server) pickWindows() error {
	name, logf := s.dev.info.Name, s.opts.Logf
	if s.opts.Windows == "mr" {
		logf("weedrdma: replies exposed through per-reply MRs (forced)")
		return nil
	}
	if !s.dev.memoryWindows() {
		if s.opts.Windows == "mw" {
			return fmt.Errorf("device %s has no type 2 memory windows", name)
		}
		logf("weedrdma: device %s has no type 2 memory windows: replies exposed through per-reply MRs", name)
		return nil
	}
	ok, bounded, err := s.dev.probeWindows()
	s.mwBounded = bounded
	switch {
	case !ok && s.opts.Windows == "mw":
		return fmt.Errorf("device %s: memory windows do not work: %w", name, err)
	case !ok:
		logf("weedrdma: device %s: memory windows do not work (%v): replies exposed through per-reply MRs", name, err)
	case !bounded && s.opts.Windows == "mw":
		s.windows = windowsMW
		logf("weedrdma: replies exposed through type 2 memory windows (forced), but device %s does not enforce a window's bounds: a peer can read the whole arena through its window's rkey", name)
	case !bounded:
		logf("weedrdma: device %s does not enforce memory window bounds (a window would expose the whole arena): replies exposed through per-reply MRs", name)
	default:
		s.windows = windowsMW
		logf("weedrdma: replies exposed through type 2 memory windows")
	}
	return nil
}

// WindowMode says how replies are exposed: "memory-window" or "per-reply-mr".
func (s *Server) WindowMode() string { return s.windows }

// HugePages reports whether the arena is backed by hugetlbfs pages.
func (s *Server) HugePages() bool { return s.ar.hugetlb }

func (s *Server) fill(ctx context.Context, fid, jwt string, dst []byte) (storedNeedle, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.FetchTimeout)
	defer cancel()
	st, err := s.vol.fetch(ctx, fid, jwt, dst)
	if errors.Is(err, errUpstreamCorrupt) {
		s.upstreamCorrupt.Add(1)
		s.opts.Logf("weedrdma: %s: %v", fid, err)
	}
	return st, err
}

// Serve accepts control connections on ln until ln fails or Close; it
// returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			delete(s.listeners, ln)
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("rdma server accept: %w", err)
		}
		p := &serverPeer{s: s, raw: nc, nc: nc, inflight: map[uint64]*reply{}, src: sourceOf(nc.RemoteAddr())}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		p.refuse = s.overLimitLocked(p.src)
		s.peers[p] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.peersSeen.Add(1)
		go func() {
			defer s.wg.Done()
			p.run()
			s.mu.Lock()
			delete(s.peers, p)
			s.mu.Unlock()
		}()
	}
}

// overLimitLocked says why one more peer from src is refused, or "".
func (s *Server) overLimitLocked(src string) string {
	if m := s.opts.MaxPeers; m > 0 && len(s.peers) >= m {
		return fmt.Sprintf("too many peers (limit %d)", m)
	}
	if m := s.opts.MaxPeersPerSource; m > 0 {
		n := 0
		for q := range s.peers {
			if q.src == src && q.refuse == "" {
				n++
			}
		}
		if n >= m {
			return fmt.Sprintf("too many peers from %s (limit %d)", src, m)
		}
	}
	return ""
}

func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// Close stops accepting, disconnects every peer (destroying its QP and
// unpinning its slots), waits for all goroutines, then frees the arena and
// releases the device.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	for p := range s.peers {
		p.raw.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.ar.free()
	s.dev.close()
	s.vol.close()
	return nil
}

// ServerStats are a Server's counters.
type ServerStats struct {
	Peers         int    // connected now
	PeersSeen     uint64 // control connections accepted
	Requests      uint64
	ErrorReplies  uint64
	BytesOffered  uint64 // bytes of successful replies
	CachedNeedles int
	PinnedSlots   int
	Slots         int
	// UpstreamCorrupt counts fetches refused because the volume server's
	// bytes did not match its own checksum.
	UpstreamCorrupt uint64
	Corrupted       uint64 // replies corrupted on purpose after their CRC (CorruptEveryN)
	CorruptedStored uint64 // replies corrupted on purpose before their CRC (CorruptStoredEveryN)
	// Refusals counts ErrorReplies by status: 400 bad request, 413 too
	// large, 503 busy, 504 timeout, otherwise the volume server's status.
	Refusals map[uint16]uint64
	Forged   uint64 // replies forged on purpose, CRCs and all (ForgeEveryN)
	// WindowMode is how replies are exposed: "memory-window" (a type 2
	// MW bound to the peer's QP per reply) or "per-reply-mr".
	WindowMode string
	QPs        int64 // peers holding a PD, CQ and QP now
	// AuthFailures counts peers refused for the shared secret (before any
	// PD or QP), RefusedPeers connections refused by the peer limits,
	// LimitReplies requests refused by a per-peer limit (429).
	AuthFailures, RefusedPeers, LimitReplies uint64
	// Revoked counts replies revoked because the peer did not release them
	// within ReplyTimeout; QPErrors peers dropped because their QP left
	// RTS (a remote access violation, for one); IdleDrops peers dropped
	// by IdleTimeout.
	// WriteDrops counts peers dropped because a frame to them could not
	// be written within WriteTimeout.
	Revoked, QPErrors, IdleDrops, WriteDrops uint64
}

func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	peers := len(s.peers)
	s.mu.Unlock()
	cached, pinned := s.cache.stats()
	s.refusedMu.Lock()
	refusals := maps.Clone(s.refused)
	s.refusedMu.Unlock()
	return ServerStats{Refusals: refusals, Peers: peers, PeersSeen: s.peersSeen.Load(), Requests: s.requests.Load(),
		ErrorReplies: s.errReplies.Load(), BytesOffered: s.bytesOffered.Load(),
		CachedNeedles: cached, PinnedSlots: pinned, Slots: s.cache.slots.size(),
		UpstreamCorrupt: s.upstreamCorrupt.Load(), Corrupted: s.corrupted.Load(), CorruptedStored: s.corruptedStored.Load(),
		Forged: s.forged.Load(), WindowMode: s.windows, QPs: s.qps.Load(), AuthFailures: s.authFailures.Load(),
		RefusedPeers: s.refusedPeers.Load(), LimitReplies: s.limitReplies.Load(), Revoked: s.revoked.Load(),
		QPErrors: s.qpErrors.Load(), IdleDrops: s.idleDrops.Load(), WriteDrops: s.writeDrops.Load()}
}

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
