package integration

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
