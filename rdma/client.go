package rdma

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// Locator lists the volume servers (HTTP "host:port") that hold a volume.
// volume.Locator satisfies it. The client calls it from many fetches at
// once, so it must be safe for concurrent use.
type Locator interface {
	Locations(ctx context.Context, vid uint32) ([]string, error)
}

// ClientOptions configure a Client (the mount's -rdma.* flags).
type ClientOptions struct {
	// Sidecars maps a volume server to its weedrdma (see SidecarMap).
	Sidecars SidecarMap
	Locator  Locator
	// MaxConcurrent bounds RDMA reads in flight in this process; it is also
	// the number of arena slots. Default 16.
	MaxConcurrent int
	// SlotBytes is one arena slot: the most one RDMA READ moves. A needle
	// larger than a slot moves in several READs into memory of the
	// client's own. Default 8 MiB, as weedrdma's: every read moves a whole
	// stored needle, and a 4 MiB chunk (weed's default -maxMB) with its
	// gzip or sealing overhead then takes one READ.
	SlotBytes int
	// WholeCacheBytes bounds the cache of decoded, verified needles that
	// partial reads share (see Fetch). Default 32 MiB; negative turns it
	// off.
	WholeCacheBytes int64
	// VerifyETag is ignored: the RDMA path always checks the filer's
	// e_tag MD5 where the chunk has one, since the CRC32Cs come from
	// weedrdma, which protects against corruption but not against a
	// forging server.
	VerifyETag bool
	// RangeReads lets a partial read of a chunk stored as is (neither
	// compressed nor encrypted) move just its range: weedrdma checks the
	// whole needle against the volume server's checksum and answers with
	// a window over the range and the range's own CRC32C, which checks the
	// transfer. Off by default: such a read trusts weedrdma's check (the
	// peer is authenticated, but the filer's e_tag, which needs the whole
	// needle, is not checked), where a whole-needle read checks the e_tag
	// itself.
	RangeReads bool
	// Timeout bounds one Fetch on the RDMA path; past it the read falls
	// back to HTTP. Default 5 s.
	Timeout time.Duration
	// Device and GIDIndex select the local port as for ServerOptions.
	Device   string
	GIDIndex int
	TLS      TLSFiles
	// Secret is the shared secret (security.toml's [rdma] key). With it
	// the client proves it to every weedrdma and requires each to prove
	// it back (a server without it is refused); without it, a weedrdma
	// that requires one refuses this client.
	Secret []byte
	// ReadJWT, when set, returns the read JWT for a file id: cmd/weedfuse
	// passes volume.SignReadJWT with security.toml's jwt.signing.read key
	// and expiry. Each request carries it, and weedrdma passes it on to the
	// volume server. Nil, or an empty token, sends none. The signing is
	// internal/volume's, which the client does not import.
	ReadJWT func(fid string) string
	// Logf logs connection events; default log.Printf.
	Logf func(format string, args ...any)

	// crcPieces is how many signaled pieces one slot's RDMA READ is split
	// into at most (see splitPieces); 0 means defaultCRCPieces. crcFunc
	// replaces needle.CRC32C. Tests set them (1, stdCRC) to measure the path as
	// it was against the default in one boot.
	crcPieces int
	crcFunc   func(crc uint32, p []byte) uint32
}

// A transfer's CRC32C is computed piece by piece as each piece lands, so
// that the CPU work of checking it overlaps the rest of the transfer
// instead of following it: the read then costs about the transfer plus the
// CRC of its last piece, not the transfer plus the CRC of all of it.
// Pieces are at least minCRCPiece bytes, so a small read stays one work
// request.
const (
	defaultCRCPieces = 8
	minCRCPiece      = 128 << 10
	// maxQPDepth bounds the work requests a client QP is sized for
	// (MaxConcurrent slots × pieces); crcPieces shrinks to fit it.
	maxQPDepth = 4096
)

// splitPieces cuts an n-byte READ into count pieces of piece bytes (the last
// one shorter): as many as maxPieces, none under minCRCPiece unless n is,
// each at most maxMsg and 4 KiB-aligned, and never more than maxChain.
func splitPieces(n, maxPieces, maxMsg int) (piece, count int) {
	count = max(1, min(maxPieces, (n+minCRCPiece-1)/minCRCPiece, maxChain))
	piece = (n + count - 1) / count
	piece = (piece + 4095) &^ 4095
	if piece > maxMsg {
		piece = maxMsg
	}
	if (n+piece-1)/piece > maxChain { // only for slots over maxChain × maxMsg
		piece = (n + maxChain - 1) / maxChain
	}
	return piece, (n + piece - 1) / piece
}

