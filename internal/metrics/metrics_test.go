package metrics

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/volume"
	"github.com/weedfuse/weedfuse/pagecache"
	"github.com/weedfuse/weedfuse/rdma"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type fixed[S any] struct{ s S }

func (f fixed[S]) Stats() S { return f.s }

// testMount is a Mount with every source, some of each kind of sample.
func testMount(t *testing.T) *Mount {
	t.Helper()
	m := NewMount()
	require.NoError(t, m.AddCache(fixed[pagecache.Stats]{pagecache.Stats{Hits: 7, Misses: 3, FetchedBytes: 1 << 20}}))
	require.NoError(t, m.AddHTTP(fixed[volume.Stats]{volume.Stats{Reads: 2, Bytes: 4096}}))
	require.NoError(t, m.AddRDMA(fixed[rdma.ClientStats]{rdma.ClientStats{Reads: 5, Peers: 1,
		Fallbacks: map[string]uint64{"timeout": 1, "unsupported": 0}}}))
	m.ObserveOp("read", 80*time.Microsecond, 131072, 0)
	m.ObserveOp("lookup", 30*time.Microsecond, 0, syscall.ENOENT)
	f := m.Fetcher("http", fakeFetcher{})
	_, err := f.Fetch(context.Background(), needle.Request{Dsts: [][]byte{make([]byte, 1)}})
	require.NoError(t, err)
	return m
}

// fakeFetcher answers err, and keeps the last request in got when set.
type fakeFetcher struct {
	err error
	got *needle.Request
}

func (f fakeFetcher) Fetch(ctx context.Context, r needle.Request) (int, error) {
	if f.got != nil {
		*f.got = r
	}
	return int(r.Len()), f.err
}

func exposition(t *testing.T, reg prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		require.NoError(t, enc.Encode(mf))
	}
	return buf.Bytes()
}

// promtoolCheck runs `promtool check metrics` over an exposition: it
// fails on missing HELP, wrong suffixes (_total, base units) and the like.
func promtoolCheck(t *testing.T, text []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; .ci/install installs it)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}

// TestExposition checks the whole exposition with promtool.
func TestExposition(t *testing.T) {
	promtoolCheck(t, exposition(t, testMount(t).Registry()))
}

// TestExpositionGolden pins the names, types and help texts of weedfuse's
// own metrics: renaming one breaks dashboards and scripts, so it must be
// deliberate (go test ./internal/metrics -run Golden -update).
func TestExpositionGolden(t *testing.T) {
	tests := []struct {
		name   string
		reg    prometheus.Gatherer
		prefix string
	}{
		{"mount", testMount(t).Registry(), "weedfuse_"},
		{"weedrdma", testSidecar(t).Registry(), "weedrdma_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lines []string
			for _, l := range strings.Split(string(exposition(t, tt.reg)), "\n") {
				if strings.HasPrefix(l, "# HELP "+tt.prefix) || strings.HasPrefix(l, "# TYPE "+tt.prefix) {
					lines = append(lines, l)
				}
			}
			got := strings.Join(lines, "\n") + "\n"
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), got)
		})
	}
}

// TestSamples checks the values that reach the exposition.
func TestSamples(t *testing.T) {
	text := string(exposition(t, testMount(t).Registry()))
	for _, want := range []string{
		`weedfuse_cache_hits_total{tier="memory"} 7`,
		`weedfuse_cache_misses_total{tier="memory"} 3`,
		`weedfuse_http_bytes_total 4096`,
		`weedfuse_rdma_reads_total 5`,
		`weedfuse_rdma_fallbacks_total{reason="timeout"} 1`,
		`weedfuse_rdma_fallbacks_total{reason="unsupported"} 0`,
		`weedfuse_rdma_peers 1`,
		`weedfuse_fuse_read_bytes_total 131072`,
		`weedfuse_fuse_op_errors_total{errno="ENOENT",op="lookup"} 1`,
		`weedfuse_fuse_op_duration_seconds_count{op="read"} 1`,
		`weedfuse_fetch_duration_seconds_count{result="ok",tier="http"} 1`,
		`weedfuse_fetches_in_flight{tier="http"} 0`,
	} {
		assert.Contains(t, text, want+"\n")
	}
}

