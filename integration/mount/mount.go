// Package mount builds the weedfuse binary and runs it as a real process
// against a real filer, for end-to-end tests and benchmarks: start, wait
// until the kernel shows the FUSE mount, and unmount and stop for certain,
// even when a test fails.
package mount

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// Build compiles ./cmd/weedfuse (found by walking up to go.mod) into dir and
// returns the binary's path. tags are Go build tags, for example "rdma".
func Build(dir string, tags ...string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "weedfuse")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, "./cmd/weedfuse")...)
	cmd.Dir = root
	if len(tags) == 0 {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build weedfuse: %w\n%s", err, out)
	}
	return bin, nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Mount is a running weedfuse process and its mount point.
type Mount struct {
	Dir string
	cmd *exec.Cmd
	log *lockedBuffer

	done chan struct{} // closed when the process has exited
	err  error         // the process's exit error, set before done closes

	stopOnce sync.Once
	stopErr  error // Stop's result, for every call
}

// Start runs bin -dir=dir with args and waits until dir is a FUSE mount,
// the process exits, or timeout passes.
func Start(ctx context.Context, bin, dir string, timeout time.Duration, args ...string) (*Mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m := &Mount{Dir: dir, log: &lockedBuffer{}, done: make(chan struct{})}
	m.cmd = exec.Command(bin, append([]string{"-dir=" + dir}, args...)...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// Mounted, and set up: weedfuse logs the line after setting the
		// mount's readahead.
		if ok, _ := cluster.IsFUSEMount(dir); ok && strings.Contains(m.Log(), "msg=mounted ") {
			return m, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("weedfuse exited before mounting (%v):\n%s", m.err, m.Log())
		case <-deadline.C:
			m.Stop()
			return nil, fmt.Errorf("weedfuse did not mount %s within %v:\n%s", dir, timeout, m.Log())
		case <-ctx.Done():
			m.Stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// Pid is the weedfuse process's id.
func (m *Mount) Pid() int { return m.cmd.Process.Pid }

// Log is what the process printed so far.
func (m *Mount) Log() string { return m.log.String() }

// Done is closed when the process has exited.
func (m *Mount) Done() <-chan struct{} { return m.done }

// Stop sends SIGTERM (weedfuse unmounts on it), waits, and then makes sure:
// SIGKILL and a lazy unmount. It is idempotent and returns, every time, the
// process's exit error from the SIGTERM, if it exited in time.
func (m *Mount) Stop() error {
	m.stopOnce.Do(func() {
		var err error
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
			err = m.err
		case <-time.After(10 * time.Second):
			syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-m.done
			err = fmt.Errorf("weedfuse did not exit within 10s of SIGTERM")
		}
		if ok, _ := cluster.IsFUSEMount(m.Dir); ok {
			syscall.Unmount(m.Dir, syscall.MNT_DETACH)
			if err == nil {
				err = fmt.Errorf("%s still mounted after weedfuse exited", m.Dir)
			}
		}
		m.stopErr = err
	})
	return m.stopErr
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
