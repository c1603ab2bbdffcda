package volume

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// Locator finds the volume servers that hold a volume. The filer client
// implements it over LookupVolume with a cache.
//
// Implementations must be safe for concurrent use: every Fetch in flight
// calls Locations, and Invalidate after a round in which all replicas
// failed, from many goroutines at once.
type Locator interface {
	// Locations returns the "host:port" HTTP addresses of the volume
	// servers that hold vid, preferred first.
	Locations(ctx context.Context, vid uint32) ([]string, error)
	// Invalidate drops any cached locations of vid, so that the next
	// Locations asks afresh.
	Invalidate(vid uint32)
}

// Options tunes a Reader. The zero value is usable.
type Options struct {
	// ReadSigningKey is security.toml's jwt.signing.read.key. When set,
	// every request carries "Authorization: Bearer <HS256 JWT {fid, exp}>".
	ReadSigningKey []byte
	// ReadExpiresAfter is jwt.signing.read.expires_after_seconds; zero
	// leaves the exp claim out.
	ReadExpiresAfter time.Duration
	// ReadRetryTime bounds how long a read keeps retrying after its first
	// round of replicas failed, like weed mount's -readRetryTime.
	// Default 6s.
	ReadRetryTime time.Duration
	// StallTimeout is how long one request may go without progress (a
	// connection, response headers, or 64 KiB more of the answer:
	// progressBytes) before it is abandoned and the next replica tried.
	// It bounds stalls rather than whole transfers, so large chunks on a
	// slow link still complete, and a server that trickles its answer
	// still holds no reader for long. Default 5s.
	StallTimeout time.Duration
	// MaxIdleConnsPerHost sizes the keep-alive pool per volume server;
	// it should cover the reads in flight at once. Default 128.
	MaxIdleConnsPerHost int
	// WholeCacheBytes bounds the cache of decoded, verified needles (see
	// Fetch). Default 32 MiB; negative turns it off.
	WholeCacheBytes int64
	// MaxDecodeBytes bounds the memory of needles being read whole and
	// decoded at once (see Reader.decoding). Default 128 MiB.
	MaxDecodeBytes int64
	// VerifyETag checks the MD5 e_tag of every needle read, on top of the
	// server's CRC32C. The CRC32C check is always on and nearly free; the
	// MD5 costs about 1.4 ms of CPU per MiB (roughly 700 MB/s on one
	// core), which is why it is otherwise made only for a reply that
	// carried no CRC32C to check (an old server). weed mount checks
	// neither.
	VerifyETag bool
	// TLS, when set, reads volume servers over https with it (see
	// HTTPSClient.Config, security.toml's [https.client]).
	TLS *tls.Config
}

const (
	defaultReadRetryTime       = 6 * time.Second
	defaultStallTimeout        = 5 * time.Second
	defaultMaxIdleConnsPerHost = 128
	defaultWholeCacheBytes     = 32 << 20

	// firstBackoff is the pause after the first failed round; later
	// pauses grow by half each time, with jitter, until ReadRetryTime.
	firstBackoff = 250 * time.Millisecond
	// maxBackoff caps the pause, so that a read blocked by an outage
	// resumes within about half a second of the server's return (make
	// faults measured 1.1 s after a volume server's restart without the
	// cap, weed mount 0.35 s). Each round costs one request per replica
	// and one location lookup, twice a second at most per chunk.
	maxBackoff = 500 * time.Millisecond
)

