package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// statsCommand is `weedfuse stats PATH`: the counters of the mount that
// holds PATH, as rates over each interval, like `juicefs stats`. It reads
// the mount's /metrics from its control socket (findMount). On a terminal
// it redraws one screen in place; otherwise it prints a row per interval,
// with a header every 20 rows, for logs and pipes.
func statsCommand(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("weedfuse stats", flag.ContinueOnError)
	fl.SetOutput(stderr)
	interval := fl.Duration("interval", time.Second, "refresh interval")
	count := fl.Int("count", 0, "stop after this many intervals (0: until interrupted)")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: weedfuse stats [-interval=1s] [-count=N] PATH\n\nPATH is a weedfuse mount point, or a path in the mount.")
		fl.PrintDefaults()
	}
	// Flags may come after the mount point, as in `weedfuse stats /mnt -interval 2s`.
	var dir string
	rest := args
	for {
		if err := fl.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fl.NArg() == 0 {
			break
		}
		if dir != "" {
			fl.Usage()
			return 2
		}
		dir, rest = fl.Arg(0), fl.Args()[1:]
	}
	if dir == "" || *interval <= 0 || *count < 0 {
		fl.Usage()
		return 2
	}
	path, err := filepath.Abs(dir)
	if err != nil {
		fmt.Fprintln(stderr, "weedfuse stats:", err)
		return 1
	}
	// A path that does not resolve (a dead mount's) is looked up as given.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	m, err := findMount(ctx, path)
	if errors.Is(err, errNoMount) {
		fmt.Fprintf(stderr, "weedfuse stats: no weedfuse mount at %s answers\n", path)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "weedfuse stats: %s: %v\n", path, err)
		return 1
	}
	prev := m.first
	tty := isTerminal(stdout)
	rows := 0
	for i := 0; *count == 0 || i < *count; i++ {
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(*interval):
		}
		cur, err := scrape(ctx, m.sock)
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			fmt.Fprintf(stderr, "weedfuse stats: %s: %v\n", m.dir, err)
			return 1
		}
		r := rates(prev, cur)
		prev = cur
		if tty {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J"+r.screen(m.dir, *interval))
			continue
		}
		if rows%20 == 0 {
			fmt.Fprintln(stdout, rowHeader)
		}
		fmt.Fprintln(stdout, r.row())
		rows++
	}
	return 0
}

// getMetrics fetches /metrics from a control socket.
func getMetrics(ctx context.Context, sock string) ([]byte, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://weedfuse/metrics", nil)
	if err != nil {
		return nil, err
	}
	// The text format, which the parser below reads.
	req.Header.Set("Accept", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// sample is one scrape, with when it was taken.
type sample struct {
	at       time.Time
	families map[string]*dto.MetricFamily
}

func scrape(ctx context.Context, sock string) (sample, error) {
	body, err := getMetrics(ctx, sock)
	if err != nil {
		return sample{}, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return sample{}, fmt.Errorf("parse /metrics: %w", err)
	}
	return sample{at: time.Now(), families: fams}, nil
}

// sum adds the samples of a counter or gauge whose labels include match.
func (s sample) sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, m := range s.metrics(name, match) {
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Untyped != nil:
			total += m.Untyped.GetValue()
		}
	}
	return total
}

