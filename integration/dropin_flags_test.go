package integration

// weed mount's flags as weedfuse reads them, against the stock weed mount
// (4.48) on the same cluster: each test holds a place where a flag, or weed
// mount's handling of -dir and -options, once meant something else in
// weedfuse (found by an audit of every flag `weed mount -h` lists).

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/integration/mount"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// dropinMount starts weedfuse at dir with its own disk cache and stops it
// when the test ends, without failing the test on how it stops.
func dropinMount(t *testing.T, c *cluster.Cluster, dir string, args ...string) (*mount.Mount, error) {
	t.Helper()
	all := append([]string{"-filer=" + c.FilerMountSpec(), "-cacheDir=" + t.TempDir()}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := mount.Start(ctx, weedfuseBin, dir, 20*time.Second, all...)
	if err == nil {
		t.Cleanup(func() { m.Stop() })
	}
	return m, err
}

// dropinWeedMount starts the stock weed mount at dir.
func dropinWeedMount(t *testing.T, c *cluster.Cluster, dir string, args ...string) *cluster.WeedMount {
	t.Helper()
	wm, err := c.StartWeedMount(ctxT(t, time.Minute), dir, args...)
	if err != nil {
		t.Fatalf("weed mount %v: %v", args, err)
	}
	t.Cleanup(func() { wm.Unmount() })
	return wm
}

// readAsNobody reads path as uid/gid 65534 and returns the error, if any.
func readAsNobody(path string) error {
	cmd := exec.Command("cat", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(string(out)))
	}
	return nil
}

func TestDropInFlagsAgainstWeedMount(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 4*time.Minute)
	now := time.Now().Unix()
	// Root's files: one only root may read, one anyone may.
	for name, mode := range map[string]os.FileMode{"secret": 0o600, "public": 0o644} {
		resp, err := c.FilerClient().CreateEntry(ctx, &filerpb.CreateEntryRequest{Directory: "/", Entry: &filerpb.Entry{
			Name: name, Content: []byte(name + "\n"),
			Attributes: &filerpb.FuseAttributes{FileMode: uint32(mode), FileSize: uint64(len(name) + 1), Mtime: now, Crtime: now},
		}})
		if err != nil || resp.Error != "" {
			t.Fatalf("create /%s: %v %s", name, err, resp.GetError())
		}
	}

	// weed mount checks the permission bits itself when the kernel does
	// not (-defaultPermissions=false: weed/mount/weedfs_filehandle.go,
	// hasAccess on open). weedfuse keeps the kernel's check either way: a
	// mount that dropped it and made none would let every local user
	// (-allowOthers, the default) read every file.
	t.Run("defaultPermissions=false keeps permissions", func(t *testing.T) {
		// Mount points other users can reach (t.TempDir is 0700).
		base, err := os.MkdirTemp("/tmp", "weedfuse-dropin-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatal(err)
		}
		wm := dropinWeedMount(t, c, filepath.Join(base, "weed"), "-defaultPermissions=false")
		m, err := dropinMount(t, c, filepath.Join(base, "ours"), "-defaultPermissions=false")
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{wm.Dir(), m.Dir} {
			if err := readAsNobody(filepath.Join(dir, "public")); err != nil {
				t.Fatalf("nobody cannot read a 0644 file through %s: %v", dir, err)
			}
		}
		weedErr := readAsNobody(filepath.Join(wm.Dir(), "secret"))
		ourErr := readAsNobody(filepath.Join(m.Dir, "secret"))
		t.Logf("uid 65534 reading root's 0600 file: weed mount: %v; weedfuse: %v", weedErr, ourErr)
		if weedErr == nil {
			t.Fatal("weed mount let uid 65534 read a 0600 file; the premise is wrong")
		}
		if ourErr == nil {
			t.Errorf("weedfuse -defaultPermissions=false let uid 65534 read root's 0600 file, which weed mount refuses")
		}
	})

	// weed mount caps df's size at -collectionQuotaMB (weedfs_stats.go);
	// weedfuse caps it the same way.
	t.Run("collectionQuotaMB shows in df", func(t *testing.T) {
		base := t.TempDir()
		wm := dropinWeedMount(t, c, filepath.Join(base, "weed"), "-collectionQuotaMB=5")
		m, err := dropinMount(t, c, filepath.Join(base, "ours"), "-collectionQuotaMB=5")
		if err != nil {
			t.Fatal(err)
		}
		size := func(dir string) uint64 {
			var st syscall.Statfs_t
			if err := syscall.Statfs(dir, &st); err != nil {
				t.Fatalf("statfs %s: %v", dir, err)
			}
			return st.Blocks * uint64(st.Bsize)
		}
		weed, ours := size(wm.Dir()), size(m.Dir)
		t.Logf("df size with -collectionQuotaMB=5: weed mount %d, weedfuse %d", weed, ours)
		if weed != 5<<20 {
			t.Fatalf("weed mount's size is %d, not 5 MiB; the premise is wrong", weed)
		}
		if ours != weed {
			t.Errorf("weedfuse reports %d bytes where weed mount reports the quota, %d", ours, weed)
		}
	})

	// weed mount mounts over a non-empty directory without -nonempty (on
	// Linux's fuse3 the option changes nothing), and so does weedfuse.
	t.Run("non-empty mount point", func(t *testing.T) {
		base := t.TempDir()
		for _, d := range []string{"weed", "ours"} {
			if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(base, d, ".keep"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dropinWeedMount(t, c, filepath.Join(base, "weed"))
		if _, err := dropinMount(t, c, filepath.Join(base, "ours")); err != nil {
			t.Errorf("weedfuse refuses a non-empty mount point that weed mount mounts over:\n%v", err)
		}
	})

	// weed mount unmounts whatever is left at -dir before it mounts
	// (mount_std.go, unmount.Unmount), so a restart after a crash just
	// works; so does weedfuse (it detaches the dead mount).
	t.Run("stale mount point after a crash", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ours")
		m, err := dropinMount(t, c, dir)
		if err != nil {
			t.Fatal(err)
		}
		syscall.Kill(m.Pid(), syscall.SIGKILL)
		<-m.Done()
		t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
		if _, err := os.ReadDir(dir); !errors.Is(err, syscall.ENOTCONN) {
			t.Fatalf("listing the dead mount: %v, want ENOTCONN", err)
		}
		if _, err := dropinMount(t, c, dir); err != nil {
			t.Errorf("weedfuse does not mount over its own dead mount, as weed mount does:\n%v", err)
		}
	})

	// weed resolves a leading ~ in -cacheDir (and -dir) to the user's home
	// (util.ResolvePath), and so does weedfuse (once it made a directory
	// named "~" in its working directory).
	t.Run("cacheDir with ~", func(t *testing.T) {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		name := "weedfuse-dropin-" + strconv.Itoa(os.Getpid())
		want := filepath.Join(u.HomeDir, name)
		t.Cleanup(func() { os.RemoveAll(want) })
		wd := t.TempDir()
		t.Chdir(wd)
		dir := filepath.Join(t.TempDir(), "ours")
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		m, err := mount.Start(mctx, weedfuseBin, dir, 20*time.Second, "-filer="+c.FilerMountSpec(), "-cacheDir=~/"+name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Stop() })
		if _, err := os.ReadFile(filepath.Join(dir, "public")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(want, "weedfuse")); err != nil {
			_, litErr := os.Stat(filepath.Join(wd, "~", name))
			t.Errorf("-cacheDir=~/%s: no cache under %s (%v); a literal ./~/%s in the working directory: %v", name, want, err, name, litErr == nil)
		}
	})
}