// Reader reads chunks from volume servers over HTTP. It is safe for
// concurrent use and starts no goroutines of its own.
type Reader struct {
	loc       Locator
	opts      Options
	transport *http.Transport
	scheme    string // "http://" or "https://"
	client    *http.Client
	// conns makes the GETs over plain HTTP (see connPool); nil with TLS,
	// where every GET goes through client.
	conns *connPool
	box   *penaltyBox
	whole *needle.NeedleCache
	// flight shares one fetch of a needle among the readers of chunks of
	// one size that miss whole at the same time (see needle).
	flight singleflight.Group
	// decoding bounds the heap that needles read whole into memory (to be
	// gunzipped or decrypted, or longer than their chunk) hold at once,
	// across the mount: their stored and logical bytes.
	decoding *semaphore.Weighted

	reads           atomic.Int64
	bytes           atomic.Int64
	failed          atomic.Int64
	retries         atomic.Int64
	replicaFailures atomic.Int64
	corrupt         atomic.Int64
	fetches         atomic.Int64
	fetchedBytes    atomic.Int64
	rangeFetches    atomic.Int64
	rangeBytes      atomic.Int64
}

// New returns a Reader that finds volume servers through loc.
func New(loc Locator, opts Options) *Reader {
	if opts.ReadRetryTime <= 0 {
		opts.ReadRetryTime = defaultReadRetryTime
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = defaultStallTimeout
	}
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = defaultMaxIdleConnsPerHost
	}
	if opts.MaxDecodeBytes <= 0 {
		opts.MaxDecodeBytes = 128 << 20
	}
	switch {
	case opts.WholeCacheBytes == 0:
		opts.WholeCacheBytes = defaultWholeCacheBytes
	case opts.WholeCacheBytes < 0:
		opts.WholeCacheBytes = 0
	}
	transport := &http.Transport{
		// Volume servers sit on the cluster network; an HTTP_PROXY meant
		// for the outside world must not capture them.
		Proxy:               nil,
		DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: opts.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		// Every request asks for gzip itself (see request) and gunzips
		// after checking the stored bytes' CRC; a transport that gunzipped
		// on its own would hide the bytes the CRC covers.
		DisableCompression: true,
		TLSClientConfig:    opts.TLS,
	}
	scheme := "http://"
	var conns *connPool
	if opts.TLS != nil {
		scheme = "https://"
	} else {
		conns = newConnPool(opts.StallTimeout, opts.MaxIdleConnsPerHost)
	}
	return &Reader{
		loc:       loc,
		opts:      opts,
		transport: transport,
		scheme:    scheme,
		client:    &http.Client{Transport: transport},
		conns:     conns,
		box:       newPenaltyBox(),
		whole:     needle.NewNeedleCache(opts.WholeCacheBytes),
		decoding:  semaphore.NewWeighted(opts.MaxDecodeBytes),
	}
}

// Close releases the idle keep-alive connections. Reads may still be made
// afterwards; they open new connections.
func (r *Reader) Close() error {
	r.transport.CloseIdleConnections()
	if r.conns != nil {
		r.conns.closeIdle()
	}
	return nil
}

// Stats are the Reader's counters since New.
type Stats struct {
	// Reads and Errors count Fetch and ReadNeedleChecked calls that
	// succeeded and failed.
	Reads, Errors int64
	// Bytes counts the logical bytes that reads returned.
	Bytes int64
	// Retries counts requests after the first within one read: failovers
	// to another replica and later rounds.
	Retries int64
	// ReplicaFailures counts requests that failed in a way that put the
	// replica in the penalty box (not 404s, not cancellations).
	ReplicaFailures int64
	// Corrupt counts the replies, among ReplicaFailures, whose bytes
	// failed a check (CRC32C, e_tag, AES-GCM, gzip, length, manifest).
	Corrupt int64
	// Fetches and FetchedBytes count the needles received whole and their
	// stored bytes, cache misses all. FetchedBytes over Bytes is the cost
	// of fetching whole needles for partial reads.
	Fetches, FetchedBytes int64
	// RangeFetches and RangeBytes count ranged GETs (Fetch of a Range) and the
	// bytes they brought, which this package could not verify.
	RangeFetches, RangeBytes int64
}

