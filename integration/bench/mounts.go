package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/integration/mount"
)

// kind is one of the two mounts under comparison.
type kind int

const (
	weedMount kind = iota
	weedfuse
)

// kinds is the order in which every workload runs: alternating, the stock
// mount first.
var kinds = [...]kind{weedMount, weedfuse}

func (k kind) String() string { return [...]string{"weed mount", "weedfuse"}[k] }

func (k kind) slug() string { return [...]string{"weed", "weedfuse"}[k] }

// mountTimeout bounds the wait for weedfuse to mount.
const mountTimeout = 30 * time.Second

// mounter mounts, remounts and unmounts the two mounts side by side on one
// cluster, each at a fixed directory and with the same cache flags.
type mounter struct {
	c        *cluster.Cluster
	bin      string
	root     string
	cacheMB  int
	wfArgs   []string
	weedArgs []string

	weed      *cluster.WeedMount
	wf        *mount.Mount
	cache     [len(kinds)]string // the live mount's cache directory
	seq       int                // numbers cache directories
	readAhead [len(kinds)]string // kernel readahead found on the last mount, in KiB
	// cacheArgs, when not nil, replace -cacheCapacityMB for the next
	// mounts (see step.cacheArgs).
	cacheArgs []string
	// metrics is weedfuse's -metrics.address.
	metrics string
	// lastArgs are the extra weedfuse flags of each kind's last fresh
	// mount, for a remount; mountTook is how long its last mount took to
	// answer at its root.
	lastArgs  [len(kinds)][]string
	mountTook [len(kinds)]time.Duration
}

func newMounter(c *cluster.Cluster, bin, root string, o *options) *mounter {
	return &mounter{c: c, bin: bin, root: root, cacheMB: o.cacheMB, wfArgs: o.wfArgs, weedArgs: o.weedArgs, metrics: "127.0.0.1:19327"}
}

// dir is k's mount point.
func (m *mounter) dir(k kind) string { return filepath.Join(m.root, "mnt", k.slug()) }

// fresh brings k into the cold state: a new mount process with an empty
// cache directory, and nothing of the file system in the kernel's caches.
// wfArgs are extra flags for weedfuse, for this mount only.
func (m *mounter) fresh(ctx context.Context, k kind, wfArgs ...string) error {
	if err := m.unmount(k); err != nil {
		return err
	}
	m.seq++
	cache := filepath.Join(m.root, "cache", fmt.Sprintf("%s-%d", k.slug(), m.seq))
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", k, err)
	}
	m.cache[k] = cache
	m.lastArgs[k] = wfArgs
	return m.mount(ctx, k)
}

// remount stops k's mount process and mounts it again over the same cache
// directory, with the same flags, and drops the kernel's caches.
func (m *mounter) remount(ctx context.Context, k kind) error {
	cache := m.cache[k]
	m.cache[k] = "" // kept
	if err := m.unmount(k); err != nil {
		return err
	}
	m.cache[k] = cache
	return m.mount(ctx, k)
}

// mount mounts k over its cache directory, timing it (mountTook).
func (m *mounter) mount(ctx context.Context, k kind) error {
	cache, wfArgs := m.cache[k], m.lastArgs[k]
	began := time.Now()
	// The same cache flags for both; weed mount's chunk cache would
	// otherwise survive a remount in its default directory, so a new
	// directory per mount also keeps "cold" honest.
	common := []string{"-cacheCapacityMB=" + strconv.Itoa(m.cacheMB), "-cacheDir=" + cache}
	if m.cacheArgs != nil {
		common = append([]string{"-cacheDir=" + cache}, m.cacheArgs...)
	}
	switch k {
	case weedMount:
		// The cluster's own -cacheDir comes first on weed's command line;
		// the last one wins.
		wm, err := m.c.StartWeedMount(ctx, m.dir(k), append(common, m.weedArgs...)...)
		if err != nil {
			return err
		}
		m.weed = wm
	case weedfuse:
		args := append([]string{"-filer=" + m.c.FilerMountSpec(), "-metrics.address=" + m.metrics}, common...)
		args = append(append(args, m.wfArgs...), wfArgs...)
		wf, err := mount.Start(ctx, m.bin, m.dir(k), mountTimeout, args...)
		if err != nil {
			return err
		}
		m.wf = wf
	}
	m.mountTook[k] = time.Since(began)
	ra, err := readAheadKB(m.dir(k))
	if err != nil {
		return fmt.Errorf("mount %s: %w", k, err)
	}
	m.readAhead[k] = ra
	return dropCaches()
}

// readAheadKB returns the kernel readahead of the file system mounted at
// dir, from its backing device info. dir must need no escaping in
// /proc/self/mountinfo, as the benchmark's own mount points do not.
func readAheadKB(dir string) (string, error) {
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(mountinfo)) {
		// Fields: id parent major:minor root mountpoint ...
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			ra, err := os.ReadFile("/sys/class/bdi/" + f[2] + "/read_ahead_kb")
			if err != nil {
				return "", fmt.Errorf("readahead of %s: %w", dir, err)
			}
			return strings.TrimSpace(string(ra)), nil
		}
	}
	return "", fmt.Errorf("readahead of %s: not in the mount table", dir)
}

// unmount unmounts k, if mounted, and removes its cache directory.
func (m *mounter) unmount(k kind) error {
	var err error
	switch k {
	case weedMount:
		if m.weed != nil {
			err = m.weed.Unmount()
			m.weed = nil
		}
	case weedfuse:
		if m.wf != nil {
			if err = m.wf.Stop(); err != nil {
				err = fmt.Errorf("stop weedfuse: %w%s", err, tail(m.wf.Log(), 30))
			}
			m.wf = nil
		}
	}
	if m.cache[k] != "" {
		err = errors.Join(err, os.RemoveAll(m.cache[k]))
		m.cache[k] = ""
	}
	return err
}

// close unmounts both.
func (m *mounter) close() error {
	var errs []error
	for _, k := range kinds {
		errs = append(errs, m.unmount(k))
	}
	return errors.Join(errs...)
}

// logTail is what k's process logged last, to explain a failed workload.
func (m *mounter) logTail(k kind) string {
	if k == weedfuse && m.wf != nil {
		return tail(m.wf.Log(), 30)
	}
	return m.c.LogTails()
}

// tail returns the last n lines of s, set off for appending to an error.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n--- log:\n" + strings.Join(lines, "\n")
}

// peakRSS returns the peak resident set (VmHWM) of k's mount process since
// it started, in MiB.
func (m *mounter) peakRSS(k kind) (float64, error) {
	pid, err := m.pid(k)
	if err != nil {
		return 0, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS of %s: %w", k, err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("peak RSS of %s: parse %q: %w", k, line, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("peak RSS of %s: no VmHWM in /proc/%d/status", k, pid)
}

// pid is k's mount process.
func (m *mounter) pid(k kind) (int, error) {
	switch {
	case k == weedMount && m.weed != nil:
		return m.weed.Pid(), nil
	case k == weedfuse && m.wf != nil:
		return m.wf.Pid(), nil
	}
	return 0, fmt.Errorf("the %s is not mounted", k)
}

// dropCaches empties the kernel's page, dentry and inode caches, so that
// the next read goes to the mount, and the volume server reads its disk.
func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}
