package rdma

import (
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
