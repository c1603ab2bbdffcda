package main

// A peer's mount process, and what the bench does to the processes and
// file systems around it: start and wait for the mount, stop it for
// certain, give it a cache file system of its own (capFS), keep it at the
// bench's nice (matchNice), and find its processes in /proc.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// peerProc is one peer's mount process: it runs in the foreground in its
// own process group, killed if the bench dies.
type peerProc struct {
	name string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	// serving is the process that serves the mount: a child of cmd's
	// where the tool supervises a worker (JuiceFS), else cmd's.
	serving int
	// undo, if set, removes what the mount needed beside the process
	// (capFS), once it has stopped.
	undo func() error
}

// startPeer runs path args, its output to logPath, and waits until dir
// is a FUSE mount.
func startPeer(ctx context.Context, name, path string, args []string, dir, logPath string) (*peerProc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// The child holds its own copy.
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s: %s %s\n", time.Now().Format(time.RFC3339), path, strings.Join(args, " "))
	p := &peerProc{name: name, dir: dir, cmd: exec.Command(path, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	deadline := time.NewTimer(mountTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, _ := cluster.IsFUSEMount(dir); ok {
			p.serving = p.pid()
			if kids := childPids(p.pid()); len(kids) > 0 {
				p.serving = kids[0]
			}
			if err := matchNice(p.pid()); err != nil {
				p.kill()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before mounting %s (%v)%s", name, dir, p.err, tail(readFileString(logPath), 30))
		case <-deadline.C:
			p.kill()
			return nil, fmt.Errorf("%s did not mount %s within %v%s", name, dir, mountTimeout, tail(readFileString(logPath), 30))
		case <-ctx.Done():
			p.kill()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

func (p *peerProc) pid() int        { return p.cmd.Process.Pid }
func (p *peerProc) servingPid() int { return p.serving }

// stop unmounts, which ends each of the peers by itself, and then makes
// sure: SIGTERM, SIGKILL to the group, and a lazy unmount. It returns
// once the process has been reaped.
func (p *peerProc) stop() error {
	var errs []error
	if ok, _ := cluster.IsFUSEMount(p.dir); ok {
		if out, err := exec.Command("fusermount3", "-u", p.dir).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("fusermount3 -u %s: %w: %s", p.dir, err, strings.TrimSpace(string(out))))
		}
	}
	exited := p.wait(10 * time.Second)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if exited {
			break
		}
		_ = syscall.Kill(-p.pid(), sig)
		exited = p.wait(10 * time.Second)
	}
	if !exited {
		errs = append(errs, fmt.Errorf("%s (pid %d) still running after SIGKILL", p.name, p.pid()))
	}
	// A group leader that exited may leave workers behind.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	if ok, _ := cluster.IsFUSEMount(p.dir); ok {
		if err := syscall.Unmount(p.dir, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("umount -l %s: %w", p.dir, err))
		}
	}
	if p.undo != nil {
		errs = append(errs, p.undo())
		p.undo = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	return nil
}

// capFS mounts over dir an ext4 file system of its own, on a loop device
// backed by a sparse image beside dir, with room for sizeMB of files and
// what s3fs keeps beside them; undo unmounts it and removes the image.
func capFS(dir string, sizeMB int) (undo func() error, err error) {
	img := dir + ".img"
	// ext4's own tables take a few per cent; s3fs's per-file stat files
	// take an inode and a block each.
	imgMB := sizeMB + sizeMB/16 + 160
	f, err := os.Create(img)
	if err != nil {
		return nil, fmt.Errorf("cache file system: %w", err)
	}
	err = f.Truncate(int64(imgMB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	undo = func() error {
		var errs []error
		if mounted(dir) {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("umount %s: %w: %s", dir, err, strings.TrimSpace(string(out))))
				errs = append(errs, syscall.Unmount(dir, syscall.MNT_DETACH))
			}
		}
		errs = append(errs, os.Remove(img))
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("cache file system: %w", err)
		}
		return nil
	}
	for _, args := range [][]string{
		// No journal and no reserved blocks: a cache needs neither.
		{"mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", img},
		{"mount", "-o", "loop", img, dir},
	} {
		if err != nil {
			break
		}
		if out, e := exec.Command(args[0], args[1:]...).CombinedOutput(); e != nil {
			err = fmt.Errorf("%s: %w: %s", strings.Join(args, " "), e, strings.TrimSpace(string(out)))
		}
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("cache file system: %w", err), undo())
	}
	return undo, nil
}

// mounted reports whether dir is a mount point, per /proc/self/mountinfo.
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// wait reports whether the process exits within d.
func (p *peerProc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill SIGKILLs the group and detaches the mount, which fails every
// request the dead process would have answered.
func (p *peerProc) kill() {
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	_ = syscall.Unmount(p.dir, syscall.MNT_DETACH)
}

// matchNice sets every thread of process group pgid to this process's
// nice value. JuiceFS, run as root, raises its own to -19: on a shared
// machine that would buy it CPU that the other mounts, at the bench's
// nice, do not get. Nice is per thread, and a new thread takes its
// creator's, so setting every thread once holds for later ones too.
func matchNice(pgid int) error {
	self := procStat(os.Getpid())
	if len(self) <= 16 {
		return errors.New("read this process's nice value")
	}
	nice, err := strconv.Atoi(self[16])
	if err != nil {
		return fmt.Errorf("nice value %q: %w", self[16], err)
	}
	for _, pid := range groupPids(pgid) {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue // exited
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if f := procStat(tid); len(f) > 16 && f[16] != self[16] {
				if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, syscall.ESRCH) {
					return fmt.Errorf("set nice %d on thread %d of %d: %w", nice, tid, pid, err)
				}
			}
		}
	}
	return nil
}

// procStat returns the fields of /proc/<pid>/stat after the command name:
// state, ppid, pgrp, ...
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// groupPids lists the processes of process group pgid, and childPids the
// children of pid, from /proc.
func groupPids(pgid int) []int { return scanProcs(2, pgid) }
func childPids(pid int) []int  { return scanProcs(1, pid) }

// scanProcs lists the processes whose stat field (after the name) at
// index field is want.
func scanProcs(field, want int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(pid); len(f) > field && f[field] == strconv.Itoa(want) {
			pids = append(pids, pid)
		}
	}
	return pids
}