// Fallback reasons, the keys of ClientStats.Fallbacks.
const (
	reasonUnsupported  = iota // no verbs engine or no usable device
	reasonNoSidecar           // no weedrdma mapped for any replica
	reasonLookup              // bad file id or volume lookup failed
	reasonNotConnected        // control connection down (reconnecting)
	reasonCircuitOpen         // breaker open after repeated failures
	reasonTimeout             // Timeout passed on the RDMA path
	reasonTransport           // TCP or QP failure, or a reply that makes no sense
	reasonCRC                 // CRC32C mismatch after the transfer
	reasonNeedleCRC           // the bytes received do not match the volume server's needle CRC32C
	reasonServer              // error reply (volume server status, or a needle that failed weedrdma's check)
	reasonBusy                // the server had no free slot
	reasonTooLarge            // the needle is larger than weedrdma's slots (or than any chunk's needle may be)
	reasonDecode              // needle.DecodeVerified failed on the stored bytes
	numReasons
	// reasonNoRange: the needle is stored gzip-encoded, so no range of
	// it can be served; the read moves the whole needle instead. Not a
	// fallback to HTTP, never counted.
	reasonNoRange = numReasons
)

var reasonNames = [numReasons + 1]string{"unsupported", "no_sidecar", "lookup", "not_connected", "circuit_open",
	"timeout", "transport", "crc", "needle_crc", "server_error", "server_busy", "too_large", "decode", "no_range"}

// fallback is an internal error that makes a read fall back to HTTP. sick
// marks failures of the path itself, which count against the breaker.
type fallback struct {
	reason int
	sick   bool
	err    error
}

func (f *fallback) Error() string { return reasonNames[f.reason] + ": " + f.err.Error() }
func (f *fallback) Unwrap() error { return f.err }

func fallbackf(reason int, sick bool, format string, args ...any) *fallback {
	return &fallback{reason: reason, sick: sick, err: fmt.Errorf(format, args...)}
}

// Client reads chunks from weedrdma servers by RDMA READ. It is the first
// step of the fetch chain: whenever it cannot serve a read it returns an
// error wrapping needle.ErrNotServed, and counts why. Fetch is safe for
// concurrent use.
//
// Each weedrdma address gets a peer whose goroutine keeps one connection up,
// reconnecting with backoff; a read never waits for a reconnect (only for
// the very first connection attempt), and a per-peer breaker keeps reads
// off a failing path. All goroutines belong to the Client; Close stops and
// waits for them.
type Client struct {
	opts        ClientOptions
	unavailable error // non-nil: no engine or device; every read falls back

	dev   *device
	ar    *arena
	slots *slotPool
	tls   *tls.Config
	whole *needle.NeedleCache
	// flight shares one fetch of a needle, keyed by file id, among the
	// partial reads that miss whole at the same time.
	flight singleflight.Group
	// tooLarge remembers needles weedrdma refused as larger than its
	// slots, so that the page cache reading one block by block does not
	// ask again (and make weedrdma fetch again) for every block. A file id
	// names one needle forever, so the memo never goes stale.
	tooLargeMu sync.Mutex
	tooLarge   map[string]struct{} // guarded by tooLargeMu
	noRangeFID map[string]struct{} // guarded by tooLargeMu: needles stored gzip-encoded (no ranges)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // peer goroutines

	mu    sync.Mutex
	peers map[string]*clientPeer // guarded by mu; by weedrdma address, never removed before Close

	// Every Fetch holds closeMu shared, so Close, which takes it
	// exclusively, frees the arena only when no read can touch it.
	closeMu sync.RWMutex
	closed  bool // guarded by closeMu

	nextID                                atomic.Uint64 // request ids and work request ids
	reads, bytes, crcFailures, reconnects atomic.Uint64
	fetches, fetchedBytes, unchecked      atomic.Uint64
	rangeFetches, rangeBytes              atomic.Uint64
	needleCRCFailures                     atomic.Uint64
	fallbacks                             [numReasons]atomic.Uint64
}

