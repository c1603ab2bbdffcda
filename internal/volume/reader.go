package volume

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Locator finds the volume servers that hold a volume. The filer client
// implements it over LookupVolume with a cache.
//
// Implementations must be safe for concurrent use: every ReadChunk in flight
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
	// connection, response headers, or more body bytes) before it is
	// abandoned and the next replica tried. It bounds stalls rather than
	// whole transfers, so large chunks on a slow link still complete.
	// Default 5s.
	StallTimeout time.Duration
	// MaxIdleConnsPerHost sizes the keep-alive pool per volume server;
	// it should cover the reads in flight at once. Default 128.
	MaxIdleConnsPerHost int
	// WholeCacheBytes bounds the cache of decoded encrypted chunks (see
	// ReadChunk). Default 32 MiB; negative turns it off.
	WholeCacheBytes int64
	// SkipETagCheck turns off the MD5 check of whole-chunk reads of plain
	// and compressed chunks, which weed mount does not make and which
	// costs about 1.4 ms of CPU per MiB (roughly 700 MB/s on one core).
	// Encrypted chunks are authenticated by AES-GCM regardless, and
	// Decode always checks.
	SkipETagCheck bool
}

const (
	defaultReadRetryTime       = 6 * time.Second
	defaultStallTimeout        = 5 * time.Second
	defaultMaxIdleConnsPerHost = 128
	defaultWholeCacheBytes     = 32 << 20

	// firstBackoff is the pause after the first failed round; later
	// pauses grow by half each time, with jitter, until ReadRetryTime.
	firstBackoff = 250 * time.Millisecond
)

// Reader reads chunks from volume servers over HTTP. It is safe for
// concurrent use and starts no goroutines of its own.
type Reader struct {
	loc       Locator
	opts      Options
	transport *http.Transport
	client    *http.Client
	box       *penaltyBox
	whole     *wholeCache
	flight    singleflight.Group

	reads           atomic.Int64
	bytes           atomic.Int64
	failed          atomic.Int64
	retries         atomic.Int64
	replicaFailures atomic.Int64
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
		// Every request says Accept-Encoding: identity itself (see
		// request); this also stops the transport from adding gzip.
		DisableCompression: true,
	}
	return &Reader{
		loc:       loc,
		opts:      opts,
		transport: transport,
		client:    &http.Client{Transport: transport},
		box:       newPenaltyBox(),
		whole:     newWholeCache(opts.WholeCacheBytes),
	}
}

// Close releases the idle keep-alive connections. Reads may still be made
// afterwards; they open new connections.
func (r *Reader) Close() error {
	r.transport.CloseIdleConnections()
	return nil
}

// Stats are the Reader's counters since New.
type Stats struct {
	// Reads and Errors count ReadChunk calls that succeeded and failed.
	Reads, Errors int64
	// Bytes counts the logical bytes that reads returned.
	Bytes int64
	// Retries counts requests after the first within one ReadChunk:
	// failovers to another replica and later rounds.
	Retries int64
	// ReplicaFailures counts requests that failed in a way that put the
	// replica in the penalty box (not 404s, not cancellations).
	ReplicaFailures int64
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
	}
}

// ReadChunk fills dst with the chunk's logical bytes [off, off+len(dst)). It
// returns n < len(dst) only when the chunk ends first, with n =
// min(len(dst), c.Size-off), and never fills a gap with zeros: a short reply
// from a server is an error. It is safe for concurrent use.
//
// How each kind of chunk is read:
//   - Plain and Compressed: a GET with Range and "Accept-Encoding: identity",
//     read straight into dst. The volume server gunzips a compressed
//     needle for a client that does not accept gzip and applies the Range
//     to the gunzipped bytes (weed/server/volume_server_handlers_read.go,
//     GetOrHeadHandler; compressed needles never take the streaming path,
//     weed/storage/volume_read.go). Had the request accepted gzip, the
//     Range would have cut the compressed bytes instead. A weed 4.48
//     server answers "Content-Range: bytes 100000-100099/526712" in
//     logical bytes for a 102549-byte gzipped needle, and the total is
//     checked against Size. weed itself reads partial chunk views this way
//     (util/http ReadUrlAsStream). A read of the whole chunk verifies the
//     ETag.
//   - Encrypted (CipherKey): the whole needle is fetched and handed to
//     Decode, which is the only way to open AES-GCM; weed's
//     readEncryptedUrl does the same. Decoded chunks are kept in a small
//     cache (Options.WholeCacheBytes), and concurrent reads of one chunk
//     share a single fetch.
//
// Replicas are tried in the Locator's order, those in the penalty box last.
// When all fail, the volume's locations are invalidated and looked up again
// for the next round, with a growing pause between rounds, until
// Options.ReadRetryTime has passed; the error then names the file id and
// each replica's failure. A 404 from every replica, twice, the second time
// after a fresh lookup, gives an error wrapping fs.ErrNotExist. A
// cancelled ctx gives an error wrapping ctx.Err().
func (r *Reader) ReadChunk(ctx context.Context, c Chunk, off int64, dst []byte) (int, error) {
	n, err := r.readChunk(ctx, c, off, dst)
	if err != nil {
		r.failed.Add(1)
		return 0, err
	}
	r.reads.Add(1)
	r.bytes.Add(int64(n))
	return n, nil
}