// weed's -options file (weed/util/fla9 ParseFile) takes "name=value",
// "name value" and "name: value" lines and skips names it does not know;
// weedfuse reads the same forms (it stops at a name it does not know,
// which the README gives as stricter).
func TestOptionsFileInWeedForms(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	opts := filepath.Join(t.TempDir(), "mount.options")
	if err := os.WriteFile(opts, []byte("umask 077\ncacheCapacityMB: 64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runWeedfuse(t, 30*time.Second, "-options="+opts, "-filer=127.0.0.1:1", "-filer.startTimeout=1ns", "-dir="+dir, "-dirAutoCreate")
	if !strings.Contains(out, "no filer reachable") {
		t.Errorf("an options file weed mount reads stops weedfuse before it dials the filer (exit %d):\n%s", code, out)
	}
}

// Flags that change how much memory the mount uses, or what df shows, are
// read, not accepted and dropped with a warning.
func TestFlagsThatShowAreNotIgnored(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	args := []string{"-filer=127.0.0.1:1", "-filer.startTimeout=1ns", "-dir=" + dir, "-dirAutoCreate",
		"-memoryLimitMB=64", "-cacheDirMaxEntries=1000", "-dirIdleEvictSec=30",
		"-collectionQuotaMB=5", "-df.logical"}
	_, out, _ := runWeedfuse(t, 30*time.Second, args...)
	for _, name := range []string{"memoryLimitMB", "cacheDirMaxEntries", "dirIdleEvictSec", "collectionQuotaMB", "df.logical"} {
		if strings.Contains(out, "-"+name+" is a weed mount flag that a read-only mount does not use; ignored") {
			t.Errorf("-%s is ignored, but in weed mount it changes %s", name, map[string]string{
				"memoryLimitMB":      "the Go runtime's memory limit",
				"cacheDirMaxEntries": "which directories' listings are kept in memory",
				"dirIdleEvictSec":    "how long idle directories' listings stay in memory",
				"collectionQuotaMB":  "the size df shows",
				"df.logical":         "the sizes df shows",
			}[name])
		}
	}
}