// TestFetcher checks the fetch wrapper: results are classified.
func TestFetcher(t *testing.T) {
	notServed := fmt.Errorf("no sidecar: %w", needle.ErrNotServed)
	tests := []struct {
		name   string
		f      pagecache.Fetcher
		result string
	}{
		{"ok", fakeFetcher{}, "ok"},
		{"not served", fakeFetcher{err: notServed}, "not_served"},
		{"error", fakeFetcher{err: errors.New("boom")}, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMount()
			m.Fetcher("rdma", tt.f).Fetch(context.Background(), needle.Request{Dsts: [][]byte{make([]byte, 3)}})
			text := string(exposition(t, m.Registry()))
			assert.Contains(t, text, fmt.Sprintf(`weedfuse_fetch_duration_seconds_count{result=%q,tier="rdma"} 1`, tt.result))
			assert.Contains(t, text, `weedfuse_fetches_in_flight{tier="rdma"} 0`)
		})
	}
}

// TestDuplicateHelpRefused shows what the package doc promises: two tiers'
// samples of one family with different help texts are refused at
// registration, so a mistaken table line fails this package's tests.
func TestDuplicateHelpRefused(t *testing.T) {
	stats := []Stat[pagecache.Stats]{
		counter("weedfuse_cache_hits_total", helpHits, tier("memory"), func(s pagecache.Stats) uint64 { return s.Hits }),
		counter("weedfuse_cache_hits_total", "something else", tier("disk"), func(s pagecache.Stats) uint64 { return s.Hits }),
	}
	err := prometheus.NewRegistry().Register(NewStatsCollector[pagecache.Stats](fixed[pagecache.Stats]{}, stats))
	assert.Error(t, err)
}

func testSidecar(t *testing.T) *Sidecar {
	t.Helper()
	return NewSidecar(fixed[rdma.ServerStats]{rdma.ServerStats{Peers: 2, Requests: 10, ErrorReplies: 3, PinnedSlots: 1,
		Refusals: map[uint16]uint64{413: 1, 503: 1, 404: 1}}})
}

// TestSidecarExposition checks weedrdma's exposition with promtool, and its
// refusals by reason.
func TestSidecarExposition(t *testing.T) {
	text := exposition(t, testSidecar(t).Registry())
	for _, want := range []string{
		`weedrdma_refusals_total{reason="too_large"} 1`,
		`weedrdma_refusals_total{reason="busy"} 1`,
		`weedrdma_refusals_total{reason="upstream_404"} 1`,
		`weedrdma_pinned_slots 1`,
		`weedrdma_peers 2`,
	} {
		assert.Contains(t, string(text), want+"\n")
	}
	promtoolCheck(t, text)
}

// TestFetcherPassesTeeAndRange: the wrapped step gets the request whole,
// its sink and its Range flag included. (The type system only sees that
// the wrapper has Fetch; had it dropped Whole, the disk cache would stay
// empty, and had it dropped Range, every random miss would fetch a whole
// needle.)
func TestFetcherPassesTeeAndRange(t *testing.T) {
	var got needle.Request
	w := NewMount().Fetcher("http", fakeFetcher{got: &got})
	sink := &bytes.Buffer{} // a NeedleSink
	for _, want := range []needle.Request{
		{Chunk: needle.Chunk{FileID: "3,01637037d6", Size: 10}, Off: 4, Dsts: [][]byte{make([]byte, 2), make([]byte, 3)}, Whole: sink},
		{Chunk: needle.Chunk{FileID: "3,01637037d6", Size: 10}, Off: 1, Dsts: [][]byte{make([]byte, 5)}, Range: true},
	} {
		n, err := w.Fetch(context.Background(), want)
		require.NoError(t, err)
		assert.Equal(t, 5, n)
		assert.Equal(t, want, got)
	}
}
