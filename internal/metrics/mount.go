package metrics

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/fs"
	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/volume"
	"github.com/weedfuse/weedfuse/pagecache"
	"github.com/weedfuse/weedfuse/rdma"
)

// Buckets of the latency histograms, in seconds: from a FUSE round trip
// answered from memory (tens of µs) to a read that waits out the volume
// servers' retries (seconds).
var latencyBuckets = []float64{
	25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10,
}

// Mount is a mount's registry: the Stats of its cache and fetchers, FUSE
// operation latency, fetch latency per path, and the Go runtime's and the
// process's own metrics.
type Mount struct {
	reg *prometheus.Registry

	opDuration *prometheus.HistogramVec // op
	opErrors   *prometheus.CounterVec   // op, errno
	readBytes  prometheus.Counter

	fetchDuration *prometheus.HistogramVec // tier, result
	fetchInFlight *prometheus.GaugeVec     // tier
}

// NewMount returns a registry with the FUSE and runtime metrics; add the
// cache and fetchers with the Add methods as they are built.
func NewMount() *Mount {
	m := &Mount{reg: prometheus.NewRegistry()}
	m.opDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "weedfuse_fuse_op_duration_seconds",
		Help:    "Time weedfuse took to answer a FUSE operation, by operation.",
		Buckets: latencyBuckets,
	}, []string{"op"})
	m.opErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weedfuse_fuse_op_errors_total",
		Help: "FUSE operations answered with an error, by operation and errno (ENOENT of lookup is a normal negative answer).",
	}, []string{"op", "errno"})
	m.readBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "weedfuse_fuse_read_bytes_total",
		Help: "Bytes weedfuse returned to the kernel's READ requests.",
	})
	m.fetchDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "weedfuse_fetch_duration_seconds",
		Help:    "Time of one chunk fetch through a fetch path, by tier and result (ok, not_served: passed to the next tier, error).",
		Buckets: latencyBuckets,
	}, []string{"tier", "result"})
	m.fetchInFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weedfuse_fetches_in_flight",
		Help: "Chunk fetches under way, by tier.",
	}, []string{"tier"})
	m.reg.MustRegister(m.opDuration, m.opErrors, m.readBytes, m.fetchDuration, m.fetchInFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the collectors are, for tests and for adding more.
func (m *Mount) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Mount) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// AddCache exports the block cache's counters.
func (m *Mount) AddCache(c Statser[pagecache.Stats]) error {
	return m.reg.Register(NewStatsCollector(c, cacheStats))
}

// AddHTTP exports the volume servers' HTTP reader's counters.
func (m *Mount) AddHTTP(r Statser[volume.Stats]) error {
	return m.reg.Register(NewStatsCollector(r, httpStats))
}

// AddTree exports the file tree's metadata subscription state.
func (m *Mount) AddTree(t Statser[fs.Stats]) error {
	return m.reg.Register(NewStatsCollector(t, treeStats))
}

// AddRDMA exports the RDMA client's counters.
func (m *Mount) AddRDMA(c Statser[rdma.ClientStats]) error {
	return m.reg.Register(NewStatsCollector(c, rdmaClientStats))
}

// ObserveOp implements fs.OpObserver.
func (m *Mount) ObserveOp(op string, took time.Duration, bytes int, errno syscall.Errno) {
	m.opDuration.WithLabelValues(op).Observe(took.Seconds())
	if bytes > 0 {
		m.readBytes.Add(float64(bytes))
	}
	if errno != 0 {
		m.opErrors.WithLabelValues(op, errnoName(errno)).Inc()
	}
}

func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno_" + e.Error()
}

// Fetcher wraps one step of the fetch chain (tier "http" or "rdma") so
// that each fetch through it is timed and counted in flight. The request
// passes through as it is, tee and range included.
func (m *Mount) Fetcher(tier string, f pagecache.Fetcher) pagecache.Fetcher {
	return timedFetcher{f: f, inFlight: m.fetchInFlight.WithLabelValues(tier),
		ok:        m.fetchDuration.WithLabelValues(tier, "ok"),
		notServed: m.fetchDuration.WithLabelValues(tier, "not_served"),
		failed:    m.fetchDuration.WithLabelValues(tier, "error")}
}

type timedFetcher struct {
	f                     pagecache.Fetcher
	inFlight              prometheus.Gauge
	ok, notServed, failed prometheus.Observer
}

func (t timedFetcher) Fetch(ctx context.Context, r needle.Request) (int, error) {
	t.inFlight.Inc()
	start := time.Now()
	n, err := t.f.Fetch(ctx, r)
	t.inFlight.Dec()
	o := t.ok
	switch {
	case err == nil:
	case errors.Is(err, needle.ErrNotServed):
		o = t.notServed
	default:
		o = t.failed
	}
	o.Observe(time.Since(start).Seconds())
	return n, err
}
