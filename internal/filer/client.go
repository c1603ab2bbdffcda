// Package filer is weedfuse's gRPC client for the SeaweedFS filer: entry
// look-ups, streamed directory listings, volume locations (cached in front of
// LookupVolume), statistics and metadata subscriptions. It speaks the wire
// protocol of internal/filerpb and fails over between several filers.
//
// A missing entry is reported as an error wrapping io/fs.ErrNotExist, so that
// callers can test for it without importing this package.
package filer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// Options configure a Client.
type Options struct {
	// Addresses are the filers in weed's forms: "host:port" (gRPC on
	// port+10000) or "host:port.grpcPort". At least one is needed.
	Addresses []string
	// DialTimeout bounds the start-up probe of each filer. Default 5s.
	DialTimeout time.Duration
	// VolumeTTL is how long a volume's locations are cached. Default 10m.
	VolumeTTL time.Duration
	// DataCenter, when set, puts volume servers of that data center first.
	DataCenter string
	// PublicURL makes Locations return the servers' public URLs
	// (weed mount's -volumeServerAccess=publicUrl).
	PublicURL bool
	// ClientName identifies this mount in metadata subscriptions.
	ClientName string
	// ReadyWait bounds how long a call waits for a filer's connection to
	// come back before it fails with ErrUnavailable. Default 3s.
	ReadyWait time.Duration
	// TLS, when set, dials the filers' gRPC with it (mutual TLS from
	// security.toml's [grpc.client] and [grpc] ca); nil dials plaintext.
	TLS *tls.Config
	// Space says which volumes Statistics sizes, as weed mount's
	// -collection, -replication, -ttl and -disk do for df.
	Space Space
}

// Space selects the volumes whose space Statistics reports: those of a
// collection, replication, TTL and disk type ("" and 0: any).
type Space struct {
	Collection, Replication, DiskType string
	TTLSec                            int
}

// ErrUnavailable is wrapped by the errors of calls that found no filer
// reachable within ReadyWait: what the caller cached is all there is.
var ErrUnavailable = errors.New("filer unavailable")

// reconnect is how a filer's connection comes back after it broke: a
// retry within at most 0.5 s, however long the outage (gRPC's default
// backs off to 2 min), so that a restarted filer serves again within about
// half a second (make faults measured 0.8 s with a 2 s bound, weed mount
// a few ms). A dial attempt to a dead filer costs little.
var reconnect = grpc.ConnectParams{
	Backoff: backoff.Config{
		BaseDelay:  250 * time.Millisecond,
		Multiplier: 1.6,
		Jitter:     0.2,
		MaxDelay:   500 * time.Millisecond,
	},
	MinConnectTimeout: 2 * time.Second,
}

// Address is one filer: its HTTP and its gRPC address.
type Address struct {
	HTTP string
	GRPC string
}

// ParseAddress reads weed's filer address forms: "host:port", whose gRPC
// port is port+10000, and "host:port.grpcPort".
func ParseAddress(s string) (Address, error) {
	host, port, err := net.SplitHostPort(strings.TrimSpace(s))
	if err != nil {
		return Address{}, fmt.Errorf("filer address %q: %w", s, err)
	}
	httpPort, grpcPort, hasGRPC := strings.Cut(port, ".")
	hp, err := strconv.Atoi(httpPort)
	if err != nil || hp <= 0 || hp > 65535 {
		return Address{}, fmt.Errorf("filer address %q: bad port %q", s, httpPort)
	}
	gp := hp + 10000
	if hasGRPC {
		gp, err = strconv.Atoi(grpcPort)
		if err != nil || gp <= 0 || gp > 65535 {
			return Address{}, fmt.Errorf("filer address %q: bad gRPC port %q", s, grpcPort)
		}
	}
	if gp > 65535 {
		return Address{}, fmt.Errorf("filer address %q: gRPC port %d out of range; give it as host:port.grpcPort", s, gp)
	}
	return Address{
		HTTP: net.JoinHostPort(host, strconv.Itoa(hp)),
		GRPC: net.JoinHostPort(host, strconv.Itoa(gp)),
	}, nil
}

// Client talks to one or more filers. All methods are safe for concurrent use.
type Client struct {
	opts  Options
	addrs []Address
	conns []*grpc.ClientConn
	// cur is the index of the filer that last answered; calls start there.
	cur atomic.Int32
	// down is set when a call found no filer reachable, and cleared when
	// one answers.
	down atomic.Bool

	volMu sync.Mutex
	// vols caches LookupVolume answers by volume id.
	vols map[uint32]volEntry
}

type volEntry struct {
	addrs   []string
	expires time.Time
}