// Stats returns the counters. Each is read atomically; together they are a
// near, not exact, snapshot.
func (r *Reader) Stats() Stats {
	return Stats{
		Reads:           r.reads.Load(),
		Errors:          r.failed.Load(),
		Bytes:           r.bytes.Load(),
		Retries:         r.retries.Load(),
		ReplicaFailures: r.replicaFailures.Load(),
		Corrupt:         r.corrupt.Load(),
		Fetches:         r.fetches.Load(),
		FetchedBytes:    r.fetchedBytes.Load(),
		RangeFetches:    r.rangeFetches.Load(),
		RangeBytes:      r.rangeBytes.Load(),
	}
}

// Fetch fills req.Dsts, in order, with the chunk's logical bytes from
// req.Off and returns how many it wrote: fewer than req.Len() only when the
// chunk ends first, never a gap filled with zeros (a short reply from a
// server is an error). It is safe for concurrent use. A Range request gets
// just its range (see fetchRange).
//
// Any other request, whatever range it asks for, fetches the chunk's whole
// stored needle, since only a whole needle is covered by a checksum (see
// the package doc): one GET without Range, with "Accept-Encoding: gzip" so
// that a compressed needle comes back as stored and its CRC can be checked.
// A plain chunk streams straight from the answer into req.Dsts, the whole
// needle through the checks, and is neither cached here nor shared with
// concurrent readers, since the caller (the block cache, into its slots)
// keeps what it reads and shares fetches itself. Other chunks are decoded
// here (decrypted, gunzipped), their length checked against c.Size (it may
// be longer, see needle.Chunk.Size), and the e_tag checked when the package doc
// says so; such verified needles are kept in a small cache
// (Options.WholeCacheBytes), which later requests read first, and
// concurrent reads of one needle share a single fetch. req.Whole, when not
// nil, also gets the needle's whole logical bytes.
//
// Replicas are tried in the Locator's order, those in the penalty box last;
// a corrupt copy counts as that replica failing. When all fail, the
// volume's locations are invalidated and looked up again for the next
// round, with a growing pause between rounds, until Options.ReadRetryTime
// has passed; the error then names the file id and each replica's failure.
// A 404 from every replica, twice, the second time after a fresh lookup,
// gives an error wrapping fs.ErrNotExist. A cancelled ctx gives an error
// wrapping ctx.Err().
func (r *Reader) Fetch(ctx context.Context, req needle.Request) (int, error) {
	if req.Range {
		return r.fetchRange(ctx, req.Chunk, req.Off, req.Dsts)
	}
	return r.fetchWhole(ctx, req.Chunk, req.Off, req.Dsts, req.Whole)
}

// fetchWhole is Fetch of a request that is not a Range: the whole needle
// is fetched, and teed into whole when that is not nil.
func (r *Reader) fetchWhole(ctx context.Context, c needle.Chunk, off int64, dsts [][]byte, whole needle.NeedleSink) (int, error) {
	total := 0
	for _, d := range dsts {
		total += len(d)
	}
	if err := c.CheckSize(); err != nil {
		r.failed.Add(1)
		return 0, fmt.Errorf("read chunk: %w", err)
	}
	// A key no replica can decrypt with is refused before any request, so
	// that no replica is fetched whole and blamed for it.
	if err := c.CheckCipherKey(); err != nil {
		r.failed.Add(1)
		return 0, fmt.Errorf("read chunk: %w", err)
	}
	vid, _, _, err := needle.ParseFileID(c.FileID)
	if err != nil {
		r.failed.Add(1)
		return 0, fmt.Errorf("read chunk: %w", err)
	}
	if off < 0 || off > c.Size {
		r.failed.Add(1)
		return 0, fmt.Errorf("read chunk %s: offset %d outside its %d bytes", c.FileID, off, c.Size)
	}
	// A sink alone (nothing to keep in memory) streams too.
	if want := min(int64(total), c.Size-off); (want > 0 || whole != nil) && r.streamable(c) {
		dsts = trimPieces(dsts, want)
		if err := r.readRangeInto(ctx, vid, c, off, dsts, whole); err != nil {
			r.failed.Add(1)
			return 0, err
		}
		r.reads.Add(1)
		r.bytes.Add(want)
		return int(want), nil
	}
	data, err := r.needle(ctx, vid, c)
	if err != nil {
		r.failed.Add(1)
		return 0, err
	}
	if whole != nil {
		whole.Reset()
		whole.Write(data)
	}
	end := min(off+int64(total), c.Size)
	needle.Scatter(dsts, data[off:end])
	r.reads.Add(1)
	r.bytes.Add(end - off)
	return int(end - off), nil
}

