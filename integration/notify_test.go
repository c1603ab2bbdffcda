package integration

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// TestSystemdNotify runs weedfuse as a Type=notify unit would: with
// $NOTIFY_SOCKET set, READY=1 must come once the mount answers (not
// before), and STOPPING=1 when SIGTERM unmounts it.
func TestSystemdNotify(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	require.NoError(t, c.Put(ctx, "/n/f.txt", []byte("ready")))

	tmp := t.TempDir()
	sockPath := filepath.Join(tmp, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	dir := filepath.Join(tmp, "mnt")

	cmd := exec.CommandContext(ctx, weedfuseBin, "-filer="+c.FilerMountSpec(), "-dir="+dir, "-dirAutoCreate")
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+sockPath, "WEEDFUSE_RUN_DIR="+filepath.Join(tmp, "run"))
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	}()

	buf := make([]byte, 4096)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	n, err := conn.Read(buf)
	require.NoError(t, err, "no notification; log:\n%s", log.String())
	assert.Contains(t, string(buf[:n]), "READY=1")
	mounted, err := cluster.IsFUSEMount(dir)
	require.NoError(t, err)
	assert.True(t, mounted, "READY=1 came before the mount was up")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	n, err = conn.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "STOPPING=1", string(buf[:n]))
	select {
	case <-exited:
		assert.NoError(t, waitErr, "log:\n%s", log.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("weedfuse did not exit on SIGTERM; log:\n%s", log.String())
	}
}

// lockedBuffer is a bytes.Buffer that a child's output goroutine may write
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SIGTERM while a file is open on the mount: the mount leaves the tree at
// once, the open file's reads go on (as after a lazy unmount), the log
// says why the process lives on, and a second SIGTERM ends it cleanly
// (exit 0, control socket removed), after which the open file's reads fail.
func TestStopWithOpenFile(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	data := randBytes(t, 1<<20)
	require.NoError(t, c.Put(ctx, "/o/f", data))
	tmp := t.TempDir()
	dir, run := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "run")
	cmd := exec.CommandContext(ctx, weedfuseBin, "-filer="+c.FilerMountSpec(), "-dir="+dir, "-dirAutoCreate", "-cacheDir="+t.TempDir())
	cmd.Env = append(cmd.Environ(), "WEEDFUSE_RUN_DIR="+run)
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		syscall.Unmount(dir, syscall.MNT_DETACH)
	}()
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "msg=mounted") }, 30*time.Second, 50*time.Millisecond, "log:\n%s", log.String())

	f, err := os.Open(filepath.Join(dir, "o", "f"))
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 4096)
	_, err = f.ReadAt(buf, 0)
	require.NoError(t, err)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "files are still open") }, 10*time.Second, 50*time.Millisecond, "log:\n%s", log.String())
	mounted, err := cluster.IsFUSEMount(dir)
	require.NoError(t, err)
	assert.False(t, mounted, "still in the tree after SIGTERM")
	_, err = f.ReadAt(buf, 512<<10)
	require.NoError(t, err, "the open file's read failed after the first SIGTERM")
	assert.Equal(t, data[512<<10:512<<10+4096], buf)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status after the second SIGTERM; log:\n%s", log.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("weedfuse did not stop on a second SIGTERM; log:\n%s", log.String())
	}
	socks, _ := filepath.Glob(filepath.Join(run, "*.sock"))
	assert.Empty(t, socks, "control socket left behind")
	// What the kernel cached of the file still reads; the rest goes to
	// the mount, which is gone.
	require.NoError(t, unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED))
	_, err = f.ReadAt(buf, 0)
	assert.Error(t, err, "a read after the mount stopped succeeded")
}
