package cluster

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// killWait bounds the wait for a process to disappear after SIGKILL; only a
// process stuck in the kernel (say, on a dead FUSE mount) takes longer.
const killWait = 10 * time.Second

// startMarker begins the line that each start of a process writes to its
// log, with the time and the command line.
const startMarker = "=== "

// proc is one child process. It can be started again after it has exited,
// which is how a volume server restarts on the same ports and directory.
type proc struct {
	name    string
	path    string
	args    []string
	dir     string   // working directory; "" for ours
	env     []string // nil for ours
	logPath string   // stdout and stderr, appended; "" for ours

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // the result of Wait, set before done is closed
}

func (p *proc) start() error {
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	// Its own process group, so that stopping it reaches anything it spawns,
	// and SIGKILL when the process that started it dies, so that a crashed
	// or killed test binary leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if p.logPath == "" {
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	} else {
		f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("start %s: %w", p.name, err)
		}
		// The child holds its own copy of the descriptor.
		defer f.Close()
		fmt.Fprintf(f, "%s%s: %s\n", startMarker, time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.done, p.err = cmd, make(chan struct{}), nil
	go func() {
		err := cmd.Wait()
		p.err = err
		close(p.done)
	}()
	return nil
}

// running reports whether the process was started and has not exited.
func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// pid returns the process id, or 0 if it never started.
func (p *proc) pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// stop sends SIGTERM to the process group, waits up to grace for the
// process to exit, then SIGKILLs the group, and returns once the process
// has been reaped.
func (p *proc) stop(grace time.Duration) error {
	if !p.running() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
	}
	// Also after the leader exited: what it spawned (say, the command of
	// an sh -c) may live on in the group. The kernel does not reuse an id
	// while it names a live group, and when none is left the group is gone
	// and this finds nothing (ESRCH).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("stop %s: pid %d still running %v after SIGKILL", p.name, pgid, killWait)
	}
}

// exitError describes a process that exited when it should be running.
func (p *proc) exitError() error {
	return fmt.Errorf("%s exited early (%v)%s", p.name, p.err, p.logTail())
}

// logTail returns what the process logged since it last started, to be
// appended to an error message: all of it if short, else its first lines
// (where weed reports a bad flag, before its usage text) and its last.
func (p *proc) logTail() string {
	if p.logPath == "" {
		return ""
	}
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		if _, err := f.Seek(-maxRead, io.SeekEnd); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	if i := bytes.LastIndex(b, []byte(startMarker)); i >= 0 {
		b = b[i:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	const head, tail = 10, 30
	if len(lines) > head+tail {
		lines = slices.Concat(lines[:head], []string{"[...]"}, lines[len(lines)-tail:])
	}
	return fmt.Sprintf("\n--- %s:\n%s", p.logPath, strings.Join(lines, "\n"))
}
