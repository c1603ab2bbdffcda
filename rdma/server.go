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
	"sync"
	"sync/atomic"
	"time"

	"github.com/weedfuse/weedfuse/internal/volume"
)

// ServerOptions configure a Server (cmd/weedrdma's flags).
type ServerOptions struct {
	// VolumeServer is the HTTP address ("127.0.0.1:8080") of the volume
	// server whose needles this server serves.
	VolumeServer string
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

	// CorruptEveryN and CorruptStoredEveryN are fault injection, for tests
	// only: when > 0, every Nth successful reply points at a private copy
	// of the needle with one byte flipped. CorruptEveryN flips it after
	// the transfer CRC32C was computed, as if the wire or the client's
	// memory had corrupted it; CorruptStoredEveryN before, as if this
	// server's own memory had, so that only the needle's checksum from
	// the volume server can tell. Clients must detect both and fall back.
	CorruptEveryN       int
	CorruptStoredEveryN int
}

// maxPeerRequests bounds one peer's requests in progress; the peer's reader
// stops reading frames beyond it (back-pressure through TCP).
const maxPeerRequests = 64

// Server serves needles of one volume server to rdma Clients. It has no
// fixed peer limit: each control connection gets its own PD, CQ and QP and
// its own registration of the arena, and a peer that goes away (EOF,
// protocol error, TLS failure) has its QP destroyed and its slots unpinned.
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

	requests, errReplies, bytesOffered, peersSeen atomic.Uint64
	upstreamCorrupt                               atomic.Uint64
	okReplies, corrupted, corruptedStored         atomic.Uint64 // fault injection

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
	s := &Server{opts: opts, dev: dev, ar: ar, vol: newVolumeHTTP(opts.VolumeServer), tls: tcfg,
		listeners: map[net.Listener]struct{}{}, peers: map[*serverPeer]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cache = newNeedleCache(ar.mem, opts.SlotBytes, s.fill)
	return s, nil
}

// Device describes the port and GID the server listens on.
func (s *Server) Device() DeviceInfo { return s.dev.info }

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
		p := &serverPeer{s: s, raw: nc, nc: nc, inflight: map[uint64]*needle{}}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			continue
		}
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
		UpstreamCorrupt: s.upstreamCorrupt.Load(), Corrupted: s.corrupted.Load(), CorruptedStored: s.corruptedStored.Load()}
}