// NewClient checks the options and opens the device and arena. Bad options
// are an error. A missing engine or device is not: the Client is returned
// and serves nothing (every read falls back, counted as "unsupported"), and
// Unavailable says why; in a build without the engine that error wraps
// errors.ErrUnsupported.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Locator == nil {
		return nil, errors.New("rdma client: no Locator")
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 16
	}
	if opts.SlotBytes <= 0 {
		opts.SlotBytes = 8 << 20
	}
	switch {
	case opts.WholeCacheBytes == 0:
		opts.WholeCacheBytes = 32 << 20
	case opts.WholeCacheBytes < 0:
		opts.WholeCacheBytes = 0
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	if opts.crcPieces <= 0 {
		opts.crcPieces = defaultCRCPieces
	}
	opts.crcPieces = max(1, min(opts.crcPieces, maxQPDepth/opts.MaxConcurrent))
	if opts.crcFunc == nil {
		opts.crcFunc = needle.CRC32C
	}
	tcfg, err := opts.TLS.clientConfig()
	if err != nil {
		return nil, err
	}
	c := &Client{opts: opts, tls: tcfg, whole: needle.NewNeedleCache(opts.WholeCacheBytes), tooLarge: map[string]struct{}{},
		noRangeFID: map[string]struct{}{}, peers: map[string]*clientPeer{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.dev, err = openDevice(opts.Device, opts.GIDIndex); err != nil {
		c.unavailable = fmt.Errorf("rdma client: %w", err)
		return c, nil
	}
	if c.ar, err = newArena(opts.MaxConcurrent * opts.SlotBytes); err != nil {
		c.dev.close()
		c.unavailable = fmt.Errorf("rdma client: %w", err)
		return c, nil
	}
	c.slots = newSlotPool(opts.MaxConcurrent)
	return c, nil
}

// Unavailable is nil when the engine is up, else why every read falls back.
func (c *Client) Unavailable() error { return c.unavailable }

// Device describes the local port in use (zero when Unavailable).
func (c *Client) Device() DeviceInfo {
	if c.dev == nil {
		return DeviceInfo{}
	}
	return c.dev.info
}

// Close stops every peer goroutine, tears down the connections (QPs
// destroyed) and waits, then frees the arena. Reads after Close fall back.
func (c *Client) Close() error {
	c.cancel() // connections die, so reads in flight return promptly
	c.closeMu.Lock()
	c.closed = true
	c.closeMu.Unlock()
	c.wg.Wait()
	if c.ar != nil {
		c.ar.free()
		c.ar = nil
	}
	if c.dev != nil {
		c.dev.close()
		c.dev = nil
	}
	return nil
}

// ClientStats are a Client's counters.
type ClientStats struct {
	// Reads counts Fetch calls served over RDMA (from a needle moved
	// for them or for another read of it), Bytes the logical bytes they
	// returned: the same measure as volume.Stats.Reads and Bytes.
	Reads     uint64
	Bytes     uint64
	Fallbacks map[string]uint64 // reads left to HTTP, by reason
	// Fetches and FetchedBytes count the whole stored needles moved by
	// RDMA READ and checked; Unchecked those of them that came without
	// the volume server's needle CRC32C (an old server), for which the
	// e_tag MD5 was the check.
	Fetches      uint64
	FetchedBytes uint64
	Unchecked    uint64
	// RangeFetches and RangeBytes count verified ranges moved by RDMA
	// READ (RangeReads), each checked against its own CRC32C.
	RangeFetches uint64
	RangeBytes   uint64
	// CRCFailures counts transfers whose bytes did not match the CRC32C
	// weedrdma sent; NeedleCRCFailures transfers that did, but whose bytes
	// did not match the needle's CRC32C from the volume server.
	CRCFailures       uint64
	NeedleCRCFailures uint64
	Reconnects        uint64 // connections established after a peer's first
	Peers             int    // weedrdma servers known
	Connected         int    // of which connected now
	OpenCircuit       int    // of which with an open breaker
}

func (c *Client) Stats() ClientStats {
	st := ClientStats{Reads: c.reads.Load(), Bytes: c.bytes.Load(), Fetches: c.fetches.Load(),
		FetchedBytes: c.fetchedBytes.Load(), Unchecked: c.unchecked.Load(), CRCFailures: c.crcFailures.Load(),
		NeedleCRCFailures: c.needleCRCFailures.Load(), Reconnects: c.reconnects.Load(), Fallbacks: map[string]uint64{},
		RangeFetches: c.rangeFetches.Load(), RangeBytes: c.rangeBytes.Load()}
	for i := range c.fallbacks {
		st.Fallbacks[reasonNames[i]] = c.fallbacks[i].Load()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.Peers = len(c.peers)
	for _, p := range c.peers {
		if p.current() != nil {
			st.Connected++
		}
		if p.br.isOpen() {
			st.OpenCircuit++
		}
	}
	return st
}

// Fetch fills r.Dsts, in order, with the chunk's logical bytes from r.Off
// and returns how many it wrote: fewer than r.Len() only where the chunk
// ends. It cannot tee: r.Whole is left empty. It reads no Range (those go
// over HTTP): it refuses them with errNoRange, without counting a
// fallback.
//
// Whatever the range, it moves the chunk's whole stored needle, as the HTTP
// path (volume.Reader) does, since only a whole needle has a checksum: the
// bytes that land are checked against weedrdma's transfer CRC32C and
// against the needle's own CRC32C from the volume server, decoded by the
// HTTP path's rule (needle.DecodeVerified), and only then copied into
// r.Dsts. A read of a whole chunk (the page cache's usual fetch) is served
// straight from the transfer; partial reads of one needle share a single
// fetch and keep the decoded needle in a small cache (WholeCacheBytes), so
// reading a chunk block by block moves it once.
//
// Any failure of the RDMA path returns an error wrapping
// needle.ErrNotServed (the read is then served over HTTP); the caller's own
// cancellation is returned as is.
func (c *Client) Fetch(ctx context.Context, r needle.Request) (int, error) {
	if r.Range {
		return 0, errNoRange
	}
	if r.Whole != nil {
		r.Whole.Reset()
	}
	ch, off, dsts := r.Chunk, r.Off, r.Dsts
	if c.unavailable != nil {
		return 0, c.notServed(ch.FileID, &fallback{reason: reasonUnsupported, err: c.unavailable})
	}
	if off < 0 {
		return 0, fmt.Errorf("rdma read %s: negative offset %d", ch.FileID, off)
	}
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return 0, c.notServed(ch.FileID, fallbackf(reasonNotConnected, false, "client closed"))
	}
	want := min(r.Len(), ch.Size-off)
	if want <= 0 {
		return 0, nil
	}
	var err error
	if logical, ok := c.whole.Get(ch.FileID); ok {
		err = serve(ch, logical, off, want, dsts)
	} else if c.isTooLarge(ch.FileID) {
		err = fallbackf(reasonTooLarge, false, "needle larger than weedrdma's slots (refused before)")
	} else if off == 0 && want == ch.Size {
		// The caller keeps the whole chunk: no cache entry, no copy of
		// the needle but the one into dsts.
		err = c.fetch(ctx, ch, false, func(logical []byte) { needle.Scatter(dsts, logical[:want]) })
	} else if c.opts.RangeReads && !ch.Compressed && len(ch.CipherKey) == 0 && !c.noRange(ch.FileID) {
		err = c.fetchRange(ctx, ch, off, want, dsts)
		var f *fallback
		if errors.As(err, &f) && f.reason == reasonNoRange {
			c.rememberNoRange(ch.FileID)
			err = c.shared(ctx, ch, off, want, dsts)
		}
	} else {
		err = c.shared(ctx, ch, off, want, dsts)
	}
	var f *fallback
	switch {
	case err == nil:
		c.reads.Add(1)
		c.bytes.Add(uint64(want))
		return int(want), nil
	case ctx.Err() != nil:
		return 0, fmt.Errorf("rdma read %s: %w", ch.FileID, ctx.Err())
	case errors.As(err, &f):
		if f.reason == reasonTooLarge {
			c.rememberTooLarge(ch.FileID)
		}
		return 0, c.notServed(ch.FileID, f)
	default:
		return 0, err
	}
}

// errNoRange refuses a Range request. One value, made once: the chain asks
// this step first for every range that the HTTP step then reads.
var errNoRange = fmt.Errorf("rdma: ranges are read over HTTP: %w", needle.ErrNotServed)

func (c *Client) isTooLarge(fid string) bool {
	c.tooLargeMu.Lock()
	defer c.tooLargeMu.Unlock()
	_, ok := c.tooLarge[fid]
	return ok
}

func (c *Client) rememberTooLarge(fid string) {
	c.tooLargeMu.Lock()
	defer c.tooLargeMu.Unlock()
	if len(c.tooLarge) >= 4096 {
		clear(c.tooLarge) // a bound, not a policy: forgetting costs one more refusal
	}
	c.tooLarge[fid] = struct{}{}
}

func (c *Client) noRange(fid string) bool {
	c.tooLargeMu.Lock()
	defer c.tooLargeMu.Unlock()
	_, ok := c.noRangeFID[fid]
	return ok
}

func (c *Client) rememberNoRange(fid string) {
	c.tooLargeMu.Lock()
	defer c.tooLargeMu.Unlock()
	if len(c.noRangeFID) >= 4096 {
		clear(c.noRangeFID)
	}
	c.noRangeFID[fid] = struct{}{}
}

// fetchRange moves [off, off+n) of the chunk's needle, stored as is, as a
// verified range (see RangeReads) and copies it into dsts once its CRC32C
// matched. Errors as for fetch.
func (c *Client) fetchRange(ctx context.Context, ch needle.Chunk, off, n int64, dsts [][]byte) error {
	if n > int64(c.opts.SlotBytes) {
		return c.shared(ctx, ch, off, n, dsts)
	}
	return c.onPeer(ctx, ch, func(ctx context.Context, p *clientPeer) error {
		return p.withConn(ctx, func(cn *clientConn, slot int) error {
			rep, err := cn.request(ctx, readRequest{FileID: ch.FileID, JWT: c.jwt(ch.FileID), Offset: uint64(off), Length: uint32(n)})
			if err != nil {
				return err
			}
			if !rep.Range || int64(rep.Length) != n {
				cn.release(rep.ID)
				return fallbackf(reasonTransport, true, "asked for %d bytes at %d, got a reply of %d (range %v)", n, off, rep.Length, rep.Range)
			}
			got, crc, err := cn.transfer(ctx, rep, slot)
			if err != nil {
				return err
			}
			if crc != rep.CRC {
				c.crcFailures.Add(1)
				return fallbackf(reasonCRC, true, "range CRC32C %08x, server said %08x", crc, rep.CRC)
			}
			needle.Scatter(dsts, got)
			c.rangeFetches.Add(1)
			c.rangeBytes.Add(uint64(len(got)))
			return nil
		})
	})
}

// serve copies [off, off+n) of a decoded needle into dsts. The needle was
// checked against the length of the chunk that fetched it; another chunk
// naming it must not show more.
func serve(ch needle.Chunk, logical []byte, off, n int64, dsts [][]byte) error {
	if int64(len(logical)) < ch.Size {
		return fallbackf(reasonDecode, false, "needle holds %d logical bytes, chunk shows %d", len(logical), ch.Size)
	}
	needle.Scatter(dsts, logical[off:off+n])
	return nil
}

// shared serves a partial read from the needle that one fetch, shared by
// every partial read of it at the time, moves, verifies, decodes and
// caches.
func (c *Client) shared(ctx context.Context, ch needle.Chunk, off, n int64, dsts [][]byte) error {
	for {
		v, err, _ := c.flight.Do(ch.FileID, func() (any, error) {
			var logical []byte
			if err := c.fetch(ctx, ch, true, func(b []byte) { logical = b }); err != nil {
				return nil, err
			}
			c.whole.Put(ch.FileID, logical)
			return logical, nil
		})
		// The shared fetch ran under the ctx of whichever reader started
		// it; its only errors that are not fallbacks are that reader's
		// cancellation. If this reader still wants the bytes, fetch
		// again rather than fall back over someone else's giving up.
		var f *fallback
		if err != nil && !errors.As(err, &f) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return err
		}
		return serve(ch, v.([]byte), off, n, dsts)
	}
}

// fetch moves the chunk's whole stored needle from the weedrdma of the
// first replica whose breaker admits it, verifies and decodes it (see
// clientConn.fetch) and hands all its logical bytes to use. It tells the
// peer's breaker the outcome. Its errors are *fallback, except the caller's
// own cancellation.
func (c *Client) fetch(ctx context.Context, ch needle.Chunk, keep bool, use func(logical []byte)) error {
	return c.onPeer(ctx, ch, func(ctx context.Context, p *clientPeer) error {
		return p.withConn(ctx, func(cn *clientConn, slot int) error {
			return cn.fetch(ctx, ch, slot, keep, use)
		})
	})
}

// onPeer runs f, under Timeout, on the peer of the first replica whose
// breaker admits it, and tells the breaker the outcome. Its errors are
// *fallback, except the caller's own cancellation.
func (c *Client) onPeer(ctx context.Context, ch needle.Chunk, f func(context.Context, *clientPeer) error) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	p, fb := c.pick(ctx, ch.FileID)
	if fb != nil {
		return fb
	}
	err := f(ctx, p)
	var fe *fallback
	switch {
	case err == nil:
		p.br.success()
		return nil
	case parent.Err() != nil:
		p.br.abandon()
		return fmt.Errorf("rdma read %s: %w", ch.FileID, parent.Err())
	case errors.As(err, &fe):
		if fe.sick {
			p.br.failure()
		} else {
			p.br.abandon()
		}
		return fe
	default:
		p.br.failure()
		return &fallback{reason: reasonTransport, sick: true, err: err}
	}
}

