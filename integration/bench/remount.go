package main

// Workloads of the disk-cache issue that are about the mount's process
// rather than one read pattern: a remount over a warm cache directory, the
// start of a mount with a disk cache of 50,000 MiB, and the memory of 64
// concurrent readers at the default flags.

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// remountStep reads the 1 GiB file through a fresh mount, remounts over the
// same cache directory, drops the kernel's caches and reads it again: the
// second pass is served by a warm disk cache, and the volume server sends
// next to nothing. What it sent in each pass is measured at the volume
// server (its process's socket writes, wchar), for both mounts alike.
func remountStep() step {
	id := "remount"
	return step{
		id:        id,
		cacheArgs: []string{"-cacheCapacityMB=2048"},
		metrics: []metric{{id: "remount-pass2", label: "1 GiB file read again after a remount over the same cache directory (page cache dropped)",
			short: "remount, warm cache", unit: "MB/s", target: 0}},
		run: func(ctx context.Context, root string, cpu *cpuMeter, x *stepCtx) ([]float64, error) {
			file := filepath.Join(root, seqPath)
			sent0, err := volumeSent(x)
			if err != nil {
				return nil, err
			}
			if _, err := readFileMBps(file); err != nil {
				return nil, err
			}
			sent1, err := volumeSent(x)
			if err != nil {
				return nil, err
			}
			if err := x.m.remount(ctx, x.k); err != nil {
				return nil, err
			}
			v, err := readFileMBps(file)
			if err != nil {
				return nil, err
			}
			sent2, err := volumeSent(x)
			if err != nil {
				return nil, err
			}
			x.res.notes = append(x.res.notes, fmt.Sprintf("%s, %s: the volume server sent %.0f MiB in the first pass and %.1f MiB in the second, after the remount.",
				id, x.k, float64(sent1-sent0)/(1<<20), float64(sent2-sent1)/(1<<20)))
			return []float64{v}, nil
		},
	}
}

// startCacheMB is the start workload's -cacheCapacityMB: a disk cache size
// weed mount users set.
const startCacheMB = 50000

// startStep mounts with -cacheCapacityMB=startCacheMB and reports how long
// the mount took to serve its root.
func startStep() step {
	return step{
		id:        "start",
		cacheArgs: []string{fmt.Sprintf("-cacheCapacityMB=%d", startCacheMB)},
		metrics: []metric{{id: "start-50000", label: "mount with -cacheCapacityMB=50000, until the root answers", short: "mount, 50,000 MiB cache",
			unit: "s", lower: true}},
		run: func(ctx context.Context, root string, cpu *cpuMeter, x *stepCtx) ([]float64, error) {
			return []float64{x.m.mountTook[x.k].Seconds()}, nil
		},
	}
}

// readers64Step runs 64 readers at once at the default cache flags, each
// reading its own 16 MiB of the 1 GiB file in 1 MiB reads, for the peak
// RSS the report shows beside each workload.
func readers64Step() step {
	return step{
		id:        "readers64",
		cacheArgs: []string{},
		metrics:   []metric{{id: "readers64", label: "64 concurrent readers, 16 MiB each of the 1 GiB file, default cache flags", short: "64 readers", unit: "MB/s"}},
		run: func(ctx context.Context, root string, cpu *cpuMeter, x *stepCtx) ([]float64, error) {
			file := filepath.Join(root, seqPath)
			const readers, each = 64, 16 << 20
			began := time.Now()
			err := forEach(ctx, readers, readers, func(ctx context.Context, i int) error {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				n, err := io.Copy(io.Discard, io.NewSectionReader(f, int64(i)*each, each))
				if err == nil && n != each {
					err = fmt.Errorf("reader %d: %d bytes, want %d", i, n, each)
				}
				return err
			})
			if err != nil {
				return nil, err
			}
			return []float64{readers * each / time.Since(began).Seconds() / 1e6}, nil
		},
	}
}

// readFileMBps reads a file whole and returns its rate.
func readFileMBps(file string) (float64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	began := time.Now()
	n, err := io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", file, err)
	}
	return float64(n) / time.Since(began).Seconds() / 1e6, nil
}

// volumeSent is what the volume server's process has written so far, to
// sockets mostly: /proc/PID/io's wchar.
func volumeSent(x *stepCtx) (int64, error) {
	pid := volumePid(x.c)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, fmt.Errorf("volume server's I/O: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "wchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	log.Printf("no wchar in /proc/%d/io", pid)
	return 0, nil
}
