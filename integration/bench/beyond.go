package main

// The workloads whose data is larger than every cache, or held on disk:
// random reads of a 2 GiB file at default flags, a 4 GiB dataset read by a
// shuffled multi-process loader, and a re-read of a file the disk cache
// holds. Each is compared with what the machine itself does (a bare HTTP
// client, the same loader on a local directory, a local file).

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weedfuse/weedfuse/integration/mount"
)

const (
	beyondDir  = "/bench/beyond"
	beyondName = "r2g"
	beyondSize = 2 << 30
	dsDir      = "/bench/ds"
	dsLen      = 128 << 10
	// dsWorkers is the loader's num_workers.
	dsWorkers = 8
)

// dsN is the dataset's file count: 32,768 files of 128 KiB (4 GiB), or
// 4,096 (512 MiB) with -quick.
func dsN(o *options) int {
	if o.quick {
		return 4096
	}
	return 32768
}

func dsName(i int) string { return fmt.Sprintf("s%05d.bin", i) }

// beyondRandStep: random 4 KiB reads, 4 jobs, O_DIRECT, of a 2 GiB file,
// with both mounts at their default flags (weed mount: a 128 MiB disk
// cache and 256 MiB of reader buffers; weedfuse the same sizes), so that
// the file is far larger than every cache. The reference is this process
// making ranged 4 KiB GETs at random offsets, 4 at a time, straight to the
// volume server.
func beyondRandStep(randTime time.Duration) step {
	j := fioJob{rw: "randread", engine: "psync", direct: true, bs: "4k", jobs: 4, runtime: randTime}
	id := "beyond-rand4k"
	return step{
		id:        id,
		cacheArgs: []string{},
		metrics: []metric{{id: id, label: "random 4 KiB, O_DIRECT, 4 jobs, 2 GiB file, default cache flags (beyond every cache)",
			short: "rand 4k beyond cache", unit: "IOPS", target: 1.5}},
		prepare: func(ctx context.Context, x *stepCtx) error {
			began := time.Now()
			if err := x.c.Put(ctx, onFiler(beyondDir+"/"+beyondName), randomBytes(2, beyondSize)); err != nil {
				return err
			}
			log.Printf("data: %s/%s (2 GiB) in %v", beyondDir, beyondName, time.Since(began).Round(time.Millisecond))
			return nil
		},
		run: func(ctx context.Context, root string, cpu *cpuMeter, x *stepCtx) ([]float64, error) {
			if x.k == weedMount { // once per run, beside the mounts
				iops, err := rangedGets(ctx, x, 4, 4096, randTime)
				if err != nil {
					return nil, err
				}
				x.res.refs[id] = append(x.res.refs[id], iops)
				log.Printf("  %-16s %-10s %10.4g IOPS", id, "raw HTTP", iops)
			}
			r, err := runFio(ctx, filepath.Join(root, beyondDir, beyondName), beyondSize, j)
			if err != nil {
				return nil, err
			}
			if x.k == weedfuse {
				noteVerified(x, id)
			}
			return []float64{r.iops}, nil
		},
	}
}

// rangedGets makes ranged GETs of n bytes at random offsets of the 2 GiB
// file's chunks, conns at a time, for d, and returns requests per second.
// Each worker keeps one HTTP/1.1 connection per server and writes its
// requests and reads their answers itself (http.ReadResponse), without
// net/http's Transport: the Transport's goroutines and hand-offs cost
// about as much CPU per 4 KiB GET as the GET itself, and the reference is
// meant to be what the machine can do.
func rangedGets(ctx context.Context, x *stepCtx, conns, n int, d time.Duration) (float64, error) {
	chunks, err := fileChunks(ctx, x.c, beyondDir, beyondName, beyondSize)
	if err != nil {
		return 0, err
	}
	// Each chunk's server and request line, parsed once, off the timed loop.
	type target struct{ host, uri string }
	targets := make([]target, len(chunks))
	for i, ch := range chunks {
		u, err := url.Parse(ch.url)
		if err != nil {
			return 0, err
		}
		targets[i] = target{u.Host, u.RequestURI()}
	}
	if err := dropCaches(); err != nil {
		return 0, err
	}
	var done atomic.Int64
	var firstErr error
	var mu sync.Mutex
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			buf := make([]byte, n)
			open := map[string]*bufio.ReadWriter{} // by server
			var ncs []net.Conn
			defer func() {
				for _, nc := range ncs {
					nc.Close()
				}
			}()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				i := rng.IntN(len(chunks))
				ch, tg := chunks[i], targets[i]
				off := rng.Int64N(ch.size-int64(n)) &^ 4095
				err := func() error {
					rw := open[tg.host]
					if rw == nil {
						nc, err := net.DialTimeout("tcp", tg.host, 5*time.Second)
						if err != nil {
							return err
						}
						ncs = append(ncs, nc)
						rw = bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc))
						open[tg.host] = rw
					}
					fmt.Fprintf(rw, "GET %s HTTP/1.1\r\nHost: %s\r\nRange: bytes=%d-%d\r\n\r\n", tg.uri, tg.host, off, off+int64(n)-1)
					if err := rw.Flush(); err != nil {
						return err
					}
					resp, err := http.ReadResponse(rw.Reader, nil)
					if err != nil {
						return err
					}
					_, err = readFull(resp.Body, buf)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusPartialContent {
						err = fmt.Errorf("GET %s: %s", ch.url, resp.Status)
					}
					return err
				}()
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(done.Load()) / d.Seconds(), nil
}