// maxMsgSize lets an entry with hundreds of thousands of chunks through.
const maxMsgSize = 1 << 30

// New connects to the filers and fetches the filer configuration from the
// first one that answers. It fails within about DialTimeout per filer when
// none is reachable, rather than waiting forever as gRPC would; the error
// wraps ErrUnavailable when none answered at all, so that a caller may try
// again later.
func New(ctx context.Context, opts Options) (*Client, error) {
	if len(opts.Addresses) == 0 {
		return nil, errors.New("no filer address given")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.VolumeTTL <= 0 {
		opts.VolumeTTL = 10 * time.Minute
	}
	if opts.ClientName == "" {
		opts.ClientName = "weedfuse"
	}
	if opts.ReadyWait <= 0 {
		opts.ReadyWait = 3 * time.Second
	}
	c := &Client{opts: opts, vols: make(map[uint32]volEntry)}
	for _, s := range opts.Addresses {
		a, err := ParseAddress(s)
		if err != nil {
			return nil, err
		}
		creds := insecure.NewCredentials()
		if opts.TLS != nil {
			creds = credentials.NewTLS(opts.TLS)
		}
		conn, err := grpc.NewClient(a.GRPC,
			grpc.WithTransportCredentials(creds),
			grpc.WithConnectParams(reconnect),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("filer %s: %w", s, err)
		}
		c.addrs = append(c.addrs, a)
		c.conns = append(c.conns, conn)
	}
	var errs []string
	down := true // every filer refused or did not answer in time
	for i := range c.conns {
		pctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
		// Without WaitForReady a refused connection fails at once, while a
		// filer that is slow to accept still gets DialTimeout.
		_, err := filerpb.NewSeaweedFilerClient(c.conns[i]).GetFilerConfiguration(pctx,
			&filerpb.GetFilerConfigurationRequest{})
		cancel()
		if err == nil {
			c.cur.Store(int32(i))
			return c, nil
		}
		errs = append(errs, fmt.Sprintf("%s (gRPC %s): %s", c.addrs[i].HTTP, c.addrs[i].GRPC, status.Convert(err).Message()))
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			down = false // it answered, as something else (a master's port, TLS refused)
		}
	}
	c.Close()
	// One line, so that a failed start says why in one line. Where no
	// filer answered at all, the error wraps ErrUnavailable: one starting
	// or restarting may answer later (weed mount waits for it).
	msg := strings.Join(errs, "; ")
	if down && ctx.Err() == nil {
		return nil, fmt.Errorf("no filer reachable: %s: %w", msg, ErrUnavailable)
	}
	return nil, fmt.Errorf("no filer reachable: %s", msg)
}

// Close releases the connections.
func (c *Client) Close() {
	for _, conn := range c.conns {
		conn.Close()
	}
}

// Addresses are the filers, in the order given.
func (c *Client) Addresses() []Address { return c.addrs }

// Current is the filer the client talks to now: the first that answered,
// or the one it failed over to since.
func (c *Client) Current() Address { return c.addrs[int(c.cur.Load())%len(c.addrs)] }

// retryable tells whether another filer may do better.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

// refused tells whether the filer refused the call to this client, which
// the mount reports as EACCES, not as an I/O error.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// Up tells whether the filers are thought reachable: false from a call
// that found none until one answers again, or a connection is back.
func (c *Client) Up() bool {
	if !c.down.Load() {
		return true
	}
	for _, conn := range c.conns {
		if conn.GetState() == connectivity.Ready {
			return true
		}
	}
	return false
}

// readyPoll is how often waitReady looks at the connections' states.
const readyPoll = 50 * time.Millisecond

// waitReady waits, up to ReadyWait, for a filer's connection to be up, and
// returns its index. A broken connection may rest idle; it is asked to
// connect again.
func (c *Client) waitReady(ctx context.Context, until time.Time) (int, error) {
	deadline := time.NewTimer(time.Until(until))
	defer deadline.Stop()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		for i, conn := range c.conns {
			switch conn.GetState() {
			case connectivity.Ready:
				return i, nil
			case connectivity.Idle:
				conn.Connect()
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-deadline.C:
			return 0, fmt.Errorf("%w: no connection within %v", ErrUnavailable, c.opts.ReadyWait)
		case <-tick.C:
		}
	}
}

// gone tells whether err says that a filer could not be reached.
func gone(err error) bool {
	return errors.Is(err, ErrUnavailable) || status.Code(err) == codes.Unavailable
}

