package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/integration/mount"
)

// metricsAddr returns a free loopback address for -metrics.address.
func metricsAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// scrape reads the mount's counters.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	m, err := mount.Metrics(addr)
	require.NoError(t, err)
	return m
}

// fromVolumeServers is what a mount fetched from volume servers: whole
// needles and ranges.
func fromVolumeServers(m map[string]float64) float64 {
	return m["weedfuse_http_fetched_bytes_total"] + m["weedfuse_http_range_bytes_total"]
}

// rssMiB is a process's resident memory.
func rssMiB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func randomData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// TestDiskCacheChunkSizes: files of 1, 4, 16 and 64 MiB chunks read
// byte-exact, sequentially and at random, through a memory tier smaller
// than one of them; a remount over the same -cacheDir starts warm and
// fetches next to nothing from the volume servers.
func TestDiskCacheChunkSizes(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 10*time.Minute)
	files := map[string][]byte{}
	for _, mb := range []int{1, 4, 16, 64} {
		name := fmt.Sprintf("c%dm.bin", mb)
		data := randomData(uint64(mb), 2*mb<<20+12345) // three chunks, the last short
		files[name] = data
		require.NoError(t, c.PutChunked(ctx, "/dc/"+name, data, mb))
		e, err := c.Entry(ctx, "/dc", name)
		require.NoError(t, err)
		require.Greater(t, len(e.GetChunks()), 0)
		for _, ch := range e.GetChunks() {
			require.LessOrEqual(t, ch.GetSize(), uint64(mb<<20), "%s: a chunk over %d MiB", name, mb)
		}
		require.Equal(t, 3, len(e.GetChunks()), "%s: %d chunks", name, len(e.GetChunks()))
	}
	cacheDir := t.TempDir()
	args := []string{"-filer.path=/dc", "-cacheDir=" + cacheDir, "-cacheCapacityMB=1024", "-readerCacheSizeMB=32"}

	addr := metricsAddr(t)
	m := startMount(t, c, append(args, "-metrics.address="+addr)...)
	rng := rand.New(rand.NewPCG(5, 6))
	for name, want := range files {
		f, err := os.Open(filepath.Join(m.Dir, name))
		require.NoError(t, err)
		// Random 4 KiB reads first, as a shard reader makes them.
		buf := make([]byte, 4096)
		for i := 0; i < 100; i++ {
			off := rng.Int64N(int64(len(want)))
			n, err := f.ReadAt(buf, off)
			if n < len(buf) {
				require.Equal(t, int64(len(want)), off+int64(n), "%s: short read at %d: %v", name, off, err)
			}
			require.Equal(t, want[off:off+int64(n)], buf[:n], "%s at %d", name, off)
		}
		f.Close()
		got, err := os.ReadFile(filepath.Join(m.Dir, name))
		require.NoError(t, err)
		require.Equal(t, sha256.Sum256(want), sha256.Sum256(got), name)
	}
	first := scrape(t, addr)
	t.Logf("first mount: from volume servers %.0f bytes, disk written %.0f, unverified %.0f, verified ranges %.0f",
		fromVolumeServers(first), first["weedfuse_disk_written_bytes_total"], first["weedfuse_cache_unverified_bytes_total"], first["weedfuse_cache_verified_range_bytes_total"])
	require.NotZero(t, first["weedfuse_disk_written_bytes_total"])
	require.NoError(t, m.Stop())

	addr2 := metricsAddr(t)
	m2 := startMount(t, c, append(args, "-metrics.address="+addr2)...)
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(m2.Dir, name))
		require.NoError(t, err)
		require.Equal(t, sha256.Sum256(want), sha256.Sum256(got), name)
	}
	second := scrape(t, addr2)
	total := 0
	for _, d := range files {
		total += len(d)
	}
	t.Logf("remount: from volume servers %.0f bytes of %d read; disk hits %.0f bytes", fromVolumeServers(second), total, second["weedfuse_disk_hit_bytes_total"])
	require.Less(t, fromVolumeServers(second), float64(total)/100, "a warm remount fetched more than 1%")
	require.Greater(t, second["weedfuse_disk_hit_bytes_total"], float64(total)*0.9)

	// An O_DIRECT stream over the disk cache: its reads come one at a
	// time, so its readahead goes into memory (pagecache.MemoryAhead),
	// where the buffered reads above left it to the kernel.
	for name, want := range files {
		got := readODirect(t, filepath.Join(m2.Dir, name), 1<<20)
		require.Equal(t, sha256.Sum256(want), sha256.Sum256(got), name)
	}
	third := scrape(t, addr2)
	t.Logf("O_DIRECT: read ahead into memory %.0f bytes, taken %.0f", third["weedfuse_readahead_bytes_total"]-second["weedfuse_readahead_bytes_total"],
		third["weedfuse_readahead_used_bytes_total"]-second["weedfuse_readahead_used_bytes_total"])
	require.Less(t, fromVolumeServers(third), float64(total)/100, "an O_DIRECT read of the disk cache fetched")
	require.Greater(t, third["weedfuse_readahead_bytes_total"], second["weedfuse_readahead_bytes_total"], "an O_DIRECT stream read nothing ahead into memory")
}