// streamable reports whether c's needle may be streamed into the caller's
// buffers: plain bytes (neither encrypted nor compressed) that are not
// already in the needle cache.
func (r *Reader) streamable(c needle.Chunk) bool {
	if len(c.CipherKey) > 0 || c.Compressed {
		return false
	}
	_, cached := r.whole.Get(c.Key())
	return !cached
}

// trimPieces returns the leading pieces of dsts that hold n bytes, the
// last one cut short. dsts hold at least n.
func trimPieces(dsts [][]byte, n int64) [][]byte {
	for i, d := range dsts {
		if int64(len(d)) >= n {
			out := dsts[: i+1 : i+1]
			if int64(len(d)) > n {
				out = append(dsts[:i:i], d[:n])
			}
			return out
		}
		n -= int64(len(d))
	}
	return dsts
}

// readRangeInto fetches a plain chunk's needle and keeps its bytes
// [off, off+len(dsts)), which dsts hold in order (the block cache's slots
// for a run of blocks): no buffer, no copy and no cache entry, since the
// caller keeps the bytes. The rest of the needle still streams through the
// checksums, since only the whole needle is covered by them; the block
// cache, which asks for a run, holds (or is fetching) the rest, so keeping
// it would only spend memory. A needle that is not plain bytes of exactly
// the chunk's size (stored gzipped, or longer than its chunk after a
// truncate) is read from the same answer the general way, cached and
// copied. The checks are fetch's.
func (r *Reader) readRangeInto(ctx context.Context, vid uint32, c needle.Chunk, off int64, dsts [][]byte, whole needle.NeedleSink) error {
	return r.withReplicas(ctx, vid, c.FileID, func(ctx context.Context, addr string) error {
		return r.request(ctx, addr, c, "", func(resp *http.Response, body io.Reader) error {
			if resp.StatusCode != http.StatusOK {
				return &statusError{code: resp.StatusCode, status: resp.Status}
			}
			if whole != nil {
				whole.Reset()
			}
			if resp.Header.Get("Content-Encoding") != "" || resp.ContentLength != c.Size {
				logical, err := r.readNeedle(c, resp, body)
				if err != nil {
					return err
				}
				r.whole.Put(c.Key(), logical)
				if whole != nil {
					whole.Write(logical)
				}
				needle.Scatter(dsts, logical[off:]) // needle.DecodeVerified checked its length
				return nil
			}
			crcSum, crcChecked := needle.NeedleCRC(resp.Header.Get("ETag"))
			sum := needleSum{sink: whole}
			if r.opts.VerifyETag || !crcChecked {
				sum.md5 = md5.New()
			}
			// The bytes outside [off, off+len(dsts)) pass through the sums
			// and are dropped; those inside land in dsts and are summed there.
			var kept int64
			for _, dst := range dsts {
				kept += int64(len(dst))
			}
			// A copy of no bytes is skipped: ReadFrom would borrow the
			// sink's buffer (needle.FillWriter) for nothing, and start
			// writing the kept slices before they fill one write.
			if off > 0 {
				if _, err := io.CopyN(&sum, body, off); err != nil {
					return fmt.Errorf("body ended before byte %d: %w", off, unexpectedEOF(err))
				}
			}
			for _, dst := range dsts {
				if got, err := io.ReadFull(body, dst); err != nil {
					return fmt.Errorf("body ended %d bytes into a %d-byte piece: %w", got, len(dst), unexpectedEOF(err))
				}
				sum.writeKept(dst)
			}
			if rest := c.Size - off - kept; rest > 0 {
				if _, err := io.CopyN(&sum, body, rest); err != nil {
					return fmt.Errorf("body ended before byte %d: %w", c.Size, unexpectedEOF(err))
				}
			}
			r.fetches.Add(1)
			r.fetchedBytes.Add(c.Size)
			if crcChecked && !needle.CRCSumMatches(sum.crc, crcSum) {
				return fmt.Errorf("crc32c %08x of the %d stored bytes differs from ETag %s: %w",
					sum.crc, c.Size, resp.Header.Get("ETag"), needle.ErrCorrupt)
			}
			if sum.md5 != nil {
				return needle.CheckETagDigest(c, [md5.Size]byte(sum.md5.Sum(nil)))
			}
			return nil
		})
	})
}

