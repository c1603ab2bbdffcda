//go:build faults

package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// The memory measure: 64 readers read through one mount at a time, each
// file twice the size of the 128 MiB cache flag in all, and the mount's
// peak resident set (VmHWM) is what the load cost in memory.
const (
	rssReaders  = 64
	rssFiles    = 8
	rssFileSize = 32 << 20
	rssReadSize = 1 << 20
	rssRun      = 6 * time.Second
)

type rssRow struct {
	mount, flags string
	idle, peak   int64 // bytes
	read         int64 // bytes read by the readers
	took         time.Duration
	errs         int64
	wrong        int64
}

// peakRSS measures weedfuse, then weed mount, each mounted fresh on c with
// -cacheCapacityMB=128 and its other flags at their defaults.
func peakRSS(t *testing.T, ctx context.Context, c *cluster.Cluster) []rssRow {
	rng := rand.New(rand.NewPCG(11, 12))
	files := make([][]byte, rssFiles)
	for i := range files {
		files[i] = make([]byte, rssFileSize)
		fillRandom(rng, files[i])
		if err := c.Put(ctx, fmt.Sprintf("/rss/r%d.bin", i), files[i]); err != nil {
			t.Fatal(err)
		}
	}
	const flags = "-cacheCapacityMB=128"
	var rows []rssRow

	wf := startMountAt(t, c, filepath.Join(t.TempDir(), "wf"), "-filer.path=/rss", flags)
	rows = append(rows, rssLoad(t, "weedfuse", flags, wf.Dir, wf.Pid(), files))
	if err := wf.Stop(); err != nil {
		t.Errorf("stop weedfuse: %v", err)
	}
	wm, err := c.StartWeedMount(ctx, filepath.Join(t.TempDir(), "wm"), "-filer.path=/rss",
		"-cacheDir="+t.TempDir(), flags)
	if err != nil {
		t.Fatal(err)
	}
	rows = append(rows, rssLoad(t, "weed mount", flags, wm.Dir(), wm.Pid(), files))
	if err := wm.Unmount(); err != nil {
		t.Errorf("unmount weed mount: %v", err)
	}
	return rows
}

// rssLoad runs the readers on dir for rssRun and reads the peak RSS of pid.
// Reader i reads file i mod rssFiles in rssReadSize preads from a random
// offset on, wrapping at the end, dropping the kernel's pages after each.
func rssLoad(t *testing.T, name, flags, dir string, pid int, files [][]byte) rssRow {
	row := rssRow{mount: name, flags: flags}
	// Settled after mounting and a listing.
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	row.idle = procStatusBytes(t, pid, "VmRSS")
	var read, errs, wrong atomic.Int64
	var first sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	began := time.Now()
	for i := range rssReaders {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 13))
			data := files[i%rssFiles]
			path := filepath.Join(dir, fmt.Sprintf("r%d.bin", i%rssFiles))
			buf := make([]byte, rssReadSize)
			off := rng.Int64N(rssFileSize/rssReadSize) * rssReadSize
			f, err := os.Open(path)
			if err != nil {
				errs.Add(1)
				first.Do(func() { t.Logf("%s: %v", name, err) })
				return
			}
			defer f.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, err := f.ReadAt(buf, off)
				unix.Fadvise(int(f.Fd()), off, int64(n), unix.FADV_DONTNEED)
				if err != nil {
					errs.Add(1)
					first.Do(func() { t.Logf("%s: read at %d: %v", name, off, err) })
					time.Sleep(50 * time.Millisecond)
				} else if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
					for j := range n {
						if buf[j] != data[off+int64(j)] {
							wrong.Add(1)
						}
					}
				}
				read.Add(int64(n))
				off = (off + rssReadSize) % rssFileSize
			}
		})
	}
	time.Sleep(rssRun)
	close(stop)
	wg.Wait()
	row.took = time.Since(began)
	row.peak = procStatusBytes(t, pid, "VmHWM")
	row.read, row.errs, row.wrong = read.Load(), errs.Load(), wrong.Load()
	t.Logf("peak RSS %+v", row)
	return row
}

// procStatusBytes reads a "kB" field of /proc/<pid>/status.
func procStatusBytes(t *testing.T, pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status: %s: %v", pid, field, err)
		}
		return kb << 10
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}