func (c *Client) notServed(fid string, f *fallback) error {
	c.fallbacks[f.reason].Add(1)
	return fmt.Errorf("rdma read %s: %w (%w)", fid, needle.ErrNotServed, f)
}

// pick returns the peer of the first replica that has a weedrdma whose
// breaker admits the read. A returned peer's breaker must be told the
// outcome (success, failure or abandon).
func (c *Client) pick(ctx context.Context, fid string) (*clientPeer, *fallback) {
	vid, _, _, err := needle.ParseFileID(fid)
	if err != nil {
		return nil, &fallback{reason: reasonLookup, err: err}
	}
	locs, err := c.opts.Locator.Locations(ctx, vid)
	if err != nil {
		return nil, &fallback{reason: reasonLookup, err: err}
	}
	open := false
	for _, vs := range locs {
		addr, ok := c.opts.Sidecars.Lookup(vs)
		if !ok {
			continue
		}
		p := c.peer(addr)
		if p.br.allow() {
			return p, nil
		}
		open = true
	}
	if open {
		return nil, fallbackf(reasonCircuitOpen, false, "circuit open for every weedrdma of volume %d", vid)
	}
	return nil, fallbackf(reasonNoSidecar, false, "no weedrdma for volume %d at %v", vid, locs)
}

func (c *Client) peer(addr string) *clientPeer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.peers[addr]; ok {
		return p
	}
	p := &clientPeer{c: c, addr: addr, br: newBreaker(3, time.Second, 30*time.Second), firstDone: make(chan struct{})}
	c.peers[addr] = p
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		p.run()
	}()
	return p
}

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