// needleSum sums the bytes written to it: always the CRC32C a volume
// server states for a needle, and the MD5 of a filer e_tag when md5 is set.
// It passes them on to sink, when set, which keeps the whole needle.
type needleSum struct {
	crc  uint32
	md5  hash.Hash
	sink needle.NeedleSink
}

func (s *needleSum) Write(p []byte) (int, error) {
	s.sum(p)
	if s.sink != nil {
		s.sink.Write(p)
	}
	return len(p), nil
}

// sum adds p to the sums.
func (s *needleSum) sum(p []byte) {
	s.crc = needle.CRC32C(s.crc, p)
	if s.md5 != nil {
		s.md5.Write(p)
	}
}

// writeKept is Write for bytes of the request's Dsts, which the sink may
// keep where they lie (see needle.KeptWriter).
func (s *needleSum) writeKept(p []byte) {
	if k, ok := s.sink.(needle.KeptWriter); ok {
		s.sum(p)
		k.WriteKept(p)
		return
	}
	s.Write(p)
}

// ReadFrom writes all of r to s: into the sink's own buffer where it lends
// one (needle.FillWriter), which saves copying every byte of a needle
// fetched for the disk tier alone once more; through a pooled buffer
// otherwise, since io.CopyN would allocate 32 KiB per needle (a twentieth
// of what a shuffled loader's first epoch allocated).
func (s *needleSum) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	if f, ok := s.sink.(needle.FillWriter); ok {
		for {
			room := f.Fill()
			if len(room) == 0 {
				break
			}
			k, err := r.Read(room)
			if k > 0 {
				s.sum(room[:k])
				f.Filled(k)
				n += int64(k)
			}
			if err == io.EOF {
				return n, nil
			}
			if err != nil {
				return n, err
			}
		}
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	for {
		k, err := r.Read(*bp)
		if k > 0 {
			s.Write((*bp)[:k])
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// copyBufs holds *[]byte of 64 KiB for needleSum.ReadFrom.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, 64<<10)
	return &b
}}

// needle returns the verified logical bytes of the chunk's whole needle, at
// least c.Size of them, from the cache or from one fetch shared by every
// concurrent reader of the needle. The slice is shared: it must not be
// written.
//
// The cache is keyed by needle.Chunk.Key: the file id and what changes
// how its bytes decode, so that two entries naming one needle with
// different cipher keys or compression flags never share decoded bytes.
// Size differs between a chunk and its truncated self, which is why the
// whole needle is kept and the length is checked for each caller. The
// flight is keyed by Size too: the shared fetch checks the needle against
// the Size of the chunk that started it (needle.DecodeVerified), and a
// chunk that claims more than its needle holds (bad metadata in one
// file) must not fail, and blame every replica for, a correct read of
// the same needle through another.
func (r *Reader) needle(ctx context.Context, vid uint32, c needle.Chunk) ([]byte, error) {
	data, ok := r.whole.Get(c.Key())
	for !ok {
		flightKey := c.Key() + "#" + strconv.FormatInt(c.Size, 10)
		v, err, _ := r.flight.Do(flightKey, func() (any, error) {
			// The needle's stored and decoded bytes, at most the bound:
			// a needle larger than it runs alone.
			cost := min(2*max(c.Size, 1<<20), r.opts.MaxDecodeBytes)
			if err := r.decoding.Acquire(ctx, cost); err != nil {
				return nil, fmt.Errorf("read chunk %s: %w", c.FileID, err)
			}
			defer r.decoding.Release(cost)
			var fetched []byte
			err := r.withReplicas(ctx, vid, c.FileID, func(ctx context.Context, addr string) error {
				var err error
				fetched, err = r.fetch(ctx, addr, c)
				return err
			})
			if err != nil {
				return nil, err
			}
			r.whole.Put(c.Key(), fetched)
			return fetched, nil
		})
		// The shared fetch ran under the ctx of whichever reader started
		// it. If that reader gave up while this one still wants the
		// bytes, fetch again rather than fail with someone else's
		// cancellation.
		if err != nil && ctx.Err() == nil && isContextError(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		data, ok = v.([]byte), true
	}
	if err := needle.CheckLength(c, data); err != nil {
		return nil, fmt.Errorf("read %w", err)
	}
	return data, nil
}

// ReadNeedleChecked returns the whole logical (decoded) bytes of a needle
// whose length is not known in advance: a manifest blob, whose chunk's Size
// is the span of the file it covers, not the blob's length. c.Size is
// ignored; the blob may be at most needle.MaxNeedle bytes. Fetching, verification,
// replicas and retries are as for Fetch, without the cache.
//
// check, when not nil, validates each replica's blob, for contents that
// the caller can validate and that SeaweedFS may hold no checksum of (the
// filer writes manifest chunks without an e_tag, and an old volume server
// sends no CRC). A blob that fails check counts as that replica's copy
// being corrupt: the next replica is read, and the error, when all fail,
// wraps both check's error and needle.ErrCorrupt. check is called once per replica
// reply, one call at a time, never concurrently; the blob it gets is the
// one returned when it passes. Safe for concurrent use.
func (r *Reader) ReadNeedleChecked(ctx context.Context, c needle.Chunk, check func([]byte) error) ([]byte, error) {
	c.Size = 0 // no length to check: the blob is read to its end
	if err := c.CheckCipherKey(); err != nil {
		r.failed.Add(1)
		return nil, fmt.Errorf("read needle: %w", err)
	}
	vid, _, _, err := needle.ParseFileID(c.FileID)
	if err != nil {
		r.failed.Add(1)
		return nil, fmt.Errorf("read needle: %w", err)
	}
	var data []byte
	err = r.withReplicas(ctx, vid, c.FileID, func(ctx context.Context, addr string) error {
		blob, err := r.fetch(ctx, addr, c)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(blob); err != nil {
				return fmt.Errorf("read needle %s from %s: %w: %w", c.FileID, addr, err, needle.ErrCorrupt)
			}
		}
		data = blob
		return nil
	})
	if err != nil {
		r.failed.Add(1)
		return nil, err
	}
	r.reads.Add(1)
	r.bytes.Add(int64(len(data)))
	return data, nil
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// attemptFunc makes one request for the chunk to the volume server at addr.
type attemptFunc func(ctx context.Context, addr string) error

// withReplicas runs attempt against the volume's replicas until one
// succeeds, in rounds, as Fetch describes.
func (r *Reader) withReplicas(ctx context.Context, vid uint32, fid string, attempt attemptFunc) error {
	start := time.Now()
	deadline := start.Add(r.opts.ReadRetryTime)
	backoff := firstBackoff
	requests := 0
	notFoundRounds := 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read chunk %s: %w", fid, err)
		}
		var errs []error
		allNotFound, allPermanent := false, false
		addrs, err := r.loc.Locations(ctx, vid)
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("read chunk %s: %w", fid, ctx.Err())
		case err != nil:
			errs = append(errs, fmt.Errorf("read chunk %s: look up volume %d: %w", fid, vid, err))
		case len(addrs) == 0:
			errs = append(errs, fmt.Errorf("read chunk %s: volume %d has no locations", fid, vid))
		default:
			allNotFound, allPermanent = true, true
			for _, addr := range r.box.order(addrs, time.Now()) {
				if requests > 0 {
					r.retries.Add(1)
				}
				requests++
				err := attempt(ctx, addr)
				if err == nil {
					r.box.succeed(addr)
					return nil
				}
				if ctx.Err() != nil {
					return fmt.Errorf("read chunk %s: %w", fid, ctx.Err())
				}
				errs = append(errs, err)
				switch {
				case errors.Is(err, fs.ErrNotExist):
					allPermanent = false
				case isPermanent(err):
					allNotFound = false
				default:
					allNotFound, allPermanent = false, false
					r.box.fail(addr, time.Now())
					r.replicaFailures.Add(1)
					if errors.Is(err, needle.ErrCorrupt) {
						r.corrupt.Add(1)
					}
				}
			}
		}
		failed := errors.Join(errs...)
		if allPermanent {
			return failed
		}
		r.loc.Invalidate(vid)
		if allNotFound {
			notFoundRounds++
			if notFoundRounds == 2 {
				return fmt.Errorf("not found on any replica after a fresh lookup: %w", failed)
			}
			// A 404 everywhere may only mean stale locations: look up
			// again at once.
			continue
		}
		notFoundRounds = 0
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return fmt.Errorf("gave up after %d requests in %v: %w", requests, time.Since(start).Round(time.Millisecond), failed)
		}
		pause := min(jitter(backoff), remaining)
		backoff = min(backoff+backoff/2, maxBackoff)
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("read chunk %s: %w", fid, ctx.Err())
		case <-timer.C:
		}
	}
}

