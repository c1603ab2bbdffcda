package rdma

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
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

func (c *Client) jwt(fid string) string {
	if c.opts.ReadJWT == nil {
		return ""
	}
	return c.opts.ReadJWT(fid)
}