// call runs fn against the current filer and fails over to the others on
// transport errors. The filer that answers becomes the current one. When
// none can be reached, the call waits up to ReadyWait for one to come back
// and tries it; then it fails with an error wrapping ErrUnavailable.
func (c *Client) call(ctx context.Context, fn func(filerpb.SeaweedFilerClient) error) error {
	start := int(c.cur.Load())
	try := func(idx int) (done bool, err error) {
		err = fn(filerpb.NewSeaweedFilerClient(c.conns[idx]))
		switch {
		case err == nil:
			c.cur.Store(int32(idx))
			c.down.Store(false)
			return true, nil
		case ctx.Err() != nil:
			// gRPC reports a cancelled call as codes.Canceled, which
			// errors.Is does not see as context.Canceled.
			return true, fmt.Errorf("%w: %w", ctx.Err(), err)
		case refused(err):
			return true, fmt.Errorf("%w: %w", iofs.ErrPermission, err)
		case !retryable(err):
			return true, err
		}
		return false, err
	}
	var err error
	for i := 0; i < len(c.conns); i++ {
		var done bool
		if done, err = try((start + i) % len(c.conns)); done {
			return err
		}
	}
	if !gone(err) {
		return err // busy, not gone
	}
	c.down.Store(true)
	// A connection may still look ready for a moment after its filer died;
	// a call that fails on it waits again, until ReadyWait has passed.
	until := time.Now().Add(c.opts.ReadyWait)
	for {
		idx, werr := c.waitReady(ctx, until)
		if werr != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			return fmt.Errorf("%w: %w", werr, err)
		}
		if _, err = try(idx); err == nil || !gone(err) {
			return err
		}
		if !time.Now().Before(until) {
			if !errors.Is(err, ErrUnavailable) {
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		case <-time.After(readyPoll):
		}
	}
}

// LookupEntry returns the entry dir/name. A missing entry is an error
// wrapping io/fs.ErrNotExist.
func (c *Client) LookupEntry(ctx context.Context, dir, name string) (*filerpb.Entry, error) {
	var entry *filerpb.Entry
	err := c.call(ctx, func(fc filerpb.SeaweedFilerClient) error {
		resp, err := fc.LookupDirectoryEntry(ctx, &filerpb.LookupDirectoryEntryRequest{Directory: dir, Name: name})
		if err != nil {
			return err
		}
		entry = resp.GetEntry()
		return nil
	})
	if err != nil {
		// The filer reports a missing entry as an error whose text names
		// filer_pb.ErrNotFound ("no entry is found in filer store").
		if status.Code(err) == codes.NotFound || strings.Contains(err.Error(), "no entry is found") {
			return nil, fmt.Errorf("lookup %s/%s: %w", dir, name, iofs.ErrNotExist)
		}
		return nil, fmt.Errorf("lookup %s/%s: %w", dir, name, err)
	}
	if entry == nil {
		return nil, fmt.Errorf("lookup %s/%s: %w", dir, name, iofs.ErrNotExist)
	}
	return entry, nil
}

// List calls fn with each of up to limit (> 0) entries of dir that sort
// after startFrom (all from the start when startFrom is empty), in the
// filer's name order, as they stream in, from the calling goroutine. A
// call retried on another filer, or on the same one once it is back,
// resumes after the last entry fn got, so fn sees each entry once however
// the call ends.
func (c *Client) List(ctx context.Context, dir, startFrom string, limit int, fn func(*filerpb.Entry)) error {
	from, left := startFrom, limit
	err := c.call(ctx, func(fc filerpb.SeaweedFilerClient) error {
		if left <= 0 {
			return nil // a retry after the last entry came
		}
		stream, err := fc.ListEntries(ctx, &filerpb.ListEntriesRequest{
			Directory: dir, StartFromFileName: from, Limit: uint32(left),
		})
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if err == io.EOF || (err != nil && left == 0) {
				// Every entry asked for came: a stream broken after the
				// last is no reason to fail, nor to wait for a filer.
				return nil
			}
			if err != nil {
				return err
			}
			if e := resp.GetEntry(); e != nil {
				from, left = e.GetName(), left-1
				fn(e)
			}
		}
	})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return fmt.Errorf("list %s: %w", dir, iofs.ErrNotExist)
		}
		return fmt.Errorf("list %s: %w", dir, err)
	}
	return nil
}