// clientConn is one live control connection and QP. readLoop, pollLoop and
// releaseLoop belong to it (wg); fail marks it dead, and the peer's run
// goroutine then calls teardown, which waits for them and destroys the QP.
// Only after teardown (gone closed) may a read whose RDMA READ never
// completed reuse its slot: until the QP is destroyed the NIC may write it.
type clientConn struct {
	c  *Client
	nc net.Conn
	br *bufio.Reader // owned by readLoop
	ep *endpoint
	wg sync.WaitGroup

	stop    chan struct{} // closed by fail: pollLoop returns
	dead    chan struct{} // closed by fail
	gone    chan struct{} // closed by teardown: the QP is destroyed
	relKick chan struct{} // a release is pending (buffered, 1)

	wmu sync.Mutex
	bw  *bufio.Writer // guarded by wmu

	epMu     sync.RWMutex // posting holds it shared; teardown exclusive
	epClosed bool         // guarded by epMu

	mu       sync.Mutex
	failErr  error                     // guarded by mu; set once, by fail
	replies  map[uint64]chan readReply // guarded by mu: requests awaiting a reply
	wcs      map[uint64]chan error     // guarded by mu: RDMA READ pieces awaiting completion
	releases []uint64                  // guarded by mu: reply ids to release
}

// fail marks the connection dead (once) and unblocks its goroutines.
func (cn *clientConn) fail(err error) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.failErr != nil {
		return
	}
	cn.failErr = err
	close(cn.stop)
	close(cn.dead)
	cn.nc.Close()
}

