package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// metric is one number that a workload yields on each mount.
type metric struct {
	id     string
	label  string // in the tables
	short  string // on the chart
	unit   string
	lower  bool    // lower is better (seconds): the ratio is then weed mount / weedfuse
	target float64 // the ratio the issue asks for; 0 for none
}

// step is a workload: it runs on a fresh mount (see mounter.fresh) and
// yields one value per metric, in order.
type step struct {
	id      string
	metrics []metric
	// wfArgs are extra weedfuse flags for this workload alone.
	wfArgs []string
	// run runs the workload; it may stop cpu after the part whose CPU
	// use is worth reporting (runStep stops it at the end otherwise).
	run func(ctx context.Context, root string, cpu *cpuMeter, x *stepCtx) ([]float64, error)
	// prepare, when set, loads what the workload needs, once, before its
	// first run.
	prepare func(ctx context.Context, x *stepCtx) error
	// cacheArgs replace the -cacheCapacityMB that both mounts get
	// otherwise (nil: the common one; empty: each mount's defaults).
	cacheArgs []string
	// metadata marks a workload whose memory is the metadata of many
	// entries, which the bound on weedfuse's RSS does not cover (see the
	// README): its peak RSS is reported on a row of its own.
	metadata bool
}

// steps are the workloads in the order they run.
func steps(randTime time.Duration) []step {
	return []step{
		seqStep("seq-buf", "buffered", "buf", fioJob{engine: "psync"}, 2),
		seqStep("seq-direct", "O_DIRECT, psync", "direct", fioJob{engine: "psync", direct: true}, 0),
		seqStep("seq-aio", "O_DIRECT, libaio iodepth 16", "aio", fioJob{engine: "libaio", direct: true, iodepth: 16}, 0),
		randStep("rand4k-1", "random 4 KiB, O_DIRECT, 1 job", "rand 4k 1 job", "IOPS", fioJob{bs: "4k", jobs: 1, runtime: randTime}, 0),
		randStep("rand4k-4", "random 4 KiB, O_DIRECT, 4 jobs", "rand 4k 4 jobs", "IOPS", fioJob{bs: "4k", jobs: 4, runtime: randTime}, 3),
		randStep("rand128k", "random 128 KiB, O_DIRECT, 1 job", "rand 128k", "MB/s", fioJob{bs: "128k", jobs: 1, runtime: randTime}, 0),
		{
			id: "small",
			metrics: []metric{
				{id: "small-cold", label: "2000 × 128 KiB files in listing order, cold", short: "small files cold", unit: "files/s", target: 2},
				{id: "small-epoch2", label: "the same, epoch 2 (page cache dropped, no remount)", short: "small files epoch 2", unit: "files/s", target: 5},
			},
			run: func(ctx context.Context, root string, cpu *cpuMeter, _ *stepCtx) ([]float64, error) {
				dir := filepath.Join(root, smallDir)
				first, err := readSmallFiles(ctx, dir)
				if err != nil {
					return nil, err
				}
				if err := dropCaches(); err != nil {
					return nil, err
				}
				second, err := readSmallFiles(ctx, dir)
				if err != nil {
					return nil, err
				}
				return []float64{first, second}, nil
			},
		},
		lsStep("ls2000", smallDir, smallN, ""),
		lsStep("ls10000", bigDir, bigN, ""),
		// Like for like: weedfuse serving xattrs, as weed mount does by
		// default, so each entry costs both mounts the same two round
		// trips for security.selinux and the ACL.
		lsStep("ls10000-xattr", bigDir, bigN, "-disableXAttr=false"),
		hugeStep(),
		beyondRandStep(randTime),
		chunksStep(randTime),
		remountStep(),
		startStep(),
		readers64Step(),
		datasetStep(),
		diskRereadStep(),
	}
}

// stepIDs lists the workloads, for -only.
func stepIDs() []string {
	var ids []string
	for _, s := range steps(0) {
		ids = append(ids, s.id)
	}
	return ids
}

// seqStep reads the 1 GiB file once, bs=1M, cold and then warm.
func seqStep(id, how, short string, j fioJob, coldTarget float64) step {
	j.rw, j.bs = "read", "1M"
	return step{
		id: id,
		metrics: []metric{
			{id: id + "-cold", label: "sequential 1 GiB, " + how + ", cold", short: "seq " + short + " cold", unit: "MB/s", target: coldTarget},
			{id: id + "-warm", label: "sequential 1 GiB, " + how + ", warm", short: "seq " + short + " warm", unit: "MB/s"},
		},
		run: func(ctx context.Context, root string, cpu *cpuMeter, _ *stepCtx) ([]float64, error) {
			var vals []float64
			for range 2 {
				r, err := runFio(ctx, filepath.Join(root, seqPath), seqSize, j)
				if err != nil {
					return nil, err
				}
				cpu.stop() // the cold read's use, not the warm one's
				vals = append(vals, r.bw/1e6)
			}
			return vals, nil
		},
	}
}

