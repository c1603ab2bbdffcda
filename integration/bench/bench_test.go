package main

import (
	"math"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestRatio(t *testing.T) {
	if got := ratio(metric{}, 100, 250); got != 2.5 {
		t.Errorf("rate ratio = %v, want 2.5", got)
	}
	if got := ratio(metric{lower: true}, 1, 0.25); got != 4 {
		t.Errorf("time ratio = %v, want 4", got)
	}
}

func TestParseFio(t *testing.T) {
	out := `note: both iodepth >= 1 and synchronous I/O engine are selected
{"fio version": "fio-3.33", "jobs": [{"jobname": "bench", "error": 0,
 "read": {"io_bytes": 1073741824, "bw_bytes": 536870912, "iops": 512.0}}]}`
	r, err := parseFio([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.ioBytes != 1<<30 || r.bw != 1<<29 || r.iops != 512 {
		t.Errorf("got %+v", r)
	}
	if _, err := parseFio([]byte(`{"jobs": [{"error": 5, "read": {}}]}`)); err == nil {
		t.Error("a failed job parsed without error")
	}
	if _, err := parseFio([]byte("fio: no such file")); err == nil {
		t.Error("output without JSON parsed without error")
	}
}

func TestFioArgs(t *testing.T) {
	j := fioJob{rw: "randread", bs: "4k", engine: "psync", jobs: 4, runtime: 20 * time.Second}
	got := strings.Join(j.args("/m/f"), " ")
	for _, want := range []string{"--filename=/m/f", "--readonly", "--rw=randread", "--direct=0", "--invalidate=0",
		"--numjobs=4 --group_reporting", "--time_based --runtime=20s"} {
		if !strings.Contains(got, want) {
			t.Errorf("fio %s: missing %s", got, want)
		}
	}
}

func TestFormatFid(t *testing.T) {
	f := &filerpb.FileId{VolumeId: 3, FileKey: 1, Cookie: 0x637037d6}
	if got := formatFid(f); got != "3,01637037d6" {
		t.Errorf("formatFid = %q, want 3,01637037d6", got)
	}
}

func TestFmtTarget(t *testing.T) {
	for in, want := range map[float64]string{0: "", 2: "≥ 2×", 0.9: "≥ 0.9×"} {
		if got := fmtTarget(in); got != want {
			t.Errorf("fmtTarget(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestChartText checks that the font draws every label the chart shows
// rather than '?'.
func TestChartText(t *testing.T) {
	texts := []string{"weedfuse vs weed mount: median ratio, higher is better (log scale)",
		"target met", "target missed", "no target", "N/A", "0.01x 1000x", "12.5×", "seq buf cold / raw http"}
	for _, s := range steps(time.Second) {
		for _, m := range s.metrics {
			texts = append(texts, m.short)
		}
	}
	for _, s := range texts {
		for _, r := range strings.ToUpper(strings.ReplaceAll(s, "×", "x")) {
			if _, ok := glyphs[r]; !ok {
				t.Errorf("%q: no glyph for %q", s, r)
			}
		}
	}
	for r, g := range glyphs {
		for _, row := range g {
			if len(row) != glyphW {
				t.Errorf("glyph %q: row %q is not %d wide", r, row, glyphW)
			}
		}
	}
}

func TestDrawChart(t *testing.T) {
	img := drawChart("title", "subtitle", []bar{
		{label: "a", ratio: 2.5, target: 2}, {label: "b", ratio: 0.3, target: 3},
		{label: "c", ratio: 40}, {label: "d", ratio: math.NaN()}, {label: "e", ratio: math.Inf(1)},
	})
	if img.Bounds().Dx() < plotW || img.Bounds().Dy() < plotTop+5*rowH {
		t.Errorf("chart of %v is too small", img.Bounds())
	}
}

func TestCPUUse(t *testing.T) {
	at := time.Unix(1000, 0)
	from := cpuSample{at: at, busy: 100, total: 400, procs: []uint64{50, 7}}
	to := cpuSample{at: at.Add(2 * time.Second), busy: 300, total: 800, procs: []uint64{150, 7}}
	u := from.until(to)
	if u.wall != 2 || u.procs[0] != 1 || u.procs[1] != 0 {
		t.Errorf("until: got %+v, want wall 2, procs [1 0]", u)
	}
	if want := 0.5 * float64(runtime.NumCPU()); u.cores != want {
		t.Errorf("busy cores: got %v, want %v", u.cores, want)
	}
	stat := "4242 (weed (v) mount) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 12 0 100 0 0\n"
	if got := statTicks(stat); got != 1234+567 {
		t.Errorf("statTicks: got %d, want %d", got, 1234+567)
	}
}

// TestSummaryRSS checks that a metadata workload's peak RSS stays out of
// the bound's row and has its own.
func TestSummaryRSS(t *testing.T) {
	res := &results{steps: []step{{id: "a"}, {id: "huge", metadata: true}}}
	for k := range numKinds {
		res.val[k] = map[string][]float64{}
		res.rss[k] = map[string][]float64{"a": {300, 390}, "huge": {700}}
	}
	s := summarize(res)
	if s.rss[weedfuse] != 390 || s.metaRSS[weedfuse] != 700 {
		t.Errorf("peaks %v and %v, want 390 over the bound's workloads and 700 for metadata", s.rss[weedfuse], s.metaRSS[weedfuse])
	}
}

// TestSpaceFor: a run that includes the start workload needs room for weed
// mount's preallocated 50,000 MiB cache; one that leaves it out, or only
// holds the cluster, does not.
func TestSpaceFor(t *testing.T) {
	for _, tc := range []struct {
		only string
		hold bool
		free int64
		ok   bool
	}{
		{"", false, startSpace, true},
		{"", false, startSpace - 1, false},
		{"^start$", false, 10 << 30, false},
		{"^(dataset|ls2000)$", false, 10 << 30, true},
		{"", true, 10 << 30, true},
	} {
		o := &options{only: regexp.MustCompile(tc.only), hold: tc.hold}
		err := spaceFor("/tmp", tc.free, o)
		if (err == nil) != tc.ok {
			t.Errorf("only %q hold %v free %d: %v", tc.only, tc.hold, tc.free, err)
		}
	}
}