func (cn *clientConn) err() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.failErr
}

// teardown waits for the connection's goroutines, then destroys the QP and
// frees the endpoint. Called once, by the peer's run goroutine, after fail.
func (cn *clientConn) teardown() {
	cn.wg.Wait()
	cn.epMu.Lock()
	cn.epClosed = true
	cn.ep.close()
	cn.epMu.Unlock()
	close(cn.gone)
}

func (cn *clientConn) send(typ uint8, payload []byte) error {
	return cn.sendWith(typ, func() []byte { return payload })
}

// sendWith writes the frame that payload builds, under wmu; a nil payload
// writes nothing. Frames that carry releases take them inside payload, so
// that releases reach the server in the order they were taken: a request
// never overtakes a release taken before it, which weedrdma's per-peer
// limits on unreleased replies depend on.
func (cn *clientConn) sendWith(typ uint8, payload func() []byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	b := payload()
	if b == nil {
		return nil
	}
	if err := cn.nc.SetWriteDeadline(time.Now().Add(cn.c.opts.Timeout)); err != nil {
		return err
	}
	if err := writeFrame(cn.bw, typ, b); err != nil {
		return err
	}
	return cn.bw.Flush()
}

// readLoop delivers replies. A reply nobody waits for any more (its read
// timed out) is released at once.
func (cn *clientConn) readLoop() {
	for {
		typ, payload, err := readFrame(cn.br)
		if err == nil && typ != frameReply {
			err = fmt.Errorf("%w: unexpected frame type %d", errProtocol, typ)
		}
		var rep readReply
		if err == nil {
			rep, err = decodeReply(payload)
		}
		if err != nil {
			cn.fail(fmt.Errorf("control connection: %w", err))
			return
		}
		cn.mu.Lock()
		ch, ok := cn.replies[rep.ID]
		delete(cn.replies, rep.ID)
		cn.mu.Unlock()
		switch {
		case ok:
			ch <- rep
		case rep.Status == statusOK:
			cn.release(rep.ID)
		}
	}
}

// pollLoop delivers RDMA READ completions. A failed completion leaves the
// QP in the error state, so it also fails the connection.
func (cn *clientConn) pollLoop() {
	err := cn.ep.poll(cn.stop, func(wrid uint64, werr error) {
		cn.mu.Lock()
		ch, ok := cn.wcs[wrid]
		delete(cn.wcs, wrid)
		cn.mu.Unlock()
		if ok {
			ch <- werr
		}
		if werr != nil {
			cn.fail(werr)
		}
	})
	if err != nil {
		cn.fail(err)
	}
}

// releaseBatchDelay lets releases gather, and ride on a request frame if
// one is sent meanwhile, before a release frame of their own goes out.
const releaseBatchDelay = 2 * time.Millisecond

// keepAlive is how often an idle connection sends an empty release frame,
// well within weedrdma's default IdleTimeout (5 min).
const keepAlive = 30 * time.Second

