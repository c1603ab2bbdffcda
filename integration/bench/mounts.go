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

// kind is one of the mounts under comparison: the two of the main
// comparison, and the peers that -peers adds (peers.go).
type kind int

const (
	weedMount kind = iota
	weedfuse
	rcloneFull // rclone mount over weed s3, --vfs-cache-mode full
	rcloneOff  // the same, --vfs-cache-mode off
	s3fsCache  // s3fs over weed s3, -o use_cache
	s3fsPlain  // the same without a cache
	juiceFS    // JuiceFS, its own copy of the data in a bucket on weed s3
	numKinds
)

// kinds is the order in which every workload runs: alternating, the stock
// mount first. Peers that mounted follow them (mounter.active).
var kinds = [...]kind{weedMount, weedfuse}

// peerKinds are the mounts -peers adds, in the order they run.
var peerKinds = [...]kind{rcloneFull, rcloneOff, s3fsCache, s3fsPlain, juiceFS}

func (k kind) String() string {
	return [...]string{"weed mount", "weedfuse", "rclone full", "rclone off", "s3fs cache", "s3fs", "JuiceFS"}[k]
}

func (k kind) slug() string {
	return [...]string{"weed", "weedfuse", "rclone-full", "rclone-off", "s3fs-cache", "s3fs", "juicefs"}[k]
}

func (k kind) isPeer() bool { return k >= rcloneFull }

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
	cache     [numKinds]string // the live mount's cache directory
	seq       int              // numbers cache directories
	readAhead [numKinds]string // kernel readahead found on the last mount, in KiB
	// peers mounts the other file systems; nil without -peers.
	peers *peerSet
	// cacheArgs, when not nil, replace -cacheCapacityMB for the next
	// mounts (see step.cacheArgs).
	cacheArgs []string
	// metrics is weedfuse's -metrics.address.
	metrics string
	quick   bool // -quick
	// lastArgs are the extra weedfuse flags of each kind's last fresh
	// mount, for a remount; mountTook is how long its last mount took to
	// answer at its root.
	lastArgs  [numKinds][]string
	mountTook [numKinds]time.Duration
}

func newMounter(c *cluster.Cluster, bin, root string, o *options) *mounter {
	return &mounter{c: c, bin: bin, root: root, cacheMB: o.cacheMB, wfArgs: o.wfArgs, weedArgs: o.weedArgs, metrics: "127.0.0.1:19327", quick: o.quick}
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
	common := []string{"-filer.path=" + filerRoot, "-cacheCapacityMB=" + strconv.Itoa(m.cacheMB), "-cacheDir=" + cache}
	if m.cacheArgs != nil {
		common = append([]string{"-filer.path=" + filerRoot, "-cacheDir=" + cache}, m.cacheArgs...)
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
	default:
		if err := m.peers.mount(ctx, k, m.dir(k), cache, peerCacheMB(m.cacheArgs, m.cacheMB), wfArgs); err != nil {
			return err
		}
	}
	m.mountTook[k] = time.Since(began)
	ra, err := readAheadKB(m.mountPoint(k))
	if err != nil {
		return fmt.Errorf("mount %s: %w", k, err)
	}
	m.readAhead[k] = ra
	return dropCaches()
}

// mountPoint is where k's file system is mounted: its directory, but for
// a mount of one bucket (s3fs), which shows the bench's tree one level
// down, the bucket's directory in it.
func (m *mounter) mountPoint(k kind) string {
	if k == s3fsCache || k == s3fsPlain {
		return filepath.Join(m.dir(k), s3Bucket)
	}
	return m.dir(k)
}

// active lists the mounts that every workload runs on: the two, then the
// peers that mounted.
func (m *mounter) active() []kind {
	ks := kinds[:]
	if m.peers != nil {
		ks = append(ks, m.peers.up...)
	}
	return ks
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
	default:
		err = m.peers.unmount(k)
	}
	if m.cache[k] != "" {
		err = errors.Join(err, os.RemoveAll(m.cache[k]))
		m.cache[k] = ""
	}
	return err
}

// close unmounts every mount.
func (m *mounter) close() error {
	var errs []error
	for _, k := range kinds {
		errs = append(errs, m.unmount(k))
	}
	if m.peers != nil {
		for _, k := range peerKinds {
			errs = append(errs, m.unmount(k))
		}
	}
	return errors.Join(errs...)
}

// logTail is what k's process logged last, to explain a failed workload.
func (m *mounter) logTail(k kind) string {
	if k == weedfuse && m.wf != nil {
		return tail(m.wf.Log(), 30)
	}
	if k.isPeer() {
		return m.peers.logTail(k, 30)
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
// it started, in MiB. For a peer, it is the sum over the processes of its
// mount: JuiceFS runs a supervisor beside the process that serves.
func (m *mounter) peakRSS(k kind) (float64, error) {
	if k.isPeer() {
		return m.peers.peakRSS(k)
	}
	pid, err := m.pid(k)
	if err != nil {
		return 0, err
	}
	return vmHWM(k, pid)
}

// vmHWM is pid's peak resident set in MiB.
func vmHWM(k kind, pid int) (float64, error) {
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
	case k.isPeer():
		return m.peers.pid(k)
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
