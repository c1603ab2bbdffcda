package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// median of vs; NaN for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(vs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// ratio is how many times better weedfuse's value is than weed mount's.
func ratio(m metric, weed, wf float64) float64 {
	if m.lower {
		return weed / wf
	}
	return wf / weed
}

// fmtNum prints a measurement with about three significant digits.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func fmtRatio(r float64) string {
	switch {
	case math.IsNaN(r) || math.IsInf(r, 0):
		return "—"
	case r >= 100:
		return fmt.Sprintf("%.0f×", r)
	case r >= 10:
		return fmt.Sprintf("%.1f×", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2f×", r)
	default:
		return fmt.Sprintf("%.3f×", r)
	}
}

func fmtTarget(t float64) string {
	if t == 0 {
		return ""
	}
	return "≥ " + strconv.FormatFloat(t, 'g', -1, 64) + "×"
}

func met(r, target float64) string {
	switch {
	case target == 0:
		return ""
	case r >= target:
		return "yes"
	default:
		return "**no**"
	}
}

// Targets beyond the per-workload ratios, from the issue.
const (
	httpTarget    = 0.9 // weedfuse's cold buffered sequential read over the raw HTTP ceiling
	rssHeadroomMB = 150 // weedfuse's peak RSS over its memory tier (-readerCacheSizeMB, 256)
)

// summary is what the tables and the chart report, computed once.
type summary struct {
	rows     []summaryRow
	ceiling  float64  // best cold raw HTTP median, MB/s; NaN if not measured
	ceilCase httpCase // the case that gave it
	seqCold  float64  // weedfuse's cold buffered sequential median, MB/s
	rss      [len(kinds)]float64
	rssLimit float64
	// metaRSS is the peak RSS over the workloads marked metadata, which
	// rss leaves out.
	metaRSS [len(kinds)]float64
}

type summaryRow struct {
	m            metric
	weed, wf     float64 // medians
	r            float64
	runsWeed     []float64
	runsWeedfuse []float64
}

func summarize(res *results) *summary {
	s := &summary{ceiling: math.NaN(), seqCold: math.NaN(), rssLimit: float64(256 + rssHeadroomMB)}
	for _, m := range res.metrics() {
		row := summaryRow{m: m, weed: median(res.val[weedMount][m.id]), wf: median(res.val[weedfuse][m.id])}
		row.r = ratio(m, row.weed, row.wf)
		row.runsWeed, row.runsWeedfuse = res.val[weedMount][m.id], res.val[weedfuse][m.id]
		s.rows = append(s.rows, row)
		if m.id == "seq-buf-cold" {
			s.seqCold = row.wf
		}
	}
	for _, hc := range httpCases {
		if v := median(res.http[hc]); !hc.warm && (math.IsNaN(s.ceiling) || v > s.ceiling) {
			s.ceiling, s.ceilCase = v, hc
		}
	}
	for k := range kinds {
		s.rss[k], s.metaRSS[k] = math.NaN(), math.NaN()
		for _, st := range res.steps {
			peak := &s.rss[k]
			if st.metadata {
				peak = &s.metaRSS[k]
			}
			for _, v := range res.rss[k][st.id] {
				if math.IsNaN(*peak) || v > *peak {
					*peak = v
				}
			}
		}
	}
	return s
}

// bars are the chart's ratios: every workload's, and weedfuse over the raw
// HTTP ceiling.
func (s *summary) bars() []bar {
	var bars []bar
	for _, row := range s.rows {
		bars = append(bars, bar{label: row.m.short, ratio: row.r, target: row.m.target})
	}
	if !math.IsNaN(s.ceiling) && !math.IsNaN(s.seqCold) {
		bars = append(bars, bar{label: "seq buf cold / raw http", ratio: s.seqCold / s.ceiling, target: httpTarget})
	}
	return bars
}