func (cn *clientConn) releaseLoop() {
	ka := time.NewTicker(keepAlive)
	defer ka.Stop()
	for {
		select {
		case <-cn.dead:
			return
		case <-ka.C:
			if err := cn.send(frameRelease, encodeRelease(nil)); err != nil {
				cn.fail(err)
				return
			}
			continue
		case <-cn.relKick:
		}
		select {
		case <-cn.dead:
			return
		case <-time.After(releaseBatchDelay):
		}
		if err := cn.sendWith(frameRelease, func() []byte {
			cn.mu.Lock()
			ids := cn.takeReleasesLocked()
			cn.mu.Unlock()
			if len(ids) == 0 {
				return nil
			}
			return encodeRelease(ids)
		}); err != nil {
			cn.fail(err)
			return
		}
	}
}

func (cn *clientConn) takeReleasesLocked() []uint64 {
	n := min(len(cn.releases), maxReleases)
	ids := cn.releases[:n:n]
	cn.releases = cn.releases[n:]
	if len(cn.releases) > 0 {
		select {
		case cn.relKick <- struct{}{}:
		default:
		}
	}
	return ids
}

func (cn *clientConn) release(id uint64) {
	cn.mu.Lock()
	cn.releases = append(cn.releases, id)
	cn.mu.Unlock()
	select {
	case cn.relKick <- struct{}{}:
	default:
	}
}

// request sends req (with pending releases piggybacked) and waits for its
// reply. A reply with a status other than OK is returned as a fallback.
func (cn *clientConn) request(ctx context.Context, req readRequest) (readReply, error) {
	req.ID = cn.c.nextID.Add(1)
	ch := make(chan readReply, 1)
	cn.mu.Lock()
	if cn.failErr != nil {
		cn.mu.Unlock()
		return readReply{}, fallbackf(reasonTransport, true, "connection lost")
	}
	cn.replies[req.ID] = ch
	cn.mu.Unlock()
	if err := cn.sendWith(frameRequest, func() []byte {
		cn.mu.Lock()
		req.Releases = cn.takeReleasesLocked()
		cn.mu.Unlock()
		return req.encode()
	}); err != nil {
		cn.fail(err)
		return readReply{}, &fallback{reason: reasonTransport, sick: true, err: err}
	}
	var rep readReply
	select {
	case rep = <-ch:
	case <-cn.dead:
		return readReply{}, fallbackf(reasonTransport, true, "connection lost: %v", cn.err())
	case <-ctx.Done():
		cn.mu.Lock()
		_, waiting := cn.replies[req.ID]
		delete(cn.replies, req.ID)
		cn.mu.Unlock()
		if !waiting { // the reply raced in: release what it pinned
			if rep := <-ch; rep.Status == statusOK {
				cn.release(rep.ID)
			}
		}
		return readReply{}, fallbackf(reasonTimeout, true, "waiting for the reply: %v", ctx.Err())
	}
	switch rep.Status {
	case statusOK:
		return rep, nil
	case statusNoRange:
		return rep, fallbackf(reasonNoRange, false, "server: %s", rep.Err)
	case statusBusy, statusLimit:
		return rep, fallbackf(reasonBusy, false, "server busy: %d %s", rep.Status, rep.Err)
	case statusTooLarge:
		return rep, fallbackf(reasonTooLarge, false, "server: %s", rep.Err)
	default:
		return rep, fallbackf(reasonServer, false, "server: %d %s", rep.Status, rep.Err)
	}
}

// transfer RDMA-READs the reply's Length bytes through arena slot, releases
// the reply, and returns the bytes with their CRC32C, folded in piece by
// piece as they land. A needle that fits in the slot stays there: the bytes
// returned are the slot's, valid while the caller holds it. A larger one
// moves slot by slot into memory of the client's own.
func (cn *clientConn) transfer(ctx context.Context, rep readReply, slot int) ([]byte, uint32, error) {
	defer cn.release(rep.ID)
	c := cn.c
	off := slot * c.opts.SlotBytes
	mem := c.ar.mem[off : off+c.opts.SlotBytes]
	n := int(rep.Length)
	if n <= len(mem) {
		crc, err := cn.readSlot(ctx, mem[:n], off, rep.Addr, rep.RKey, 0)
		return mem[:n], crc, err
	}
	out := make([]byte, n)
	crc := uint32(0)
	for done := 0; done < n; {
		k := min(len(mem), n-done)
		var err error
		if crc, err = cn.readSlot(ctx, mem[:k], off, rep.Addr+uint64(done), rep.RKey, crc); err != nil {
			return nil, 0, err
		}
		copy(out[done:], mem[:k])
		done += k
	}
	return out, crc, nil
}