// Locations returns the HTTP addresses of the volume servers holding
// volume vid, preferred first. Answers are cached for VolumeTTL. When the
// filer lists none for a volume it listed before, the last addresses known
// are the answer.
func (c *Client) Locations(ctx context.Context, vid uint32) ([]string, error) {
	now := time.Now()
	c.volMu.Lock()
	v, ok := c.vols[vid]
	c.volMu.Unlock()
	if ok && now.Before(v.expires) {
		return v.addrs, nil
	}
	key := strconv.FormatUint(uint64(vid), 10)
	var locs []*filerpb.Location
	err := c.call(ctx, func(fc filerpb.SeaweedFilerClient) error {
		resp, err := fc.LookupVolume(ctx, &filerpb.LookupVolumeRequest{VolumeIds: []string{key}})
		if err != nil {
			return err
		}
		locs = resp.GetLocationsMap()[key].GetLocations()
		return nil
	})
	if err != nil {
		if ok && errors.Is(err, ErrUnavailable) {
			// Expired, but better than nothing while no filer answers:
			// a volume rarely moves, and a wrong guess fails over.
			return v.addrs, nil
		}
		return nil, fmt.Errorf("lookup volume %d: %w", vid, err)
	}
	if len(locs) == 0 {
		if ok && len(v.addrs) > 0 {
			// Listed nowhere, as while its only server restarts: the
			// server listens again before its heartbeat tells the
			// master its volumes, so the last addresses known are
			// worth a try (the reader's retries bound it, and ask
			// again each round). make faults: reads resumed 1.1 and
			// 1.8 s after a volume server's restart without this, 0.38
			// and 0.68 s with it (weed mount 0.55 and 0.56 s).
			return v.addrs, nil
		}
		// Not ErrNotExist: the file exists, its volume is down or moving.
		return nil, fmt.Errorf("lookup volume %d: no locations", vid)
	}
	addrs := make([]string, 0, len(locs))
	for pass := 0; pass < 2; pass++ {
		for _, l := range locs {
			local := c.opts.DataCenter == "" || l.DataCenter == c.opts.DataCenter
			if local != (pass == 0) {
				continue
			}
			u := l.Url
			if c.opts.PublicURL && l.PublicUrl != "" {
				u = l.PublicUrl
			}
			addrs = append(addrs, u)
		}
	}
	c.volMu.Lock()
	c.vols[vid] = volEntry{addrs: addrs, expires: now.Add(c.opts.VolumeTTL)}
	c.volMu.Unlock()
	return addrs, nil
}

// Invalidate makes the cached locations of vid stale, so that the next
// Locations asks the filer again; they are kept for when it lists none.
func (c *Client) Invalidate(vid uint32) {
	c.volMu.Lock()
	if v, ok := c.vols[vid]; ok {
		v.expires = time.Time{}
		c.vols[vid] = v
	}
	c.volMu.Unlock()
}

// Statistics reports the total and used bytes and the file count of the
// volumes Options.Space selects.
func (c *Client) Statistics(ctx context.Context) (*filerpb.StatisticsResponse, error) {
	req := &filerpb.StatisticsRequest{
		Collection:  c.opts.Space.Collection,
		Replication: c.opts.Space.Replication,
		DiskType:    c.opts.Space.DiskType,
	}
	// weed mount asks with its -ttl in seconds, "0s" when it has none.
	req.Ttl = strconv.Itoa(c.opts.Space.TTLSec) + "s"
	var resp *filerpb.StatisticsResponse
	err := c.call(ctx, func(fc filerpb.SeaweedFilerClient) error {
		var err error
		resp, err = fc.Statistics(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("statistics: %w", err)
	}
	return resp, nil
}

// Subscribe streams metadata events under prefix from sinceNs on, calling
// fn for each, until ctx ends, the stream breaks or fn returns an error. The
// caller reconnects; the last event's TsNs is where to resume. opened, when
// not nil, is called once the call is made on a ready connection, before
// any event: a filer that refuses it fails the stream's first receive.
func (c *Client) Subscribe(ctx context.Context, prefix string, sinceNs int64, opened func(), fn func(*filerpb.SubscribeMetadataResponse) error) error {
	idx := int(c.cur.Load()) % len(c.conns)
	if c.conns[idx].GetState() != connectivity.Ready {
		// Whichever filer is up: the caller resumes from its last event.
		var err error
		if idx, err = c.waitReady(ctx, time.Now().Add(c.opts.ReadyWait)); err != nil {
			return fmt.Errorf("subscribe %s: %w", prefix, err)
		}
	}
	conn := c.conns[idx]
	stream, err := filerpb.NewSeaweedFilerClient(conn).SubscribeMetadata(ctx, &filerpb.SubscribeMetadataRequest{
		ClientName: c.opts.ClientName, PathPrefix: prefix, SinceNs: sinceNs,
		ClientId: int32(time.Now().UnixNano()), ClientEpoch: 1,
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", prefix, err)
	}
	if opened != nil {
		opened()
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", prefix, err)
		}
		if err := fn(resp); err != nil {
			return err
		}
	}
}