// writeReport writes results.md and results.png into o.out.
func writeReport(o *options, info *sysInfo, res *results) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	s := summarize(res)
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("# weedfuse vs weed mount: read benchmark\n\n")
	p("Written by `integration/bench` on %s, in %v. ", info.date.Format("2006-01-02 15:04 MST"), info.elapsed.Round(time.Second))
	p("%d run(s)%s; every figure is the median of the runs (a ratio is that of the medians), and the values of each run are at the end.\n\n",
		res.runs, map[bool]string{false: "", true: " (-quick)"}[o.quick])
	if o.only.String() != "" {
		p("Only the workloads matching `-only=%s` ran.\n\n", o.only)
	}
	p("**Ratio** is how many times better weedfuse does than weed mount: weedfuse / weed mount for rates, ")
	p("weed mount / weedfuse for times. Above 1, weedfuse is ahead. The chart, `results.png`, shows the ratios on a log scale.\n\n")

	p("## Summary\n\n")
	p("| workload | unit | weed mount | weedfuse | ratio | target | met? |\n|---|---|--:|--:|--:|--:|:-:|\n")
	for _, row := range s.rows {
		p("| %s | %s | %s | %s | %s | %s | %s |\n", row.m.label, row.m.unit, fmtNum(row.weed), fmtNum(row.wf),
			fmtRatio(row.r), fmtTarget(row.m.target), met(row.r, row.m.target))
	}
	if !math.IsNaN(s.ceiling) && !math.IsNaN(s.seqCold) {
		r := s.seqCold / s.ceiling
		p("| sequential, buffered, cold, against the raw HTTP ceiling (%s: %s MB/s) | MB/s | | %s | %s of HTTP | %s | %s |\n",
			s.ceilCase, fmtNum(s.ceiling), fmtNum(s.seqCold), fmtRatio(r), fmtTarget(httpTarget), met(r, httpTarget))
	}
	if !math.IsNaN(s.rss[weedfuse]) {
		p("| peak RSS of the mount over every workload but the one below (VmHWM, largest of the runs) | MiB | %s | %s | | weedfuse ≤ %.0f (memory tier + %d) | %s |\n",
			fmtNum(s.rss[weedMount]), fmtNum(s.rss[weedfuse]), s.rssLimit, rssHeadroomMB,
			map[bool]string{true: "yes", false: "**no**"}[s.rss[weedfuse] <= s.rssLimit])
	}
	if !math.IsNaN(s.metaRSS[weedfuse]) {
		p("| peak RSS of the mount where its memory is metadata (`ls -l` of %d,%03d entries; outside the bound above, see the README) | MiB | %s | %s | %s | reported | |\n",
			hugeN/1000, hugeN%1000, fmtNum(s.metaRSS[weedMount]), fmtNum(s.metaRSS[weedfuse]), fmtRatio(s.metaRSS[weedMount]/s.metaRSS[weedfuse]))
	}

	if len(res.refs) > 0 {
		p("\n## Against the machine's own limits\n\n")
		p("The same work done without a mount, in the same run: the bare HTTP client for random reads beyond the cache, ")
		p("the same loader on a local copy of the dataset, a local copy of the 1 GiB file (caches dropped).\n\n")
		p("| workload | reference | reference | weedfuse | weedfuse / reference | target | met? |\n|---|---|--:|--:|--:|--:|:-:|\n")
		for _, row := range s.rows {
			ref, ok := res.refs[row.m.id]
			if !ok {
				continue
			}
			r := row.wf / median(ref)
			t := refTargets[row.m.id]
			p("| %s | %s | %s | %s | %s | %s | %s |\n", row.m.label, refNames[row.m.id], fmtNum(median(ref)), fmtNum(row.wf), fmtRatio(r), fmtTarget(t), met(r, t))
		}
	}
	if len(res.notes) > 0 {
		p("\n## Notes from the runs\n\n")
		for _, n := range res.notes {
			p("- %s\n", n)
		}
	}

	if len(res.http) > 0 {
		p("\n## Raw HTTP ceiling\n\n")
		p("Every chunk of `%s` fetched straight from the volume server (`GET /<fid>`, body discarded) by this process, ", seqPath)
		p("with N connections at once, in the same run. Cold: right after dropping the kernel's caches, so the volume server reads its disk; warm: again right after.\n\n")
		p("| case | median MB/s | runs |\n|---|--:|---|\n")
		for _, hc := range httpCases {
			p("| %s | %s | %s |\n", hc, fmtNum(median(res.http[hc])), joinNums(res.http[hc]))
		}
	}

	if res.peers != nil {
		writePeers(p, o, info, res)
	}

	writeCPU(p, res)

	p("\n## Peak RSS by workload\n\n")
	p("VmHWM of the mount process, the largest over the runs. Every workload starts a fresh mount, so this is that workload's peak. ")
	p("Both mounts have `-cacheCapacityMB=%d` unless the workload says otherwise, and their default memory (`-readerCacheSizeMB=256`).\n\n", res.cacheMB)
	p("| workload | weed mount MiB | weedfuse MiB |\n|---|--:|--:|\n")
	for _, st := range res.steps {
		p("| %s | %s | %s |\n", st.id, fmtNum(slices.Max(res.rss[weedMount][st.id])), fmtNum(slices.Max(res.rss[weedfuse][st.id])))
	}

	p("\n## Every run\n\n")
	p("| workload | unit | run | weed mount | weedfuse | ratio |\n|---|---|--:|--:|--:|--:|\n")
	for _, row := range s.rows {
		for i := range row.runsWeedfuse {
			p("| %s | %s | %d | %s | %s | %s |\n", row.m.id, row.m.unit, i+1, fmtNum(row.runsWeed[i]), fmtNum(row.runsWeedfuse[i]),
				fmtRatio(ratio(row.m, row.runsWeed[i], row.runsWeedfuse[i])))
		}
	}

	writeSetup(p, o, info, res)
	if err := os.WriteFile(filepath.Join(o.out, "results.md"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	title := "weedfuse vs weed mount: median ratio, higher is better (log scale)"
	subtitle := fmt.Sprintf("%s, %d run(s), %d cores, weed %s", info.date.Format("2006-01-02"), res.runs, info.cores, info.weed)
	if res.peers != nil {
		if err := writePeerChart(o.out, subtitle, res); err != nil {
			return err
		}
	}
	return writeChart(filepath.Join(o.out, "results.png"), title, subtitle, s.bars())
}

// refNames and refTargets name each reference and the share of it that
// weedfuse is to reach.
var (
	refNames = map[string]string{
		"beyond-rand4k":  "ranged 4 KiB GETs, 4 at a time, bare HTTP/1.1 keep-alive",
		"dataset-epoch2": "the loader on a local directory",
		"disk-reread":    "a local file",
	}
	refTargets = map[string]float64{"beyond-rand4k": 0.8, "dataset-epoch2": 0.7, "disk-reread": 0.8}
)

// writeSetup describes how the numbers were taken.
func writeSetup(p func(string, ...any), o *options, info *sysInfo, res *results) {
	p("\n## Setup\n\n")
	p("- Machine: %s. Load average (1, 5, 15 min) %s before, %s after. The machine is shared, so absolute figures drift; compare the ratios, taken in one run.\n",
		info.machine(), info.loadBefore, info.loadAfter)
	p("- Software: %s, weed %s, weedfuse ", info.goVersion, info.weed)
	if o.weedfuse != "" {
		p("prebuilt binary `%s` (repository at %s).\n", o.weedfuse, info.commit)
	} else {
		p("built from %s.\n", info.commit)
	}
	p("- Cluster: one master, one volume server and one filer (`-maxMB=4`, so 4 MiB chunks) on 127.0.0.1, data on the local disk. ")
	p("Data: `%s`, 1 GiB of random bytes; `%s`, %d files of 128 KiB; `%s`, %d entries of a few bytes with inline content; ",
		seqPath, smallDir, smallN, bigDir, bigN)
	p("for the workloads that load their own (when they ran): `%s/%s`, 2 GiB; `%s`, 1 GiB files written with `?maxMB=` %v (chunks of that many MiB); `%s`, the dataset of 128 KiB files; `%s`, %d entries like `%s`'s; ",
		beyondDir, beyondName, chunksDir, chunkSizes, dsDir, hugeDir, hugeN, bigDir)
	p("paths as the mounts show them, under the filer's `%s`, which both mount (`-filer.path=%s`) and where `weed s3` would serve `%s` as a bucket.\n", filerRoot, filerRoot, seqDir)
	p("- Both mounts run side by side on that cluster with their default flags, except `-cacheCapacityMB=%d -cacheDir=<a new empty directory per mount>` for both", res.cacheMB)
	if len(o.weedArgs) > 0 {
		p("; weed mount also `%s`", strings.Join(o.weedArgs, " "))
	}
	if len(o.wfArgs) > 0 {
		p("; weedfuse also `%s`", strings.Join(o.wfArgs, " "))
	}
	p(". The flag means the same for both: the on-disk chunk cache under `-cacheDir`; beside it each keeps a memory tier of `-readerCacheSizeMB` (256 by default: weed mount's reader buffers and chunk memory cache, weedfuse's block cache). ")
	p("%d MiB lets each hold the whole 1 GiB file, or the 250 MiB of small files that epoch 2 reads again, on disk within one workload (each starts with an empty cache). ", res.cacheMB)
	p("Kernel readahead (the mount's bdi `read_ahead_kb`, read after mounting): weed mount %s KiB, weedfuse %s KiB (weedfuse sets it, `-readAheadKB`).\n",
		res.readAhead[weedMount], res.readAhead[weedfuse])
	p("- Order: every run measures the raw HTTP ceiling, then each workload on weed mount and then on weedfuse.\n")
	p("- Cold: a new mount process (unmount, remount with an empty cache directory), then `sync; echo 3 > /proc/sys/vm/drop_caches`. ")
	p("Every workload starts cold. Warm: the same job again right after, without remount or dropping caches.\n")
	p("- Sequential: `fio --name=bench --filename=<mount>%s --readonly --rw=read --bs=1M --invalidate=0 --output-format=json` with ", seqPath)
	p("`--ioengine=psync --direct=0` (buffered), `--ioengine=psync --direct=1`, or `--ioengine=libaio --iodepth=16 --direct=1`. ")
	p("`--invalidate=0` keeps fio from dropping the file's pages first, so a warm run sees what an application re-reading the file would.\n")
	p("- Random: `--rw=randread --ioengine=psync --direct=1 --time_based --runtime=%v`, 4 KiB with 1 job and with `--numjobs=4 --group_reporting`, 128 KiB with 1 job; IOPS or bandwidth from fio's JSON (`iops`, `bw_bytes`). ", o.randTime)
	p("O_DIRECT keeps the kernel's page cache out: buffered, it soon holds most of the file and answers the reads itself (a first full run measured weed mount's buffered 128 KiB job at 252 MB/s in one run and 6255 in the next). ")
	p("The mounts' own caches still fill: with %d MiB each, both can end up holding the whole 1 GiB file, so a long job measures their hit path more than their misses.\n", res.cacheMB)
	p("- Small files: this process lists `%s` and reads each file to its end in listing order, one at a time (open, read, close), timed from the listing on. ", smallDir)
	p("Epoch 2 drops the kernel's caches (`drop_caches`) and reads them all again on the same mount, as a data loader's second epoch does.\n")
	p("- `ls -l`: `LC_ALL=C ls -l <dir>` of a fresh mount, wall time, after an untimed `ls -l /` that reloads ls, its libraries and /etc/passwd from disk. ")
	p("One default differs between the two: weedfuse serves no xattrs unless `-disableXAttr=false` (weed mount serves them), so the kernel, told ENOSYS once, stops sending the two getxattr calls (`security.selinux`, `system.posix_acl_access`) that `ls -l` makes per file. ")
	p("The row with `-disableXAttr=false` compares like with like.\n")
	p("- Beyond the caches: `%s/%s`, 2 GiB of random bytes, read by fio as above (4 KiB, 4 jobs, O_DIRECT) with both mounts at their default cache flags (`-cacheCapacityMB=128`, `-readerCacheSizeMB=256`). ", beyondDir, beyondName)
	p("Dataset: `%s`, %d files of 128 KiB, read by `integration/bench/loader.py` (a DataLoader-style loader: shuffled, batches of 32 handed round-robin to %d worker processes), two epochs on one mount, caches dropped before each; both mounts with `-cacheCapacityMB=8192` and their default 256 MiB of memory. ", dsDir, dsN(o), dsWorkers)
	p("Disk re-read: the 1 GiB file read once and again after dropping the caches, both mounts with `-cacheCapacityMB=2048`.\n")
	p("- MB/s is 10⁶ bytes per second. Peak RSS is VmHWM from `/proc/<pid>/status` of the mount process.\n")
}

func joinNums(vs []float64) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmtNum(v)
	}
	return strings.Join(s, ", ")
}

