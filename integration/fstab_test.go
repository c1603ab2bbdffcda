package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// TestFstab mounts through /etc/fstab, as an operator would: `mount DIR`
// runs mount.fuse3, which runs `weedfuse fuse DIR -o OPTIONS` found on
// PATH, which must come back once the mount is up and leave a daemon
// serving it; `umount DIR` must end that daemon. It all happens in a
// private mount namespace (unshare -m) where a temporary fstab is bound
// over /etc/fstab and the weedfuse under test over /usr/local/sbin (on the
// PATH that mount gives helpers), so the host's fstab is never touched.
func TestFstab(t *testing.T) {
	for _, tool := range []string{"unshare", "mount", "umount", "findmnt"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	if _, err := os.Stat("/sbin/mount.fuse3"); err != nil {
		t.Fatalf("mount.fuse3 (fuse3): %v", err)
	}
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 2*time.Minute)
	data := bytes.Repeat([]byte("through fstab "), 100_000)
	require.NoError(t, c.Put(ctx, "/data/sub/f.bin", data))
	require.NoError(t, c.Put(ctx, "/elsewhere.txt", []byte("not under filer.path")))

	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	bad := filepath.Join(tmp, "bad")
	require.NoError(t, os.Mkdir(mnt, 0o755))
	require.NoError(t, os.Mkdir(bad, 0o755))
	fstab := filepath.Join(tmp, "fstab")
	require.NoError(t, os.WriteFile(fstab, []byte(fmt.Sprintf(
		"# weedfuse test fstab\n"+
			"fuse %s fuse.weedfuse filer=%s,filer.path=/data,cacheDir=%s,_netdev,nofail,x-systemd.automount 0 0\n"+
			"fuse %s fuse.weedfuse filer=%s,bogus=1 0 0\n",
		mnt, c.FilerMountSpec(), filepath.Join(tmp, "cache"), bad, c.FilerMountSpec())), 0o644))

	// Each step prints a marker the test checks; the mount's own log goes
	// to stderr, shared by the daemon.
	script := fmt.Sprintf(`set -u
mount --bind %[1]q /etc/fstab
mount --bind %[2]q /usr/local/sbin
mount %[3]q; echo "MOUNT rc=$?"
echo "FSTYPE $(findmnt -n -o FSTYPE --target %[3]q)"
cmp %[3]q/sub/f.bin %[5]q && echo "CONTENT ok"
[ -e %[3]q/elsewhere.txt ] || echo "ROOT ok"
touch %[3]q/new 2>/dev/null || echo "READONLY ok"
weedfuse stats -count=1 -interval=100ms %[3]q >/dev/null && echo "STATS ok"
mount %[4]q; echo "BAD rc=$?"
umount %[3]q; echo "UMOUNT rc=$?"
`, fstab, filepath.Dir(weedfuseBin), mnt, bad, filepath.Join(tmp, "want"))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "want"), data, 0o644))

	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	defer killDaemons(t, mnt)
	text := out.String()
	require.NoError(t, err, text)
	for _, want := range []string{
		"MOUNT rc=0\n", "FSTYPE fuse.seaweedfs\n" /* fstab names the helper; the mount shows weed mount's type */, "CONTENT ok\n", "ROOT ok\n", "READONLY ok\n",
		"STATS ok\n", "UMOUNT rc=0\n", `unknown mount option "bogus=1"`,
	} {
		assert.Contains(t, text, want)
	}
	assert.NotContains(t, text, "BAD rc=0\n", "a mount with an unknown option must fail")
	// The daemon ends with its mount.
	deadline := time.Now().Add(10 * time.Second)
	for len(daemonsOf(mnt)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	assert.Empty(t, daemonsOf(mnt), "weedfuse still running after umount")
	t.Logf("output:\n%s", text)
}

// daemonsOf lists the pids of `weedfuse fuse DIR` processes.
func daemonsOf(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "fuse\x00"+dir+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killDaemons ends daemons a failed test left behind (by pid: they are
// this test's), which also ends their private namespaces and mounts.
func killDaemons(t *testing.T, dir string) {
	for _, pid := range daemonsOf(dir) {
		t.Logf("killing leftover weedfuse %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