func (s sample) metrics(name string, match map[string]string) []*dto.Metric {
	f := s.families[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
next:
	for _, m := range f.Metric {
		for k, v := range match {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// buckets returns a histogram's cumulative bucket counts by upper bound,
// summed over the series whose labels include match.
func (s sample) buckets(name string, match map[string]string) map[float64]float64 {
	out := map[float64]float64{}
	for _, m := range s.metrics(name, match) {
		if m.Histogram == nil {
			continue
		}
		for _, b := range m.Histogram.Bucket {
			if !math.IsInf(b.GetUpperBound(), 1) { // the count below is +Inf's
				out[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
		out[math.Inf(1)] += float64(m.Histogram.GetSampleCount())
	}
	return out
}

// quantile estimates the q-quantile of the observations between two
// scrapes of a histogram, interpolating within a bucket as PromQL's
// histogram_quantile does. NaN when nothing was observed.
func quantile(q float64, prev, cur map[float64]float64) float64 {
	var bounds []float64
	for b := range cur {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	total := cur[math.Inf(1)] - prev[math.Inf(1)]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bounds {
		n := cur[b] - prev[b]
		if n >= rank {
			if math.IsInf(b, 1) {
				return lower
			}
			if n == below {
				return b
			}
			return lower + (b-lower)*(rank-below)/(n-below)
		}
		lower, below = b, n
	}
	return lower
}

// stats are the rates of one interval.
type stats struct {
	seconds                 float64
	readOps, readBytes      float64 // per second, as FUSE saw them
	httpBytes, rdmaBytes    float64 // per second, fetched
	diskBytes               float64 // per second, read from the disk cache
	hits, misses            float64 // block look-ups per second
	readP50, readP99        float64 // seconds, FUSE read latency
	fetchP50, fetchP99      map[string]float64
	inFlight                float64
	fuseErrors, fetchErrors float64 // per second
	fallbacks               float64 // per second
}

var tiers = []string{"http", "rdma"}

func rates(prev, cur sample) stats {
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		dt = 1
	}
	rate := func(name string, match map[string]string) float64 {
		return math.Max(0, cur.sum(name, match)-prev.sum(name, match)) / dt
	}
	read := map[string]string{"op": "read"}
	s := stats{seconds: dt,
		readBytes:   rate("weedfuse_fuse_read_bytes_total", nil),
		httpBytes:   rate("weedfuse_http_bytes_total", nil),
		rdmaBytes:   rate("weedfuse_rdma_bytes_total", nil),
		diskBytes:   rate("weedfuse_disk_hit_bytes_total", nil),
		hits:        rate("weedfuse_cache_hits_total", nil),
		misses:      rate("weedfuse_cache_misses_total", nil),
		inFlight:    cur.sum("weedfuse_fetches_in_flight", nil),
		fuseErrors:  rate("weedfuse_fuse_op_errors_total", map[string]string{"errno": "EIO"}),
		fetchErrors: rate("weedfuse_http_errors_total", nil),
		fallbacks:   rate("weedfuse_rdma_fallbacks_total", nil),
		fetchP50:    map[string]float64{}, fetchP99: map[string]float64{},
	}
	// A histogram's count is inside its family, not a family of its own.
	s.readOps = histCount(prev, cur, "weedfuse_fuse_op_duration_seconds", read) / dt
	pr, cr := prev.buckets("weedfuse_fuse_op_duration_seconds", read), cur.buckets("weedfuse_fuse_op_duration_seconds", read)
	s.readP50, s.readP99 = quantile(0.5, pr, cr), quantile(0.99, pr, cr)
	for _, t := range tiers {
		m := map[string]string{"tier": t, "result": "ok"}
		pb, cb := prev.buckets("weedfuse_fetch_duration_seconds", m), cur.buckets("weedfuse_fetch_duration_seconds", m)
		s.fetchP50[t], s.fetchP99[t] = quantile(0.5, pb, cb), quantile(0.99, pb, cb)
	}
	return s
}

func histCount(prev, cur sample, name string, match map[string]string) float64 {
	return math.Max(0, cur.buckets(name, match)[math.Inf(1)]-prev.buckets(name, match)[math.Inf(1)])
}

// hitRatio is the share of block look-ups the cache answered, or NaN.
func (s stats) hitRatio() float64 {
	if s.hits+s.misses == 0 {
		return math.NaN()
	}
	return s.hits / (s.hits + s.misses)
}

// memoryBytes estimates the bytes per second served from memory: what
// FUSE returned less what the fetchers brought and the disk cache gave
// (which include readahead, hence the floor at 0).
func (s stats) memoryBytes() float64 {
	return math.Max(0, s.readBytes-s.httpBytes-s.rdmaBytes-s.diskBytes)
}

const rowHeader = "  reads/s    MB/s  mem MB/s disk MB/s http MB/s rdma MB/s   hit%  read p50  read p99 http p50 http p99 rdma p50 rdma p99 inflight  errors/s"

func (s stats) row() string {
	return fmt.Sprintf("%9.0f %7.1f %9.1f %9.1f %9.1f %9.1f %6s %9s %9s %8s %8s %8s %8s %8.0f %9.1f",
		s.readOps, mb(s.readBytes), mb(s.memoryBytes()), mb(s.diskBytes), mb(s.httpBytes), mb(s.rdmaBytes), pct(s.hitRatio()),
		dur(s.readP50), dur(s.readP99), dur(s.fetchP50["http"]), dur(s.fetchP99["http"]),
		dur(s.fetchP50["rdma"]), dur(s.fetchP99["rdma"]), s.inFlight, s.fuseErrors+s.fetchErrors)
}

func (s stats) screen(dir string, interval time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "weedfuse stats %s    every %v, Ctrl-C to quit\n\n", dir, interval)
	fmt.Fprintf(&b, "reads        %9.0f /s   %8.1f MB/s   latency p50 %s  p99 %s\n", s.readOps, mb(s.readBytes), dur(s.readP50), dur(s.readP99))
	fmt.Fprintf(&b, "cache hits   %9s      memory   %8.1f MB/s (est.)   disk %8.1f MB/s\n", pct(s.hitRatio()), mb(s.memoryBytes()), mb(s.diskBytes))
	fmt.Fprintf(&b, "fetch http   %9.1f MB/s   latency p50 %s  p99 %s\n", mb(s.httpBytes), dur(s.fetchP50["http"]), dur(s.fetchP99["http"]))
	fmt.Fprintf(&b, "fetch rdma   %9.1f MB/s   latency p50 %s  p99 %s   fallbacks %.1f/s\n", mb(s.rdmaBytes), dur(s.fetchP50["rdma"]), dur(s.fetchP99["rdma"]), s.fallbacks)
	fmt.Fprintf(&b, "in flight    %9.0f fetches\n", s.inFlight)
	fmt.Fprintf(&b, "errors       %9.1f /s (EIO to readers %.1f/s, failed HTTP reads %.1f/s)\n", s.fuseErrors+s.fetchErrors, s.fuseErrors, s.fetchErrors)
	return b.String()
}

func mb(bytesPerSec float64) float64 { return bytesPerSec / 1e6 }

func pct(r float64) string {
	if math.IsNaN(r) {
		return "-"
	}
	return strconv.FormatFloat(100*r, 'f', 1, 64)
}

// dur prints a latency in seconds compactly: 85µs, 2.3ms, 1.20s.
func dur(sec float64) string {
	switch {
	case math.IsNaN(sec):
		return "-"
	case sec < 1e-3:
		return fmt.Sprintf("%.0fµs", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.1fms", sec*1e3)
	}
	return fmt.Sprintf("%.2fs", sec)
}

// isTerminal reports whether w is a terminal, for redrawing in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