// jitter spreads d over [0.8d, 1.2d) so that readers that failed together
// do not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5)
}

// isPermanent reports errors that another try of the same replica would
// repeat and that say nothing about its health: a rejected JWT, a bad
// request. Timeouts, throttling and 5xx are the replica's trouble, and 404s
// are handled apart.
func isPermanent(err error) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.code {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return false
	}
	return se.code >= 400 && se.code < 500
}

// errStalled is the cause given to a request's context when it made no
// progress for StallTimeout.
var errStalled = errors.New("volume server stalled")

// request sends a GET for the whole needle of c (or the range rng) to addr
// and passes the reply to handle: over plain HTTP through connPool, which
// leaves to net/http the answers it does not read; over TLS through
// net/http. The request is abandoned when StallTimeout passes without
// progress: no response headers yet, or no body bytes read since the last.
// handle reads the body through a reader that counts as progress; a
// ranged answer carries only the headers in keptHeaders.
func (r *Reader) request(ctx context.Context, addr string, c needle.Chunk, rng string, handle func(resp *http.Response, body io.Reader) error) error {
	// With gzip accepted the volume server sends a compressed needle as
	// it is stored, marked "Content-Encoding: gzip"; without, it gunzips
	// it first, and the body no longer matches the CRC in its ETag header
	// (weed/server/volume_server_handlers_read.go).
	// A ranged request (rng, an HTTP Range value) asks for logical bytes
	// instead: without gzip accepted, the server decodes a needle it holds
	// gzipped before it cuts the range.
	hdr := make([][2]string, 1, 2)
	if rng == "" {
		hdr[0] = [2]string{"Accept-Encoding", "gzip"}
	} else {
		hdr[0] = [2]string{"Range", rng}
	}
	if auth := needle.Bearer(SignReadJWT(r.opts.ReadSigningKey, c.FileID, r.opts.ReadExpiresAfter)); auth != "" {
		hdr = append(hdr, [2]string{"Authorization", auth})
	}
	if r.conns != nil {
		err := r.conns.get(ctx, addr, needle.GetPath(c.FileID), hdr, handle)
		if !errors.Is(err, errUseHTTP) {
			if err != nil {
				return fmt.Errorf("read chunk %s from %s: %w", c.FileID, addr, err)
			}
			return nil
		}
	}

	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(r.opts.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, r.scheme+addr+needle.GetPath(c.FileID), nil)
	if err != nil {
		return fmt.Errorf("read chunk %s from %s: %w", c.FileID, addr, err)
	}
	for _, h := range hdr {
		req.Header.Set(h[0], h[1])
	}
	resp, err := r.client.Do(req)
	if err == nil {
		stall.Reset(r.opts.StallTimeout)
		err = handle(resp, &progressReader{r: resp.Body, stall: stall, timeout: r.opts.StallTimeout})
		resp.Body.Close()
	}
	if err != nil {
		if context.Cause(rctx) == errStalled && ctx.Err() == nil {
			err = fmt.Errorf("no progress for %v: %w", r.opts.StallTimeout, errStalled)
		}
		return fmt.Errorf("read chunk %s from %s: %w", c.FileID, addr, err)
	}
	return nil
}