// readODirect reads a file whole with O_DIRECT, bs bytes at a time, into a
// page-aligned buffer, as fio's direct=1 does.
func readODirect(t *testing.T, path string, bs int) []byte {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, bs, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	require.NoError(t, err)
	defer unix.Munmap(buf)
	var out []byte
	for off := int64(0); ; {
		n, err := unix.Pread(fd, buf, off)
		require.NoError(t, err)
		if n == 0 {
			return out
		}
		out = append(out, buf[:n]...)
		off += int64(n)
	}
}

// TestDiskCacheFaults: a flipped byte in a cache file, the cache directory
// removed while mounted, and a cache directory on a full disk: reads stay
// byte-exact, and the events are counted.
func TestDiskCacheFaults(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 10*time.Minute)
	want := randomData(9, 20<<20+333)
	require.NoError(t, c.Put(ctx, "/df/f.bin", want))
	check := func(m *mount.Mount) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(m.Dir, "f.bin"))
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "wrong bytes")
	}
	datFiles := func(dir string) []string {
		var out []string
		filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".dat") {
				out = append(out, p)
			}
			return nil
		})
		return out
	}

	t.Run("flipped byte", func(t *testing.T) {
		cacheDir := t.TempDir()
		args := []string{"-filer.path=/df", "-cacheDir=" + cacheDir, "-readerCacheSizeMB=16"}
		m := startMount(t, c, args...)
		check(m)
		require.NoError(t, m.Stop())
		dats := datFiles(cacheDir)
		require.Len(t, dats, 6, "one file per 4 MiB needle")
		for _, p := range dats {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			b[len(b)/3] ^= 0x20
			require.NoError(t, os.WriteFile(p, b, 0o600))
		}
		addr := metricsAddr(t)
		m2 := startMount(t, c, append(args, "-metrics.address="+addr)...)
		check(m2)
		got := scrape(t, addr)
		require.EqualValues(t, 6, got["weedfuse_disk_corrupt_total"])
	})

	t.Run("directory removed while mounted", func(t *testing.T) {
		cacheDir := t.TempDir()
		addr := metricsAddr(t)
		m := startMount(t, c, "-filer.path=/df", "-cacheDir="+cacheDir, "-readerCacheSizeMB=16", "-metrics.address="+addr)
		check(m)
		require.NoError(t, os.RemoveAll(cacheDir))
		require.NoError(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))
		check(m) // the memory tier holds 16 MiB of 20: the rest from a gone disk
		check(m)
		got := scrape(t, addr)
		require.NotZero(t, got[`weedfuse_cache_misses_total{tier="disk"}`]+got["weedfuse_disk_corrupt_total"])
		require.NotEmpty(t, datFiles(cacheDir), "the tier did not come back")
	})

	t.Run("full disk", func(t *testing.T) {
		cacheDir := t.TempDir()
		out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", cacheDir).CombinedOutput()
		require.NoError(t, err, string(out))
		t.Cleanup(func() { exec.Command("umount", "-l", cacheDir).Run() })
		m := startMount(t, c, "-filer.path=/df", "-cacheDir="+cacheDir, "-cacheCapacityMB=10000", "-readerCacheSizeMB=16")
		require.Contains(t, m.Log(), "free", "no warning about the capacity")
		for i := 0; i < 3; i++ {
			check(m)
			require.NoError(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))
		}
	})
}