// randStep reads the 1 GiB file at random offsets for a fixed time, from a
// cold start. The reads are O_DIRECT: buffered, the kernel's page cache
// soon holds most of the file and answers the reads itself, the sooner the
// faster the mount, and a 128 KiB job ends up measuring memory bandwidth.
func randStep(id, label, short, unit string, j fioJob, target float64) step {
	j.rw, j.engine, j.direct = "randread", "psync", true
	return step{
		id:      id,
		metrics: []metric{{id: id, label: label, short: short, unit: unit, target: target}},
		run: func(ctx context.Context, root string, cpu *cpuMeter, _ *stepCtx) ([]float64, error) {
			r, err := runFio(ctx, filepath.Join(root, seqPath), seqSize, j)
			if err != nil {
				return nil, err
			}
			if unit == "IOPS" {
				return []float64{r.iops}, nil
			}
			return []float64{r.bw / 1e6}, nil
		},
	}
}

// hugeStep lists a directory of hugeN entries, cold: the mount then holds
// a node and an entry for each one the kernel holds.
func hugeStep() step {
	s := lsStep("ls100000", hugeDir, hugeN, "")
	s.metadata = true
	s.prepare = func(ctx context.Context, x *stepCtx) error { return loadHuge(ctx, x.c) }
	return s
}

// lsStep times `ls -l` of a directory of n entries, cold, with weedfuse
// given wfArg (none when empty; such a run has no target, being a
// comparison beside the one the issue sets).
func lsStep(id, dir string, n int, wfArg string) step {
	what := fmt.Sprintf("%d", n)
	if n >= 10_000 {
		what = fmt.Sprintf("%d,%03d", n/1000, n%1000)
	}
	label, short, target := "`ls -l` of "+what+" entries, cold", "ls -l "+what, 5.0
	var wfArgs []string
	if wfArg != "" {
		label += ", weedfuse with `" + wfArg + "`"
		short += " " + strings.TrimLeft(strings.SplitN(wfArg, "=", 2)[0], "-")
		target, wfArgs = 0, []string{wfArg}
	}
	return step{
		id:     id,
		wfArgs: wfArgs,
		metrics: []metric{{
			id: id, label: label, short: short,
			unit: "s", lower: true, target: target,
		}},
		run: func(ctx context.Context, root string, cpu *cpuMeter, _ *stepCtx) ([]float64, error) {
			// Dropping the caches also evicted ls, its libraries and the
			// user and group files it reads; loading them from disk would
			// count against both mounts alike and blur the ratio.
			warm := exec.CommandContext(ctx, "ls", "-l", "/")
			warm.Env = append(os.Environ(), "LC_ALL=C")
			if out, err := warm.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%v: %w: %s", warm.Args, err, bytes.TrimSpace(out))
			}
			cmd := exec.CommandContext(ctx, "ls", "-l", filepath.Join(root, dir))
			cmd.Env = warm.Env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			began := time.Now()
			err := cmd.Run()
			took := time.Since(began)
			if err != nil {
				return nil, fmt.Errorf("%v: %w: %s", cmd.Args, err, bytes.TrimSpace(stderr.Bytes()))
			}
			// One line per entry after the "total" line.
			if lines := bytes.Count(stdout.Bytes(), []byte("\n")); lines != n+1 {
				return nil, fmt.Errorf("%v printed %d lines, want %d", cmd.Args, lines, n+1)
			}
			return []float64{took.Seconds()}, nil
		},
	}
}

// readSmallFiles lists dir and reads every file in listing order, one at a
// time, as a data loader's epoch does, and returns files per second.
func readSmallFiles(ctx context.Context, dir string) (float64, error) {
	began := time.Now()
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", dir, err)
	}
	if len(ents) != smallN {
		return 0, fmt.Errorf("list %s: %d entries, want %d", dir, len(ents), smallN)
	}
	// One byte more than a file, so that a longer file shows.
	buf := make([]byte, smallLen+1)
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		p := filepath.Join(dir, e.Name())
		n, err := readAll(p, buf)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", p, err)
		}
		if n != smallLen {
			return 0, fmt.Errorf("read %s: %d bytes, want %d", p, n, smallLen)
		}
	}
	return float64(len(ents)) / time.Since(began).Seconds(), nil
}

// readAll reads the file at p to its end into buf, over and over, and
// returns its length.
func readAll(p string, buf []byte) (int, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	total := 0
	for {
		n, err := f.Read(buf)
		total += n
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
