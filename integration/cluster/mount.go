package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// mountTimeout bounds the wait for weed mount to appear in the mount table.
const mountTimeout = 30 * time.Second

// WeedMount is a running stock `weed mount` of the cluster's filer.
type WeedMount struct {
	dir  string
	p    *proc
	c    *Cluster
	once sync.Once
	err  error
}

// Pid is the weed mount process's id.
func (m *WeedMount) Pid() int { return m.p.cmd.Process.Pid }

// StartWeedMount mounts the filer at dir (created if missing) with the stock
// `weed mount -filer=... -dir=...` plus extraArgs, and returns once dir is a
// FUSE mount. The cluster's Stop unmounts it if Unmount was not called.
func (c *Cluster) StartWeedMount(ctx context.Context, dir string, extraArgs ...string) (*WeedMount, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("weed mount %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("weed mount %s: %w", dir, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, fmt.Errorf("weed mount %s: the cluster is stopped", dir)
	}
	name := "mount" + strconv.Itoa(c.nextMount)
	c.nextMount++
	p := c.newProc(name, append([]string{
		"mount",
		"-filer=" + c.FilerMountSpec(),
		"-dir=" + abs,
		// Defaults are under /tmp and would outlive the cluster.
		"-cacheDir=" + filepath.Join(c.dir, name+"-cache"),
		"-localSocket=" + filepath.Join(c.sockDir, name+".sock"),
	}, extraArgs...)...)
	if err := p.start(); err != nil {
		return nil, err
	}
	m := &WeedMount{dir: abs, p: p, c: c}
	c.mounts = append(c.mounts, m)
	ctx, cancel := context.WithTimeout(ctx, mountTimeout)
	defer cancel()
	err = poll(ctx, p, "weed mount at "+abs, func(context.Context) error {
		ok, err := IsFUSEMount(abs)
		if err == nil && !ok {
			err = errors.New("not in the mount table yet")
		}
		return err
	})
	if err != nil {
		return nil, errors.Join(err, m.Unmount())
	}
	c.opts.Logf("cluster: weed mount of %s at %s", c.FilerMountSpec(), abs)
	return m, nil
}

// Dir returns the mount point.
func (m *WeedMount) Dir() string { return m.dir }

// Unmount unmounts and stops the weed mount. It is idempotent.
func (m *WeedMount) Unmount() error {
	m.once.Do(func() {
		err := UnmountFUSE(m.dir)
		// weed mount exits by itself once unmounted; stop covers one that
		// does not.
		m.err = errors.Join(err, m.p.stop(m.c.opts.StopGrace))
	})
	return m.err
}

// IsFUSEMount reports whether dir is the mount point of a FUSE file system,
// per /proc/self/mountinfo. It does not touch dir itself, which hangs or
// fails when the FUSE daemon is dead.
func IsFUSEMount(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	// Resolve symlinks in the parent only, for the same reason.
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	target := filepath.Join(parent, filepath.Base(abs))
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Fields: id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		fstype := fields[sep+1]
		if unescapeMountinfo(fields[4]) == target && (fstype == "fuse" || strings.HasPrefix(fstype, "fuse.") || fstype == "fuseblk") {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnmountFUSE unmounts dir if it is a FUSE mount: fusermount3 -u (or
// fusermount -u), and if that fails, say because a file is still open, a
// lazy umount -l.
func UnmountFUSE(dir string) error {
	mounted, err := IsFUSEMount(dir)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	if !mounted {
		return nil
	}
	var failures []string
	for _, tool := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		out, err := exec.Command(tool, "-u", dir).CombinedOutput()
		if err == nil {
			return nil
		}
		failures = append(failures, fmt.Sprintf("%s -u: %v: %s", tool, err, strings.TrimSpace(string(out))))
		break
	}
	out, err := exec.Command("umount", "-l", dir).CombinedOutput()
	if err == nil {
		return nil
	}
	failures = append(failures, fmt.Sprintf("umount -l: %v: %s", err, strings.TrimSpace(string(out))))
	return fmt.Errorf("unmount %s: %s", dir, strings.Join(failures, "; "))
}