func readFull(r interface{ Read([]byte) (int, error) }, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			if n == len(buf) {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// noteVerified records how much of what weedfuse fetched at random it
// could verify.
func noteVerified(x *stepCtx, id string) {
	m, err := mount.Metrics(x.m.metrics)
	if err != nil {
		x.res.notes = append(x.res.notes, fmt.Sprintf("%s: metrics unavailable: %v", id, err))
		return
	}
	whole := m["weedfuse_http_fetched_bytes_total"]
	ranged := m["weedfuse_http_range_bytes_total"]
	verified := m["weedfuse_cache_verified_range_bytes_total"]
	unverified := m["weedfuse_cache_unverified_bytes_total"]
	total := whole + ranged
	if total == 0 {
		return
	}
	x.res.notes = append(x.res.notes, fmt.Sprintf(
		"%s, weedfuse: fetched %.0f MiB whole (verified) and %.0f MiB in ranges (%.0f MiB checked against block tables, %.0f MiB unverified): %.1f %% of the bytes fetched were verified; %.0f needles filled into the disk cache in the background, and %.0f into memory once it was full.",
		id, whole/(1<<20), ranged/(1<<20), verified/(1<<20), unverified/(1<<20), 100*(total-unverified)/total,
		m["weedfuse_disk_fills_total"], m["weedfuse_memory_fills_total"]))
}

// datasetStep: the dataset bigger than memory, read by a shuffled loader
// of dsWorkers processes (loader.py), two epochs on one mount, the
// kernel's caches dropped before each. Both mounts: 256 MiB of memory
// (weed mount's -readerCacheSizeMB default, weedfuse's memory tier) and an
// 8 GiB disk cache. The reference is the same loader on a local copy of
// the files on the same disk, caches dropped.
func datasetStep() step {
	id := "dataset"
	return step{
		id:        id,
		cacheArgs: []string{"-cacheCapacityMB=8192"},
		metrics: []metric{
			{id: "dataset-epoch1", label: "dataset of 128 KiB files, shuffled loader, 8 worker processes, epoch 1 (cold)", short: "dataset epoch 1", unit: "files/s", target: 2},
			{id: "dataset-epoch2", label: "the same, epoch 2 (page cache dropped; memory tier 256 MiB, the rest on disk)", short: "dataset epoch 2", unit: "files/s", target: 3},
		},
		prepare: func(ctx context.Context, x *stepCtx) error {
			began := time.Now()
			n := dsN(x.o)
			local := filepath.Join(x.work, "local-ds")
			if err := os.MkdirAll(local, 0o755); err != nil {
				return err
			}
			err := forEach(ctx, n, 8, func(ctx context.Context, i int) error {
				data := randomBytes(uint64(1_000_000+i), dsLen)
				if err := os.WriteFile(filepath.Join(local, dsName(i)), data, 0o644); err != nil {
					return err
				}
				return x.c.Put(ctx, onFiler(dsDir+"/"+dsName(i)), data)
			})
			log.Printf("data: %d files of 128 KiB in %s and %s in %v", n, dsDir, local, time.Since(began).Round(time.Millisecond))
			return err
		},
		run: func(ctx context.Context, root string, cpu *cpuMeter, x *stepCtx) ([]float64, error) {
			n := dsN(x.o)
			if x.k == weedMount {
				if err := dropCaches(); err != nil {
					return nil, err
				}
				v, err := runLoader(ctx, filepath.Join(x.work, "local-ds"), n, 7)
				if err != nil {
					return nil, err
				}
				x.res.refs["dataset-epoch2"] = append(x.res.refs["dataset-epoch2"], v)
				log.Printf("  %-16s %-10s %10.4g files/s", "dataset", "local dir", v)
			}
			var vals []float64
			var checked [2]float64 // weedfuse's disk_checked_bytes before and after epoch 2
			for epoch := 1; epoch <= 2; epoch++ {
				if err := dropCaches(); err != nil {
					return nil, err
				}
				if epoch == 2 && x.k == weedfuse {
					checked[0] = checkedBytes(x)
				}
				v, err := runLoader(ctx, filepath.Join(root, dsDir), n, uint64(epoch))
				if err != nil {
					return nil, err
				}
				vals = append(vals, v)
			}
			if x.k == weedfuse {
				checked[1] = checkedBytes(x)
				x.res.notes = append(x.res.notes, fmt.Sprintf(
					"dataset epoch 2, weedfuse: its opens read %.0f MiB of cache files to check them (0 when each file's check at its write still held).",
					(checked[1]-checked[0])/(1<<20)))
			}
			return vals, nil
		},
	}
}

// checkedBytes is weedfuse's weedfuse_disk_checked_bytes_total: what it
// read of its cache files to check them (at write, or at a passthrough
// open), or -1 when its metrics cannot be read.
func checkedBytes(x *stepCtx) float64 {
	m, err := mount.Metrics(x.m.metrics)
	if err != nil {
		return -1
	}
	return m["weedfuse_disk_checked_bytes_total"]
}

// runLoader runs loader.py over dir with seed and returns files per second.
func runLoader(ctx context.Context, dir string, n int, seed uint64) (float64, error) {
	cmd := exec.CommandContext(ctx, "python3", loaderPath(), dir, strconv.Itoa(dsWorkers), strconv.FormatUint(seed, 10))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("loader on %s: %w: %s", dir, err, out)
	}
	var files, bytes int
	var secs float64
	if _, err := fmt.Sscan(string(out), &files, &bytes, &secs); err != nil {
		return 0, fmt.Errorf("loader on %s: %q: %w", dir, out, err)
	}
	if files != n || bytes != n*dsLen {
		return 0, fmt.Errorf("loader on %s: %d files, %d bytes; want %d, %d", dir, files, bytes, n, n*dsLen)
	}
	return float64(files) / secs, nil
}

// loaderPath is loader.py beside this source file.
func loaderPath() string {
	_, file, _, _ := runtime.Caller(0)
	if p := filepath.Join(filepath.Dir(file), "loader.py"); fileExists(p) {
		return p
	}
	return filepath.Join("integration", "bench", "loader.py")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// diskRereadStep: the 1 GiB file read once (which leaves it in a 2 GiB
// disk cache), the kernel's caches dropped, and read again: from weedfuse's
// disk tier, since its 256 MiB memory tier cannot hold it. The reference is
// the same read of a local copy on the same disk, caches dropped.
func diskRereadStep() step {
	id := "disk-reread"
	j := fioJob{rw: "read", bs: "1M", engine: "psync"}
	return step{
		id:        id,
		cacheArgs: []string{"-cacheCapacityMB=2048"},
		metrics:   []metric{{id: id, label: "re-read of the 1 GiB file held in the disk cache, buffered, page cache dropped", short: "re-read from disk cache", unit: "MB/s"}},
		prepare: func(ctx context.Context, x *stepCtx) error {
			return os.WriteFile(filepath.Join(x.work, "local-seq1g"), randomBytes(0, seqSize), 0o644)
		},
		run: func(ctx context.Context, root string, cpu *cpuMeter, x *stepCtx) ([]float64, error) {
			if x.k == weedMount {
				if err := dropCaches(); err != nil {
					return nil, err
				}
				r, err := runFio(ctx, filepath.Join(x.work, "local-seq1g"), seqSize, j)
				if err != nil {
					return nil, err
				}
				x.res.refs[id] = append(x.res.refs[id], r.bw/1e6)
				log.Printf("  %-16s %-10s %10.4g MB/s", id, "local file", r.bw/1e6)
			}
			if _, err := runFio(ctx, filepath.Join(root, seqPath), seqSize, j); err != nil {
				return nil, err
			}
			// Let the last needles land on disk before the caches go.
			time.Sleep(2 * time.Second)
			if err := dropCaches(); err != nil {
				return nil, err
			}
			r, err := runFio(ctx, filepath.Join(root, seqPath), seqSize, j)
			if err != nil {
				return nil, err
			}
			return []float64{r.bw / 1e6}, nil
		},
	}
}