// TestMemoryIsTheReaderCache: -cacheCapacityMB of 50,000 is a disk size
// and costs no memory; the mount's RSS stays within -readerCacheSizeMB
// plus the documented overhead while 64 readers read at once.
func TestMemoryIsTheReaderCache(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 10*time.Minute)
	want := randomData(11, 96<<20)
	require.NoError(t, c.Put(ctx, "/mem/f.bin", want))
	start := time.Now()
	m := startMount(t, c, "-filer.path=/mem", "-cacheDir="+t.TempDir(), "-cacheCapacityMB=50000", "-readerCacheSizeMB=64")
	t.Logf("mounted with -cacheCapacityMB=50000 in %v, RSS %d MiB", time.Since(start).Round(time.Millisecond), rssMiB(t, m.Pid()))
	errs := make(chan error, 64)
	peak := 0
	finished, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-time.After(20 * time.Millisecond):
				peak = max(peak, rssMiB(t, m.Pid()))
			case <-finished:
				return
			}
		}
	}()
	for r := 0; r < 64; r++ {
		go func() {
			f, err := os.Open(filepath.Join(m.Dir, "f.bin"))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			buf := make([]byte, 128<<10)
			for i := 0; i < 40; i++ {
				off := rng.Int64N(int64(len(want) - len(buf)))
				if _, err := f.ReadAt(buf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, want[off:off+int64(len(buf))]) {
					errs <- fmt.Errorf("wrong bytes at %d", off)
					return
				}
			}
			errs <- nil
		}()
	}
	for r := 0; r < 64; r++ {
		require.NoError(t, <-errs)
	}
	close(finished)
	<-done
	t.Logf("peak RSS with 64 readers: %d MiB (-readerCacheSizeMB=64)", peak)
	require.Less(t, peak, 64+150, "RSS beyond -readerCacheSizeMB + 150 MiB")
}

// TestShuffledScanFillsDisk: a reader opening a directory's files in no
// order (a shuffled data loader) makes the mount fill the rest of the
// directory into the disk cache, and every file still reads byte-exact.
func TestShuffledScanFillsDisk(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 10*time.Minute)
	const n = 400
	files := putDataset(ctx, t, c, "/ds/s%04d.bin", n, 100, 64<<10)
	addr := metricsAddr(t)
	m := startMount(t, c, "-filer.path=/ds", "-cacheDir="+t.TempDir(), "-metrics.address="+addr)
	rng := rand.New(rand.NewPCG(1, 1))
	order := rng.Perm(n)
	check := func(i int) { requireFile(t, filepath.Join(m.Dir, fmt.Sprintf("s%04d.bin", i)), files[i]) }
	for _, i := range order[:40] {
		check(i)
	}
	require.Eventually(t, func() bool {
		return scrape(t, addr)["weedfuse_disk_entries"] >= n
	}, time.Minute, 100*time.Millisecond, "the directory was not filled into the disk cache")
	before := fromVolumeServers(scrape(t, addr))
	for _, i := range order[40:] {
		check(i)
	}
	after := scrape(t, addr)
	t.Logf("fills %.0f; the rest of the epoch fetched %.0f bytes from volume servers", after["weedfuse_disk_fills_total"], fromVolumeServers(after)-before)
	require.Less(t, fromVolumeServers(after)-before, float64(64<<10)*10)
}

// putDataset writes n files of random bytes, 8 at a time, at the paths
// that name (a format of the file's index) gives; file i is size+i bytes
// long, of seed seed+i. It returns their contents.
func putDataset(ctx context.Context, t *testing.T, c *cluster.Cluster, name string, n int, seed uint64, size int) [][]byte {
	t.Helper()
	files := make([][]byte, n)
	err := forEachN(n, 8, func(i int) error {
		files[i] = randomData(seed+uint64(i), size+i)
		return c.Put(ctx, fmt.Sprintf(name, i), files[i])
	})
	require.NoError(t, err)
	return files
}

// requireFile reads the file at path whole and requires want's bytes.
func requireFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "%s: wrong bytes", path)
}

// forEachN runs fn(i) for i in [0, n), workers at a time, and returns the
// first error.
func forEachN(n, workers int, fn func(i int) error) error {
	errs := make(chan error, n)
	sem := make(chan struct{}, workers)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- fn(i)
		}()
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// TestListingOrderFillsDisk: a reader walking a directory's files in
// listing order makes the mount fill the files ahead of it into the disk
// cache (a prefetch round), and every file reads byte-exact.
func TestListingOrderFillsDisk(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 10*time.Minute)
	const n = 300
	files := putDataset(ctx, t, c, "/ls/l%04d.bin", n, 900, 96<<10)
	addr := metricsAddr(t)
	m := startMount(t, c, "-filer.path=/ls", "-cacheDir="+t.TempDir(), "-metrics.address="+addr)
	for i := range n {
		requireFile(t, filepath.Join(m.Dir, fmt.Sprintf("l%04d.bin", i)), files[i])
	}
	after := scrape(t, addr)
	t.Logf("fills %.0f of %d files; %.0f bytes from volume servers", after["weedfuse_disk_fills_total"], n, fromVolumeServers(after))
	require.GreaterOrEqual(t, after["weedfuse_disk_fills_total"], float64(n/2), "the files ahead of the reader were not filled into the disk cache")
}