// serverPeer is one client connection. Its run goroutine reads frames and
// owns the request goroutines (wg); all replies are written under wmu.
type serverPeer struct {
	s   *Server
	raw net.Conn // the accepted connection; Close closes it to end the peer
	nc  net.Conn // raw, or the TLS connection over it; set by handshake, then owned by run
	ep  *endpoint
	wg  sync.WaitGroup // request goroutines

	br *bufio.Reader // owned by run

	wmu sync.Mutex
	bw  *bufio.Writer // guarded by wmu

	mu       sync.Mutex
	closed   bool               // guarded by mu: no more needles may be pinned for this peer
	inflight map[uint64]*needle // guarded by mu: replies not released; nil value = request in progress
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
		for id, n := range p.inflight {
			if n != nil {
				s.cache.put(n)
			}
			delete(p.inflight, id)
		}
		p.mu.Unlock()
		if p.ep != nil {
			p.ep.close()
		}
	}()
	remote := p.raw.RemoteAddr().String()
	if err := p.handshake(); err != nil {
		s.opts.Logf("weedrdma: peer %s: handshake: %v", remote, err)
		return
	}
	s.opts.Logf("weedrdma: peer %s connected (qpn %d)", remote, p.ep.local().QPN)
	sem := make(chan struct{}, maxPeerRequests)
	err := func() error {
		for {
			typ, payload, err := readFrame(p.br)
			if err != nil {
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

// handshake runs TLS if configured, reads the client's hello, creates and
// connects this peer's endpoint and answers with its own parameters. The
// QP is RTS before the answer leaves, so the client may read at once.
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
	if typ != frameHello {
		return fmt.Errorf("%w: first frame is type %d, not hello", errProtocol, typ)
	}
	h, err := decodeHello(payload)
	if err != nil {
		return err
	}
	refuse := func(status uint16, err error) error {
		ans := hello{Version: protoVersion, Status: status, Err: err.Error()}
		_ = p.write(frameHello, ans.encode())
		return err
	}
	if h.Version != protoVersion {
		return refuse(statusBadRequest, fmt.Errorf("protocol version %d, want %d", h.Version, protoVersion))
	}
	if p.ep, err = s.dev.newEndpoint(s.ar, 4, false); err != nil {
		return refuse(statusBusy, err)
	}
	if err := p.ep.connect(h.QP); err != nil {
		return refuse(statusBadRequest, err)
	}
	ans := hello{Version: protoVersion, Status: statusOK, QP: p.ep.local()}
	if err := p.write(frameHello, ans.encode()); err != nil {
		return err
	}
	return p.nc.SetDeadline(time.Time{})
}

func (p *serverPeer) write(typ uint8, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := writeFrame(p.bw, typ, payload); err != nil {
		return err
	}
	return p.bw.Flush()
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

// release unpins the needles of finished replies. Unknown ids and ids whose
// request is still in progress are ignored: a client gets nothing from
// lying about ids but its own slots.
func (p *serverPeer) release(ids []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if n := p.inflight[id]; n != nil {
			delete(p.inflight, id)
			p.s.cache.put(n)
		}
	}
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
	rep, n := p.answer(ctx, req)
	p.mu.Lock()
	switch {
	case n != nil && !p.closed:
		p.inflight[req.ID] = n
		p.s.bytesOffered.Add(uint64(rep.Length))
	case n != nil:
		p.s.cache.put(n)
		delete(p.inflight, req.ID)
	default:
		delete(p.inflight, req.ID)
	}
	p.mu.Unlock()
	if rep.Status != statusOK {
		p.s.refuse(rep.Status)
	}
	if err := p.write(frameReply, rep.encode()); err != nil {
		p.raw.Close() // the reader sees it and cleans up
	}
}

// answer fetches (or finds) the whole stored needle and describes it in
// registered memory. A returned needle is pinned.
func (p *serverPeer) answer(ctx context.Context, req readRequest) (readReply, *needle) {
	s := p.s
	fail := func(status int, err error) (readReply, *needle) {
		return readReply{ID: req.ID, Status: uint16(status), Err: err.Error()}, nil
	}
	if _, _, _, err := volume.ParseFileID(req.FileID); err != nil {
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
	crc := n.stored.crc
	if c, ccrc, ok := s.corrupt(n); ok {
		s.cache.put(n)
		n, crc = c, ccrc
	}
	return readReply{ID: req.ID, Status: statusOK, Addr: p.ep.addr(n.slot * s.cache.slotSize), RKey: p.ep.rkey(),
		Length: uint32(n.stored.size), CRC: crc, HasSum: n.stored.hasSum, Gzip: n.stored.gzip, NeedleSum: n.stored.sum}, n
}

// corrupt implements the fault injection: when this reply is due, it
// returns a pinned scratch slot holding n's bytes with one byte flipped,
// and the transfer CRC to send with it: n's own (CorruptEveryN), which the
// client's transfer check catches, or that of the flipped bytes
// (CorruptStoredEveryN), which only the needle's checksum catches. The
// cached needle itself stays intact, so only this one reply is bad.
func (s *Server) corrupt(n *needle) (*needle, uint32, bool) {
	after, before := uint64(s.opts.CorruptEveryN), uint64(s.opts.CorruptStoredEveryN)
	if after == 0 && before == 0 || n.stored.size == 0 {
		return nil, 0, false
	}
	k := s.okReplies.Add(1)
	stored := before > 0 && k%before == 0
	if !stored && (after == 0 || k%after != 0) {
		return nil, 0, false
	}
	c, ok := s.cache.scratch(n)
	if !ok {
		return nil, 0, false
	}
	mem := s.cache.slotMem(c.slot)[:c.stored.size]
	mem[len(mem)/2] ^= 0x5a
	if stored {
		s.corruptedStored.Add(1)
		return c, crc32c(0, mem), true
	}
	s.corrupted.Add(1)
	return c, c.stored.crc, true
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