// progressReader re-arms the stall timer whenever body bytes arrive.
type progressReader struct {
	r       io.Reader
	stall   *time.Timer
	timeout time.Duration
	since   int64 // bytes since the last progress (progressBytes)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if p.since += int64(n); p.since >= progressBytes {
		p.since = 0
		p.stall.Reset(p.timeout)
	}
	return n, err
}

// fetch reads the whole needle of c from addr and returns its verified
// logical bytes, all of them, at least c.Size: the body's CRC32C is checked
// against the ETag header when there is one, the body is decoded, and the
// e_tag is checked when Options.VerifyETag says so or when there was no CRC
// to check.
func (r *Reader) fetch(ctx context.Context, addr string, c needle.Chunk) ([]byte, error) {
	var logical []byte
	err := r.request(ctx, addr, c, "", func(resp *http.Response, body io.Reader) error {
		if resp.StatusCode != http.StatusOK {
			return &statusError{code: resp.StatusCode, status: resp.Status}
		}
		var err error
		logical, err = r.readNeedle(c, resp, body)
		return err
	})
	return logical, err
}

// readNeedle reads a 200 answer's whole stored needle, checks it and
// decodes it to its logical bytes.
func (r *Reader) readNeedle(c needle.Chunk, resp *http.Response, body io.Reader) ([]byte, error) {
	gzipEncoded, err := needle.ContentGzip(resp.Header.Get("Content-Encoding"))
	if err != nil {
		return nil, err
	}
	stored, err := readStored(resp, body, needle.StoredLimit(c))
	if err != nil {
		return nil, err
	}
	r.fetches.Add(1)
	r.fetchedBytes.Add(int64(len(stored)))
	_, crcChecked, err := needle.CheckStoredCRC(resp.Header.Get("ETag"), needle.CRC32C(0, stored), len(stored))
	if err != nil {
		return nil, err
	}
	return needle.DecodeVerified(c, stored, gzipEncoded, crcChecked, r.opts.VerifyETag)
}

// readStored reads a whole body of at most limit bytes.
func readStored(resp *http.Response, body io.Reader, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("stored needle of %d bytes, over the %d-byte bound: %w", resp.ContentLength, limit, needle.ErrCorrupt)
	}
	if resp.ContentLength >= 0 {
		stored := make([]byte, resp.ContentLength)
		if got, err := io.ReadFull(body, stored); err != nil {
			return nil, fmt.Errorf("body ended after %d of %d bytes: %w", got, len(stored), unexpectedEOF(err))
		}
		return stored, nil
	}
	stored, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(stored)) > limit {
		return nil, fmt.Errorf("stored needle over the %d-byte bound: %w", limit, needle.ErrCorrupt)
	}
	return stored, nil
}

// unexpectedEOF turns a clean EOF in the middle of a body into
// io.ErrUnexpectedEOF, which is what it means there.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