// readSlot RDMA-READs len(mem) bytes from raddr/rkey into mem (the arena at
// off) in pieces and returns crc updated with them, each piece folded in as
// soon as its completion arrives, while later pieces are still moving. On
// any failure the connection is failed and readSlot returns only after the
// QP is destroyed, since until then the NIC may still write into the slot.
func (cn *clientConn) readSlot(ctx context.Context, mem []byte, off int, raddr uint64, rkey uint32, crc uint32) (uint32, error) {
	c := cn.c
	piece, count := splitPieces(len(mem), c.opts.crcPieces, cn.ep.maxMessage())
	first := c.nextID.Add(uint64(count)) - uint64(count) + 1
	wcs := make([]chan error, count)
	cn.mu.Lock()
	for i := range wcs {
		wcs[i] = make(chan error, 1) // pollLoop never blocks on a send
		cn.wcs[first+uint64(i)] = wcs[i]
	}
	cn.mu.Unlock()
	posted, err := cn.post(first, off, len(mem), raddr, rkey, piece)
	if err == nil && posted != count {
		err = fmt.Errorf("posted %d work requests, planned %d", posted, count)
	}
	if err != nil {
		cn.mu.Lock()
		for i := range wcs {
			delete(cn.wcs, first+uint64(i))
		}
		cn.mu.Unlock()
		cn.fail(err)
		<-cn.gone
		return 0, &fallback{reason: reasonTransport, sick: true, err: err}
	}
	for i, wc := range wcs {
		select {
		case err := <-wc:
			if err != nil { // pollLoop has failed the connection
				<-cn.gone
				return 0, &fallback{reason: reasonTransport, sick: true, err: err}
			}
		case <-cn.dead:
			<-cn.gone
			return 0, fallbackf(reasonTransport, true, "connection lost during RDMA READ: %v", cn.err())
		case <-ctx.Done():
			// The READ may still land in the slot: kill the QP and wait until
			// it is destroyed before the slot is reused.
			cn.fail(fmt.Errorf("RDMA READ timed out: %w", ctx.Err()))
			<-cn.gone
			return 0, fallbackf(reasonTimeout, true, "RDMA READ: %v", ctx.Err())
		}
		crc = c.opts.crcFunc(crc, mem[i*piece:min((i+1)*piece, len(mem))])
	}
	return crc, nil
}

func (cn *clientConn) post(wrid uint64, off, n int, raddr uint64, rkey uint32, piece int) (int, error) {
	cn.epMu.RLock()
	defer cn.epMu.RUnlock()
	if cn.epClosed {
		return 0, errors.New("queue pair destroyed")
	}
	return cn.ep.postRead(wrid, off, n, raddr, rkey, piece)
}

// fetch asks for the chunk's whole stored needle, RDMA-READs it through
// slot and checks the one CRC32C computed as its bytes landed twice: against
// weedrdma's, which covers the transfer from its memory, and against the
// needle's own from the volume server, which covers everything since the
// volume server read it from disk (weedrdma's fetch, cache and memory, and
// the transfer). Then it decodes the needle exactly as the HTTP path would
// (needle.DecodeVerified, which checks the e_tag MD5 where no CRC was
// there to check) and hands all its logical bytes to use. They may lie in
// the slot, unless keep.
func (cn *clientConn) fetch(ctx context.Context, ch needle.Chunk, slot int, keep bool, use func([]byte)) error {
	c := cn.c
	rep, err := cn.request(ctx, readRequest{FileID: ch.FileID, JWT: c.jwt(ch.FileID)})
	if err != nil {
		return err
	}
	if limit := needle.StoredLimit(ch); int64(rep.Length) > limit {
		cn.release(rep.ID)
		return fallbackf(reasonTooLarge, false, "needle of %d stored bytes, over the %d-byte bound", rep.Length, limit)
	}
	stored, crc, err := cn.transfer(ctx, rep, slot)
	if err != nil {
		return err
	}
	if crc != rep.CRC {
		c.crcFailures.Add(1)
		return fallbackf(reasonCRC, true, "CRC32C %08x, server said %08x", crc, rep.CRC)
	}
	c.fetches.Add(1)
	c.fetchedBytes.Add(uint64(len(stored)))
	if !rep.HasSum {
		c.unchecked.Add(1)
	} else if !needle.CRCSumMatches(crc, rep.NeedleSum) {
		c.needleCRCFailures.Add(1)
		return fallbackf(reasonNeedleCRC, true, "CRC32C %08x of the %d stored bytes differs from the volume server's %08x",
			crc, len(stored), rep.NeedleSum)
	}
	if keep && len(stored) <= c.opts.SlotBytes {
		stored = bytes.Clone(stored) // the slot is reused once this fetch ends
	}
	// verifyETag always: the CRC32Cs above come from the server and
	// catch corruption; only the filer's e_tag catches a forger.
	logical, err := needle.DecodeVerified(ch, stored, rep.Gzip, rep.HasSum, true)
	if err != nil {
		return &fallback{reason: reasonDecode, err: err}
	}
	use(logical)
	return nil
}

func (c *Client) jwt(fid string) string {
	if c.opts.ReadJWT == nil {
		return ""
	}
	return c.opts.ReadJWT(fid)
}
