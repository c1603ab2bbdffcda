package main

// The report's part on the peers (-peers): their numbers beside the two
// main mounts', weedfuse's ratio over each, memory and cache on disk, how
// each was mounted, and a short section for the README.

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
)

// headline are the workloads the README section shows, where they ran.
var headline = []string{"seq-buf-cold", "seq-buf-warm", "rand4k-4", "small-cold", "small-epoch2", "ls10000",
	"beyond-rand4k", "dataset-epoch1", "dataset-epoch2", "disk-reread"}

// peerTable is every metric's median on every mount that ran, and
// weedfuse's ratio over each mount (weedfuse better above 1).
type peerTable struct {
	mounts []kind
	rows   []peerTableRow
}

type peerTableRow struct {
	m      metric
	median []float64 // by mounts' index; NaN where none
	ratio  []float64 // weedfuse over that mount
}

func newPeerTable(res *results) *peerTable {
	t := &peerTable{mounts: res.mounts}
	for _, m := range res.metrics() {
		row := peerTableRow{m: m}
		wf := median(finite(res.val[weedfuse][m.id]))
		for _, k := range t.mounts {
			v := median(finite(res.val[k][m.id]))
			row.median = append(row.median, v)
			row.ratio = append(row.ratio, ratio(m, v, wf))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// finite drops the NaNs that stand for failed runs.
func finite(vs []float64) []float64 {
	return slices.DeleteFunc(slices.Clone(vs), math.IsNaN)
}

// geoMean is the geometric mean of weedfuse's ratios over mount i, over
// the rows that have one, and how many rows that is.
func (t *peerTable) geoMean(i int, only []string) (float64, int) {
	var sum float64
	n := 0
	for _, row := range t.rows {
		if only != nil && !slices.Contains(only, row.m.id) {
			continue
		}
		if r := row.ratio[i]; r > 0 && !math.IsInf(r, 0) {
			sum += math.Log(r)
			n++
		}
	}
	if n == 0 {
		return math.NaN(), 0
	}
	return math.Exp(sum / float64(n)), n
}

// header is a table's first two lines: first, then one column per mount.
func (t *peerTable) header(first string, mounts []kind) string {
	var b strings.Builder
	b.WriteString("| " + first + " |")
	sep := "|---|"
	for _, k := range mounts {
		b.WriteString(" " + k.String() + " |")
		sep += "--:|"
	}
	return b.String() + "\n" + sep + "\n"
}

// writePeers writes the peers' sections.
func writePeers(p func(string, ...any), o *options, info *sysInfo, res *results) {
	rep := res.peers
	t := newPeerTable(res)
	p("\n## Against rclone, s3fs and JuiceFS\n\n")
	p("What SeaweedFS users mount instead of weed mount, on the same cluster, in the same run, on the same workloads, each from a fresh mount with an empty cache: ")
	p("**rclone mount** and **s3fs** over `weed s3` (the filer's `%s/%s` is the bucket `%s`, so they read the very files the two mounts read), ", filerRoot, s3Bucket, s3Bucket)
	p("rclone with `--vfs-cache-mode full` (\"rclone full\") and `off`, s3fs with `use_cache` (\"s3fs cache\") and without; ")
	p("and **JuiceFS**, which stores its own block format: its copy of the same tree was written through its mount into the bucket `%s` on the same gateway, metadata in SQLite. ", jfsBucket)
	p("Every peer gets the cache budget the two mounts get (see \"How the peers were mounted\").\n\n")
	var missing []string
	for _, k := range peerKinds {
		if why := rep.unavailable[k]; why != "" {
			missing = append(missing, fmt.Sprintf("- **%s**: not measured: %s\n", k, oneLine(why, 600)))
		}
	}
	if len(missing) > 0 {
		p("Not measured:\n\n%s\n", strings.Join(missing, ""))
	}

	p("### Medians\n\n")
	p("%s", strings.Replace(t.header("workload | unit", t.mounts), "|---|", "|---|---|", 1))
	for _, row := range t.rows {
		p("| %s | %s |", row.m.label, row.m.unit)
		for _, v := range row.median {
			p(" %s |", fmtNum(v))
		}
		p("\n")
	}

	others := slices.DeleteFunc(slices.Clone(t.mounts), func(k kind) bool { return k == weedfuse })
	p("\n### weedfuse's ratio over each\n\n")
	p("How many times better weedfuse does (its rate over the other's, or the other's time over its); above 1, weedfuse is ahead. ")
	p("The chart `results-peers.png` shows them on a log scale. The last row is the geometric mean over the workloads that both ran.\n\n")
	p("%s", t.header("workload", others))
	for _, row := range t.rows {
		p("| %s |", row.m.id)
		for _, k := range others {
			p(" %s |", fmtRatio(row.ratio[slices.Index(t.mounts, k)]))
		}
		p("\n")
	}
	p("| **geometric mean** |")
	for _, k := range others {
		g, n := t.geoMean(slices.Index(t.mounts, k), nil)
		p(" **%s** (%d) |", fmtRatio(g), n)
	}
	p("\n")

	p("\n### Peak RSS and cache on disk\n\n")
	p("Peak RSS, MiB: VmHWM of the mount, the largest over the runs; for a peer, summed over its processes (JuiceFS runs a supervisor beside the process that serves).\n\n")
	p("%s", t.header("workload", t.mounts))
	for _, st := range res.steps {
		p("| %s |", st.id)
		for _, k := range t.mounts {
			p(" %s |", fmtNum(maxOf(res.rss[k][st.id])))
		}
		p("\n")
	}
	p("\nCache on disk, MiB: what the mount's cache directory took on disk (allocated blocks) at the end of the workload, before unmounting, the largest over the runs. ")
	p("weed mount allocates its on-disk cache volumes whole when it mounts, so it shows its full budget even where it cached nothing.\n\n")
	p("%s", t.header("workload", t.mounts))
	for _, st := range res.steps {
		p("| %s |", st.id)
		for _, k := range t.mounts {
			p(" %s |", fmtNum(maxOf(res.cacheDisk[k][st.id])/(1<<20)))
		}
		p("\n")
	}
	if len(rep.failures) > 0 {
		p("\n### Runs that failed\n\nA failed run counts as no value (—, or left out of the median).\n\n")
		for _, f := range rep.failures {
			p("- %s\n", oneLine(f, 800))
		}
	}

	writePeerSetup(p, o, info, res)
	writeReadmeSection(p, res, t, others)
}

// writePeerSetup gives the command lines, versions and the mapping of the
// workloads' flags.
func writePeerSetup(p func(string, ...any), o *options, info *sysInfo, res *results) {
	rep := res.peers
	p("\n### How the peers were mounted\n\n")
	p("Versions: weed %s", info.weed)
	for _, name := range []string{"rclone", "s3fs", "juicefs"} {
		if v, ok := rep.versions[name]; ok {
			p("; %s: `%s`", name, v)
		}
	}
	p(". `$WORK` is the bench's scratch directory, `$CLUSTER` the cluster's; `<mnt>` and `<cache>` below are a new mount point and a new, empty cache directory per mount.\n\n")
	if rep.gateway != "" {
		p("- S3 gateway: `%s` (one identity; `-config` is a JSON of `identities`).\n", rep.gateway)
	}
	for _, s := range rep.setup {
		p("- JuiceFS, once: %s\n", s)
	}
	for _, k := range peerKinds {
		if c := rep.cmds[k]; c != "" {
			p("- %s: `%s`\n", k, c)
		}
	}
	p("\nThe workloads' flags for the two mounts, and each peer's nearest equivalent:\n\n")
	p("| weed mount / weedfuse | rclone | s3fs | JuiceFS |\n|---|---|---|---|\n")
	p("| `-cacheCapacityMB=N` (%d for both by default here; 128, their default, for beyond-rand4k; 8192 for dataset; 2048 for disk-reread) | full: `--vfs-cache-max-size=NM` (enforced every `--vfs-cache-poll-interval`, 1 min, so it can overshoot in between); off: no cache | cache: `use_cache=<cache>`, with `<cache>` an ext4 file system of its own (a loop device, made per mount) and `ensure_diskfree=` its free space at mount less N (s3fs has no cache size; it evicts to keep that much free, so nothing else on the machine may change that free space); without: none, though s3fs still stages what it fetched of an open file in an unlinked temporary file under `/tmp` (its `tmpdir`), so a file re-read while open is read locally, and that file is not in the cache column | `--cache-size=N` |\n", o.cacheMB)
	p("| `-cacheDir` | `--cache-dir` | `use_cache` | `--cache-dir` |\n")
	p("| `-readerCacheSizeMB=256` (default) | its defaults (`--buffer-size=16M` per open file) | its defaults | `--buffer-size=%d` |\n", readerCacheMB)
	p("| `-disableXAttr=false` (weedfuse, ls10000-xattr) | none (rclone mount has no xattr flag) | none (s3fs serves xattrs) | `--enable-xattr` (off by default, as weedfuse's) |\n")
	p("| read-only (weedfuse always) | `--read-only` | `-o ro` | `--read-only` |\n")
	p("| process priority: the bench's nice, as every mount | the same | the same | JuiceFS sets its own to -19 when run as root; the bench sets every thread of it back to its own nice once mounted |\n")
	p("| `-cacheMetaTtlSec=60` (default) | its defaults (`--dir-cache-time=5m`, `--attr-timeout=1s`) | its defaults (`stat_cache_expire=900`) | its defaults (`--attr-cache=1s`, `--entry-cache=1s`) |\n")
}

// writeReadmeSection writes a few lines for the README: weedfuse's ratio
// over each peer on the headline workloads.
func writeReadmeSection(p func(string, ...any), res *results, t *peerTable, others []kind) {
	p("\n### For the README\n\n")
	var cols []peerTableRow
	for _, id := range headline {
		for _, row := range t.rows {
			if row.m.id == id {
				cols = append(cols, row)
			}
		}
	}
	p("weedfuse against what SeaweedFS users mount instead, on one machine and one cluster, each mount fresh and with the same cache budget ")
	p("(rclone and s3fs over `weed s3`; JuiceFS over the same gateway with its own copy of the data). ")
	p("Each figure is how many times better weedfuse does; above 1×, weedfuse is ahead; `integration/bench -peers` (`make bench BENCH_FLAGS=-peers`) measures them, and its `results.md` says how.\n\n")
	p("| weedfuse ÷ |")
	for _, c := range cols {
		p(" %s |", c.m.short)
	}
	p(" geometric mean, all workloads |\n|---|")
	for range cols {
		p("--:|")
	}
	p("--:|\n")
	for _, k := range others {
		i := slices.Index(t.mounts, k)
		p("| %s |", k)
		for _, c := range cols {
			p(" %s |", fmtRatio(c.ratio[i]))
		}
		g, _ := t.geoMean(i, nil)
		p(" %s |\n", fmtRatio(g))
	}
	var rss []string
	for _, k := range t.mounts {
		var peak float64 = math.NaN()
		for _, st := range res.steps {
			if v := maxOf(res.rss[k][st.id]); !math.IsNaN(v) && (math.IsNaN(peak) || v > peak) {
				peak = v
			}
		}
		rss = append(rss, fmt.Sprintf("%s %s", k, fmtNum(peak)))
	}
	p("\nPeak RSS over every workload, MiB: %s.\n", strings.Join(rss, ", "))
}

// peerBars are the grouped chart's rows: per metric, weedfuse's ratio over
// every other mount.
func (t *peerTable) chartData() (groups []string, series []string, ratios [][]float64) {
	var idx []int
	for i, k := range t.mounts {
		if k != weedfuse {
			series = append(series, k.String())
			idx = append(idx, i)
		}
	}
	for _, row := range t.rows {
		groups = append(groups, row.m.short)
		var rs []float64
		for _, i := range idx {
			rs = append(rs, row.ratio[i])
		}
		ratios = append(ratios, rs)
	}
	return groups, series, ratios
}

func writePeerChart(out, subtitle string, res *results) error {
	groups, series, ratios := newPeerTable(res).chartData()
	return writeGroupedChart(filepath.Join(out, "results-peers.png"),
		"weedfuse over each mount: median ratio, higher is better (log scale)", subtitle, groups, series, ratios)
}

// maxOf is the largest finite value of vs, or NaN.
func maxOf(vs []float64) float64 {
	vs = finite(vs)
	if len(vs) == 0 {
		return math.NaN()
	}
	return slices.Max(vs)
}

// oneLine folds s to one line of at most n bytes, for a list item.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + " […]"
	}
	return s
}