// writeCPU tells where the machine's CPU went in each workload: what
// bounds a mount on a small machine is as often CPU as the network.
func writeCPU(p func(string, ...any), res *results) {
	p("\n## Where the CPU goes\n\n")
	p("Medians over the runs of each workload's measured part (for the sequential ones, the cold read of 1 GiB alone): ")
	p("wall time; the machine's busy cores on average (every process and the kernel; %d cores in all); ", runtime.NumCPU())
	p("and the CPU seconds (user + system, so the kernel's copies on their behalf included) of the mount, or of this process for raw HTTP, and of the volume server.\n\n")
	p("| workload | reader | wall s | busy cores | reader CPU s | volume server CPU s |\n|---|---|--:|--:|--:|--:|\n")
	for _, hc := range httpCases {
		if uses := res.httpCPU[hc]; len(uses) > 0 {
			u := medianUse(uses)
			p("| raw HTTP, %s | this process | %.2f | %.2f | %.2f | %.2f |\n", hc, u.wall, u.cores, u.procs[0], u.procs[1])
		}
	}
	for _, st := range res.steps {
		for _, k := range res.mounts {
			if uses := res.cpu[k][st.id]; len(uses) > 0 {
				u := medianUse(uses)
				p("| %s | %s | %.2f | %.2f | %.2f | %.2f |\n", st.id, k, u.wall, u.cores, u.procs[0], u.procs[1])
			}
		}
	}
}