func (r *Reader) readChunk(ctx context.Context, c Chunk, off int64, dst []byte) (int, error) {
	if off < 0 || off > c.Size {
		return 0, fmt.Errorf("read chunk %s: offset %d outside its %d bytes", c.FileID, off, c.Size)
	}
	n := int(min(int64(len(dst)), c.Size-off))
	if n == 0 {
		return 0, nil
	}
	dst = dst[:n]
	vid, _, _, err := ParseFileID(c.FileID)
	if err != nil {
		return 0, fmt.Errorf("read chunk: %w", err)
	}
	if len(c.CipherKey) > 0 {
		data, err := r.decoded(ctx, vid, c)
		if err != nil {
			return 0, err
		}
		return copy(dst, data[off:]), nil
	}
	err = r.withReplicas(ctx, vid, c.FileID, func(ctx context.Context, addr string) error {
		return r.readRange(ctx, addr, c, off, dst)
	})
	return n, err
}

// MaxNeedle bounds a needle read whole without a known size.
const MaxNeedle = 64 << 20

// ReadNeedle returns the whole logical (decoded) bytes of a needle whose
// length is not known in advance: a manifest blob, whose chunk's Size is the
// span of the file it covers, not the blob's length. c.Size is ignored; the
// blob may be at most MaxNeedle bytes. Replicas and retries are as for
// ReadChunk. Safe for concurrent use.
func (r *Reader) ReadNeedle(ctx context.Context, c Chunk) ([]byte, error) {
	c.Size = -1
	vid, _, _, err := ParseFileID(c.FileID)
	if err != nil {
		return nil, fmt.Errorf("read needle: %w", err)
	}
	var data []byte
	err = r.withReplicas(ctx, vid, c.FileID, func(ctx context.Context, addr string) error {
		stored, err := r.readStored(ctx, addr, c)
		if err != nil {
			return err
		}
		if data, err = Decode(c, stored); err != nil {
			return fmt.Errorf("from %s: %w", addr, err)
		}
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

// decoded returns the logical bytes of a whole encrypted chunk, from the
// cache or from one fetch shared by every concurrent reader of the chunk.
func (r *Reader) decoded(ctx context.Context, vid uint32, c Chunk) ([]byte, error) {
	if data, ok := r.whole.get(c.FileID); ok {
		return data, nil
	}
	for {
		v, err, _ := r.flight.Do(c.FileID, func() (any, error) {
			var data []byte
			err := r.withReplicas(ctx, vid, c.FileID, func(ctx context.Context, addr string) error {
				stored, err := r.readStored(ctx, addr, c)
				if err != nil {
					return err
				}
				if data, err = Decode(c, stored); err != nil {
					return fmt.Errorf("from %s: %w", addr, err)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			r.whole.put(c.FileID, data)
			return data, nil
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
		return v.([]byte), nil
	}
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// attemptFunc makes one request for the chunk to the volume server at addr.
type attemptFunc func(ctx context.Context, addr string) error

// withReplicas runs attempt against the volume's replicas until one
// succeeds, in rounds, as ReadChunk describes.
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
		backoff += backoff / 2
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

// statusError is a volume server's reply with an unexpected HTTP status.
type statusError struct {
	code   int
	status string
}

func (e *statusError) Error() string { return "HTTP " + e.status }

// Is makes a 404 match fs.ErrNotExist.
func (e *statusError) Is(target error) bool {
	return target == fs.ErrNotExist && e.code == http.StatusNotFound
}

// isPermanent reports errors that another try of the same replica would
// repeat and that say nothing about its health: a rejected JWT, a range
// outside the needle, a bad request. Timeouts, throttling and 5xx are the
// replica's trouble, and 404s are handled apart.
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

// request sends a GET for the chunk to addr and passes the reply to handle.
// The request is abandoned when StallTimeout passes without progress: no
// response headers yet, or no body bytes read since the last. handle reads
// the body through a reader that counts as progress.
func (r *Reader) request(ctx context.Context, addr string, c Chunk, rangeHeader string, handle func(resp *http.Response, body io.Reader) error) error {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(r.opts.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	// readDeleted=true as weed mount sends it: a file being read may have
	// been overwritten, and its old needles stay readable until vacuum.
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+addr+"/"+c.FileID+"?readDeleted=true", nil)
	if err != nil {
		return fmt.Errorf("read chunk %s from %s: %w", c.FileID, addr, err)
	}
	// Without gzip in Accept-Encoding the volume server never sends gzip:
	// it gunzips compressed needles itself, before applying any Range.
	// "identity" says so explicitly; no Accept-Encoding at all would
	// formally allow any coding.
	req.Header.Set("Accept-Encoding", "identity")
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	if token := SignReadJWT(r.opts.ReadSigningKey, c.FileID, r.opts.ReadExpiresAfter); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
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
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.stall.Reset(p.timeout)
	}
	return n, err
}

// readRange reads the chunk's logical bytes [off, off+len(dst)) from addr
// straight into dst.
func (r *Reader) readRange(ctx context.Context, addr string, c Chunk, off int64, dst []byte) error {
	end := off + int64(len(dst)) - 1
	rangeHeader := "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(end, 10)
	return r.request(ctx, addr, c, rangeHeader, func(resp *http.Response, body io.Reader) error {
		if err := checkEncoding(resp); err != nil {
			return err
		}
		switch resp.StatusCode {
		case http.StatusPartialContent:
			start, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
			if !ok || start != off || last != end {
				return fmt.Errorf("asked for bytes %d-%d, got Content-Range %q: %w", off, end, resp.Header.Get("Content-Range"), ErrCorrupt)
			}
			if total >= 0 && total != c.Size {
				return fmt.Errorf("server holds %d bytes, chunk has %d: %w", total, c.Size, ErrCorrupt)
			}
		case http.StatusOK:
			// The whole needle came back despite the Range: skip to off.
			if resp.ContentLength >= 0 && resp.ContentLength != c.Size {
				return fmt.Errorf("server holds %d bytes, chunk has %d: %w", resp.ContentLength, c.Size, ErrCorrupt)
			}
			if skipped, err := io.CopyN(io.Discard, body, off); err != nil {
				return fmt.Errorf("body ended after %d bytes, before offset %d: %w", skipped, off, unexpectedEOF(err))
			}
		default:
			return &statusError{code: resp.StatusCode, status: resp.Status}
		}
		if got, err := io.ReadFull(body, dst); err != nil {
			return fmt.Errorf("body ended after %d of %d bytes: %w", got, len(dst), unexpectedEOF(err))
		}
		if off == 0 && int64(len(dst)) == c.Size && !r.opts.SkipETagCheck {
			if want, ok := etagMD5(c.ETag); ok && md5.Sum(dst) != want {
				return fmt.Errorf("md5 differs from e_tag %s: %w", c.ETag, ErrCorrupt)
			}
		}
		return nil
	})
}

// readStored fetches the whole stored needle from addr, as bytes to Decode.
func (r *Reader) readStored(ctx context.Context, addr string, c Chunk) ([]byte, error) {
	var stored []byte
	err := r.request(ctx, addr, c, "", func(resp *http.Response, body io.Reader) error {
		if err := checkEncoding(resp); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return &statusError{code: resp.StatusCode, status: resp.Status}
		}
		// Sealing adds 28 bytes and gzip was kept only where it saved
		// space, so a stored needle much larger than the chunk is wrong;
		// the bound keeps a bad reply from exhausting memory.
		limit := c.Size + c.Size/8 + 64<<10
		if c.Size < 0 {
			limit = MaxNeedle
		}
		if resp.ContentLength > limit {
			return fmt.Errorf("stored needle of %d bytes for a %d-byte chunk: %w", resp.ContentLength, c.Size, ErrCorrupt)
		}
		if resp.ContentLength >= 0 {
			stored = make([]byte, resp.ContentLength)
			if got, err := io.ReadFull(body, stored); err != nil {
				return fmt.Errorf("body ended after %d of %d bytes: %w", got, len(stored), unexpectedEOF(err))
			}
			return nil
		}
		var err error
		stored, err = io.ReadAll(io.LimitReader(body, limit+1))
		if err == nil && int64(len(stored)) > limit {
			err = fmt.Errorf("stored needle over %d bytes for a %d-byte chunk: %w", limit, c.Size, ErrCorrupt)
		}
		return err
	})
	return stored, err
}

// checkEncoding rejects a body in any content coding: the request asked for
// identity, and coded bytes must never pass for chunk bytes.
func checkEncoding(resp *http.Response) error {
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("unrequested Content-Encoding %q: %w", ce, ErrCorrupt)
	}
	return nil
}

// unexpectedEOF turns a clean EOF in the middle of a body into
// io.ErrUnexpectedEOF, which is what it means there.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseContentRange parses "bytes first-last/total"; total is -1 for "*".
func parseContentRange(s string) (first, last, total int64, ok bool) {
	spec, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, size, found := strings.Cut(spec, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || first < 0 || last < first {
		return 0, 0, 0, false
	}
	total = -1
	if size != "*" {
		t, err := strconv.ParseInt(size, 10, 64)
		if err != nil || t <= last {
			return 0, 0, 0, false
		}
		total = t
	}
	return first, last, total, true
}
