package integration

// Tests of `weedfuse warmup` and of how it and `weedfuse stats` find a
// mount: go test -run 'Warmup|Stats' ./integration/ -count=1

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// runWarmup runs `weedfuse warmup args...` with stdout and stderr apart
// (both pipes, as under cron or systemd), and returns its exit code.
func runWarmup(t *testing.T, limit time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, weedfuseBin, append([]string{"warmup"}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("weedfuse warmup %v still running after %v:\n%s%s", args, limit, o.String(), e.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// A path given through a symlink (a local /data -> /mnt/weed/data, or a
// link on the mount itself) is warmed as what it links to, where a walk
// of the link alone would find no file.
func TestWarmupSymlinkRoot(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	for i := range 3 {
		require.NoError(t, c.Put(ctx, "/ds/f"+string(rune('0'+i)), randBytes(t, 100<<10)))
	}
	require.NoError(t, c.Symlink(ctx, "/ds-link", "ds"))
	require.NoError(t, c.Symlink(ctx, "/ds/file-link", "f0"))
	m := startMount(t, c)
	local := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.Symlink(filepath.Join(m.Dir, "ds"), local))

	for _, p := range []string{local, filepath.Join(m.Dir, "ds-link"), filepath.Join(m.Dir, "ds", "file-link")} {
		code, out, errOut := runWarmup(t, time.Minute, "-quiet", p)
		t.Logf("%s: exit %d: %s%s", p, code, out, errOut)
		if strings.Contains(out, "warmed up 0 files") {
			t.Errorf("warmup %s (a symlink to data on the mount) warmed nothing and exited %d: %s", p, code, out)
		}
	}
}

// A missing path (or a dead mount) is reported by its name.
func TestWarmupNamesMissingPath(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	m := startMount(t, c)
	missing := filepath.Join(m.Dir, "no-such-dir")
	code, out, errOut := runWarmup(t, time.Minute, missing)
	require.NotZero(t, code)
	if !strings.Contains(errOut, missing) {
		t.Errorf("the error does not name the path %s:\n%s%s", missing, out, errOut)
	}
}

// A weed mount is fuse.seaweedfs too, but has no weedfuse disk cache to
// fill: warmup refuses it, as any path where no weedfuse mount answers.
func TestWarmupRejectsOtherFUSE(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	require.NoError(t, c.Put(ctx, "/w/a", randBytes(t, 10<<10)))
	wm, err := c.StartWeedMount(ctx, filepath.Join(t.TempDir(), "weedmnt"))
	require.NoError(t, err)
	t.Cleanup(func() { wm.Unmount() })
	code, out, errOut := runWarmup(t, time.Minute, filepath.Join(wm.Dir(), "w"))
	t.Logf("exit %d: %s%s", code, out, errOut)
	if code == 0 {
		t.Errorf("warmup of a weed mount exited 0 (%q); want an error saying it is not a weedfuse mount", strings.TrimSpace(out))
	}
}

// With -cacheCapacityMB=0 there is nothing to fill: warmup says so.
func TestWarmupNoDiskCache(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	require.NoError(t, c.Put(ctx, "/n/a", randBytes(t, 1<<20)))
	m := startMount(t, c, "-cacheCapacityMB=0")
	code, out, errOut := runWarmup(t, time.Minute, filepath.Join(m.Dir, "n"))
	t.Logf("exit %d: %s%s", code, out, errOut)
	if code == 0 && !strings.Contains(strings.ToLower(out+errOut), "cache") {
		t.Errorf("warmup of a mount without a disk cache succeeded silently: %s", out)
	}
}

// resident counts the pages of path in the kernel's page cache (mincore).
func resident(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	require.NoError(t, err)
	defer unix.Munmap(b)
	vec := make([]byte, (len(b)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// The mount opens files with FOPEN_KEEP_CACHE, so a buffered read of a
// file whose pages the kernel still holds never reaches the mount, and
// its needles, evicted from the disk cache, would stay out of it: warmup
// reads with O_DIRECT, which also leaves other readers' pages cached.
func TestWarmupPageCache(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 2*time.Minute)
	require.NoError(t, c.PutChunked(ctx, "/pc/f6", randBytes(t, 6<<20), 2))
	for i := range 20 {
		require.NoError(t, c.Put(ctx, "/pc/fill/g"+string(rune('a'+i)), randBytes(t, 2<<20)))
	}
	addr := metricsAddr(t)
	m := startMount(t, c, "-cacheCapacityMB=16", "-readerCacheSizeMB=16", "-metrics.address="+addr)
	f6 := filepath.Join(m.Dir, "pc", "f6")

	t.Run("page cache of other readers kept", func(t *testing.T) {
		// Read until its pages stay: an event the mount replays soon after
		// it starts (f6's creation) may drop them once (1 run in 15).
		var before int
		require.Eventually(t, func() bool {
			data, err := os.ReadFile(f6)
			require.NoError(t, err)
			require.Len(t, data, 6<<20)
			before = resident(t, f6)
			return before > 0
		}, 10*time.Second, 200*time.Millisecond)
		code, out, errOut := runWarmup(t, time.Minute, "-quiet", f6)
		require.Zero(t, code, out+errOut)
		if after := resident(t, f6); after < before {
			t.Errorf("warmup dropped a reader's cached pages: %d resident before, %d after", before, after)
		}
	})

	t.Run("warmup reaches the mount", func(t *testing.T) {
		// f6 read by someone: its pages in the kernel, its needles on disk.
		_, err := os.ReadFile(f6)
		require.NoError(t, err)
		// Other data pushes f6's needles out of both of the mount's tiers.
		code, out, errOut := runWarmup(t, time.Minute, "-quiet", filepath.Join(m.Dir, "pc", "fill"))
		require.Zero(t, code, out+errOut)
		// Warm f6, then drop its pages and read it: it should come from the
		// disk cache, with nothing fetched from volume servers.
		code, out, errOut = runWarmup(t, time.Minute, "-quiet", f6)
		require.Zero(t, code, out+errOut)
		t.Logf("warmup f6: %s", strings.TrimSpace(out))
		f, err := os.Open(f6)
		require.NoError(t, err)
		require.NoError(t, unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED))
		f.Close()
		before := fromVolumeServers(scrape(t, addr))
		_, err = os.ReadFile(f6)
		require.NoError(t, err)
		if fetched := fromVolumeServers(scrape(t, addr)) - before; fetched > 0 {
			t.Errorf("f6 was reported warmed up, but reading it fetched %.0f bytes from volume servers", fetched)
		}
	})
}

// A warm-up that takes a while, as one of a large tree does: its volume
// server is stopped (SIGSTOP), so each read waits out the fetch timeout.
// Into a pipe it draws no progress line, and Ctrl-C still gets a summary.
func TestWarmupLongRun(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	// Two sets, since the mount fails a needle's reads at once for a while
	// after its fetch failed.
	for _, d := range []string{"p", "q"} {
		for i := range 4 {
			require.NoError(t, c.Put(ctx, "/slow/"+d+"/f"+string(rune('0'+i)), randBytes(t, 300<<10)))
		}
	}
	m := startMount(t, c)
	for _, d := range []string{"p", "q"} {
		_, err := os.ReadDir(filepath.Join(m.Dir, "slow", d))
		require.NoError(t, err)
	}
	pids := c.VolumePids()
	for _, pid := range pids {
		require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})

	t.Run("no progress lines into a pipe", func(t *testing.T) {
		_, out, errOut := runWarmup(t, time.Minute, filepath.Join(m.Dir, "slow", "p"))
		if n := strings.Count(errOut, "\r"); n > 1 {
			t.Errorf("stderr is not a terminal, yet it got %d progress redraws (\\r):\n%q", n, errOut)
		}
		t.Logf("stdout: %s", out)
	})

	t.Run("SIGINT prints the summary", func(t *testing.T) {
		var o, e bytes.Buffer
		cmd := exec.Command(weedfuseBin, "warmup", "-quiet", filepath.Join(m.Dir, "slow", "q"))
		cmd.Stdout, cmd.Stderr = &o, &e
		require.NoError(t, cmd.Start())
		time.Sleep(1500 * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		err := cmd.Wait()
		t.Logf("exit: %v; stdout %q; stderr %q", err, o.String(), e.String())
		if !strings.Contains(o.String(), "warmed up") {
			t.Errorf("Ctrl-C: no summary of what was warmed before it (stdout %q)", o.String())
		}
		if code := cmd.ProcessState.ExitCode(); code != 130 {
			t.Errorf("Ctrl-C: exit %d, want 130 (128 + SIGINT, as a shell reports it)", code)
		}
	})
}

// The summary tells what the mount fetched and kept, from its metrics,
// and warns when the disk cache cannot hold what was warmed.
func TestWarmupSummary(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	for i := range 3 {
		require.NoError(t, c.Put(ctx, "/s/f"+string(rune('0'+i)), randBytes(t, 2<<20)))
	}
	for i := range 5 {
		require.NoError(t, c.Put(ctx, "/big/f"+string(rune('0'+i)), randBytes(t, 2<<20)))
	}
	m := startMount(t, c, "-cacheCapacityMB=8")

	code, out, errOut := runWarmup(t, time.Minute, filepath.Join(m.Dir, "s"))
	require.Zero(t, code, out+errOut)
	assert.Contains(t, out, "warmed up 3 files, 6.0 MiB read")
	assert.Contains(t, out, "fetched 6.0 MiB from volume servers, wrote 6.0 MiB to the disk cache; 0 evictions")
	assert.Empty(t, errOut)

	// Now on disk: nothing to fetch.
	code, out, errOut = runWarmup(t, time.Minute, filepath.Join(m.Dir, "s"))
	require.Zero(t, code, out+errOut)
	assert.Contains(t, out, "fetched 0.0 MiB from volume servers")

	code, out, errOut = runWarmup(t, time.Minute, filepath.Join(m.Dir, "big"))
	require.Zero(t, code, out+errOut)
	assert.Contains(t, errOut, "the disk cache of "+m.Dir+" (8 MiB) is smaller than what was warmed")
}

// A bad argument is reported and counted, and the others are warmed;
// a bad flag is a usage error.
func TestWarmupBadArguments(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	require.NoError(t, c.Put(ctx, "/a/f", randBytes(t, 100<<10)))
	m := startMount(t, c)
	missing := filepath.Join(m.Dir, "missing")
	code, out, errOut := runWarmup(t, time.Minute, missing, t.TempDir(), filepath.Join(m.Dir, "a"))
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "warmed up 1 file,")
	assert.Contains(t, out, "2 failed")
	assert.Contains(t, errOut, "weedfuse warmup: "+missing+": no such file or directory\n")
	assert.Contains(t, errOut, ": not on a weedfuse mount\n")
	assert.False(t, strings.HasPrefix(errOut, "\n"), "a blank line before the first error: %q", errOut)

	code, _, _ = runWarmup(t, time.Minute, "-threads=0", m.Dir)
	assert.Equal(t, 2, code)
}

// `weedfuse stats` takes a path inside the mount; run by another user
// than the mount's root, whose control socket it cannot reach, it says so.
func TestStatsPathInMountAndNotRoot(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	require.NoError(t, c.Put(ctx, "/d/f", randBytes(t, 10<<10)))
	m := startMount(t, c)
	// A copy of the binary that uid 65534 may run: weedfuseBin is in a
	// 0700 directory.
	dir, err := os.MkdirTemp("", "weedfuse-nobody-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	exe, err := os.ReadFile(weedfuseBin)
	require.NoError(t, err)
	bin := filepath.Join(dir, "weedfuse")
	require.NoError(t, os.WriteFile(bin, exe, 0o755))
	stats := func(cred *syscall.Credential, args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"stats"}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		require.NoError(t, err)
		return 0, string(out)
	}
	code, out := stats(nil, "-count=1", "-interval=100ms", filepath.Join(m.Dir, "d", "f"))
	assert.Zero(t, code, out)
	assert.Contains(t, out, "reads/s")
	code, out = stats(nil, "-count=-1", m.Dir)
	assert.Equal(t, 2, code, out)

	// The mount point is in a test's 0700 directory, which uid 65534 may
	// not even enter: the mount point comes from mountinfo alone.
	code, out = stats(&syscall.Credential{Uid: 65534, Gid: 65534}, "-count=1", m.Dir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "permission denied: run as root (the mount's control socket is ")
}
