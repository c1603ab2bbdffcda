// Command weedfuse mounts a SeaweedFS filer read-only, as a drop-in for
// `weed mount` with the same flags, reading chunks over RDMA where a weedrdma
// sidecar answers and over the volume servers' HTTP otherwise.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	_ "net/http/pprof" // served on the -debug port only
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	weedfs "github.com/weedfuse/weedfuse/fs"
	"github.com/weedfuse/weedfuse/internal/filer"
	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/logs"
	"github.com/weedfuse/weedfuse/internal/metrics"
	"github.com/weedfuse/weedfuse/internal/volume"
	"github.com/weedfuse/weedfuse/pagecache"
)

func main() {
	if code, ok := runSubcommand(os.Args[1:]); ok {
		os.Exit(code)
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "weedfuse:", err)
		os.Exit(2)
	}
	slog.SetDefault(logs.New(os.Stderr, cfg.verbosity))
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "weedfuse:", err)
		os.Exit(1)
	}
}

func run(cfg *config) error {
	umask, err := strconv.ParseUint(cfg.umask, 8, 32)
	if err != nil || umask > 0o777 {
		return fmt.Errorf("-umask %q: want an octal mask such as 022", cfg.umask)
	}
	uidMap, err := parseIDMap("map.uid", cfg.mapUID)
	if err != nil {
		return err
	}
	gidMap, err := parseIDMap("map.gid", cfg.mapGID)
	if err != nil {
		return err
	}
	dir, err := prepareMountpoint(cfg, umask)
	if err != nil {
		return err
	}
	if cfg.verify != "ranges" && cfg.verify != "strict" {
		return fmt.Errorf("-verify %q: want ranges or strict", cfg.verify)
	}
	if !cfg.defaultPermissions {
		slog.Info("-defaultPermissions=false: the kernel still checks permissions (weed mount checks the mode bits itself at open, with the same outcome)")
	}
	memLimit := tuneGoMemory(cfg.memoryLimitMB)
	// The root is owned by the mount point's owner, as weed mount's is.
	var dirSt syscall.Stat_t
	if err := syscall.Stat(dir, &dirSt); err != nil {
		return fmt.Errorf("-dir %s: %w", dir, err)
	}
	switch cfg.volumeServerAccess {
	case "direct", "publicUrl":
	case "filerProxy":
		slog.Warn("-volumeServerAccess=filerProxy is not supported yet; reading volume servers directly")
	default:
		return fmt.Errorf("-volumeServerAccess %q: want direct, publicUrl or filerProxy", cfg.volumeServerAccess)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	sec, err := volume.LoadSecurityTOML()
	if err != nil {
		return err
	}
	grpcTLS, err := filer.TLSConfig(sec.GRPC.Cert, sec.GRPC.Key, sec.GRPC.CA)
	if err != nil {
		return fmt.Errorf("security config %s: %w", sec.Path, err)
	}
	httpsTLS, err := sec.HTTPS.Config()
	if err != nil {
		return fmt.Errorf("security config %s: %w", sec.Path, err)
	}
	fc, err := connectFiler(ctx, cfg.filerStartTimeout, filer.Options{
		TLS:        grpcTLS,
		Addresses:  splitList(cfg.filer),
		DataCenter: cfg.dataCenter,
		PublicURL:  cfg.volumeServerAccess == "publicUrl",
		ClientName: "weedfuse:" + dir,
		Space: filer.Space{
			Collection:  cfg.collection,
			Replication: cfg.replication,
			DiskType:    cfg.diskType,
			TTLSec:      cfg.ttlSec,
		},
	})
	if err != nil {
		return err
	}
	defer fc.Close()

	root := filepath.ToSlash(filepath.Clean("/" + cfg.filerPath))
	var rootEntry *filerpb.Entry
	if root != "/" {
		parent, name := filepath.Split(root)
		rootEntry, err = fc.LookupEntry(ctx, filepath.Clean(parent), name)
		if err != nil {
			return fmt.Errorf("-filer.path %s: %w", root, err)
		}
		if !rootEntry.GetIsDirectory() {
			return fmt.Errorf("-filer.path %s: not a directory", root)
		}
	}

	httpReader := volume.New(fc, volume.Options{
		VerifyETag:       cfg.verifyETag,
		ReadRetryTime:    max(cfg.readRetryTime, time.Second), // weed mount's floor
		ReadSigningKey:   sec.ReadSigningKey,
		ReadExpiresAfter: sec.ReadExpiresAfter,
		TLS:              httpsTLS,
	})
	defer httpReader.Close()
	mx := metrics.NewMount()
	timedHTTP := mx.Fetcher("http", httpReader)
	chain := pagecache.Chain{timedHTTP}
	rdmaClient, err := newRDMAClient(cfg, fc, sec)
	if err != nil {
		return err
	}
	if rdmaClient != nil {
		defer rdmaClient.Close()
		timedRDMA := mx.Fetcher("rdma", rdmaClient)
		chain = pagecache.Chain{timedRDMA, timedHTTP}
		if !cfg.rdmaFallback {
			chain = pagecache.Chain{timedRDMA}
		}
	}
	capacity := int64(max(cfg.readerCacheSizeMB, 16)) << 20
	cacheOpts := pagecache.Options{
		Capacity: capacity,
		Strict:   cfg.verify == "strict",
		Warn:     func(s string) { slog.Warn(s) },
	}
	if cfg.cacheCapacityMB > 0 && cfg.cacheDir != "" {
		if cacheOpts.DiskDir, err = prepareDiskCacheDir(cfg.cacheDir, fc.Addresses()); err != nil {
			return err
		}
		cacheOpts.DiskCapacity = int64(cfg.cacheCapacityMB) << 20
	}
	cache, err := pagecache.New(chain, cacheOpts)
	if err != nil {
		return err
	}
	defer cache.Close()
	if err := addMetricSources(mx, cache, httpReader, rdmaClient); err != nil {
		return err
	}

	wfs := weedfs.New(fc, cache, httpReader, weedfs.Options{
		Root:            root,
		MetaTTL:         time.Duration(cfg.cacheMetaTTLSec) * time.Second,
		Umask:           uint32(umask),
		DisableXAttr:    cfg.disableXAttr,
		ReadConcurrency: min(cfg.concurrentReaders, 64),
		ReadaheadMax:    min(pagecache.MaxReadahead, capacity/8),
		Ops:             mx,
		Passthrough:     cfg.passthrough && cacheOpts.DiskCapacity > 0,

		// What the mount shows, as weed mount shows it.
		RootUID:              dirSt.Uid,
		RootGID:              dirSt.Gid,
		UIDMap:               uidMap,
		GIDMap:               gidMap,
		IncludeSystemEntries: cfg.includeSystemEntries,
		Quota:                uint64(max(cfg.collectionQuotaMB, 0)) << 20,
		LogicalSizes:         cfg.dfLogical,

		// How much metadata it keeps, as weed mount's flags bound its
		// own.
		MaxCachedListing:    maxCachedListing(cfg.cacheDirMaxEntries),
		ForgottenListingTTL: time.Duration(max(cfg.dirIdleEvictSec, 0)) * time.Second,
	})
	if err := mx.AddTree(wfs); err != nil {
		return err
	}
	memLimit.countMetadata(wfs.MetadataBytes)
	name := cfg.volumeName
	if name == "" { // weed mount's
		name = strings.Join(splitList(cfg.filer), "+") + ":" + root
	}
	server, err := wfs.Mount(dir, rootEntry, weedfs.MountOptions{
		Name:       name,
		AllowOther: cfg.allowOthers,
		// Always: with -defaultPermissions=false weed mount checks the
		// mode bits itself at open, and a mount that made no check would
		// let every local user (-allowOthers) read every file.
		DefaultPermissions: true,
		MaxBackground:      cfg.maxBackground,
		Debug:              cfg.debugFuse,
		// Entries and attributes carry the file system's own timeout,
		// which is -cacheMetaTtlSec while the metadata subscription keeps
		// them fresh; negative look-ups live at most a second.
		KernelTTL: min(time.Duration(cfg.cacheMetaTTLSec)*time.Second, time.Second),
	})
	if err != nil {
		return err
	}
	if cfg.readAheadKB > 0 {
		if err := setReadAhead(dir, cfg.readAheadKB); err != nil {
			slog.Info("readahead stays at the kernel's", "err", err)
		}
	}
	wfs.Watch(fc)
	defer wfs.Close()
	srv := startHTTP(cfg, mx.Handler())
	defer srv.close()
	unannounce := announceMounted(dir, mx.Handler())
	defer unannounce()
	// The harnesses wait for this line (msg=mounted): the mount, its
	// metrics and its control socket are set up once it shows. (Logged
	// before the metrics listener, it let a test scrape a port that was
	// not listening yet.)
	slog.Info("mounted", "filer", fc.Current().HTTP, "path", root, "dir", dir, "mode", "read-only")

	done := make(chan struct{})
	go func() {
		server.Wait()
		close(done)
	}()
	select {
	case <-done:
		slog.Info("unmounted from outside", "dir", dir)
		return nil
	case <-ctx.Done():
	}
	// A second signal stops at once, below: keep taking them.
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
	stop()
	slog.Info("unmounting", "dir", dir)
	if err := server.Unmount(); err != nil {
		// Still mounted, maybe still serving: the cache's memory must not
		// be unmapped under a read, so exit without the deferred closes.
		fmt.Fprintln(os.Stderr, "weedfuse:", err)
		unannounce()
		os.Exit(1)
	}
	// The mount is gone from the tree, but a file still open on it keeps
	// the kernel's connection, and its reads are served until it is
	// closed, as a lazy unmount does; say so, since the process lives on.
	select {
	case <-done:
		return nil
	case <-time.After(time.Second):
		slog.Warn("unmounted, but files are still open on it: serving them until they are closed; signal again to stop now", "dir", dir)
	}
	select {
	case <-done:
		return nil
	case sig := <-again:
		// Reads may be under way in the cache's memory, which the
		// deferred closes would unmap: exit without them. The kernel
		// ends the connection, and the open files' reads fail.
		slog.Warn("stopping with files still open: their reads fail from now on", "dir", dir, "signal", sig.String())
		unannounce()
		os.Exit(0)
	}
	return nil
}

// connectFiler connects as filer.New does, and while no filer answers at
// all (one starting, or restarting), tries again, as weed mount waits for
// its filer: after 1, 2, … and then every 10 seconds, saying so each time,
// until one answers, limit (-filer.startTimeout; 0: none) would pass or
// the mount is stopped. A filer that answers as something else (a
// master's port, TLS refused) is an error at once: waiting mends nothing.
func connectFiler(ctx context.Context, limit time.Duration, opts filer.Options) (*filer.Client, error) {
	began := time.Now()
	for wait := time.Second; ; wait = min(wait+time.Second, 10*time.Second) {
		fc, err := filer.New(ctx, opts)
		if err == nil || !errors.Is(err, filer.ErrUnavailable) {
			return fc, err
		}
		if limit > 0 && time.Since(began)+wait > limit {
			return nil, err
		}
		slog.Warn("waiting for a filer (-filer.startTimeout bounds the wait)", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// diskCacheDir is the disk cache's directory under -cacheDir: one per
// cluster, named for its filers, since file ids are unique only within a
// cluster. Mounts of one cluster share it (see pagecache's disk tier).
// Mounts of different users do not: each user's are under a name of its
// own (cacheDirName).
func diskCacheDir(cacheDir string, filers []filer.Address, euid int) string {
	names := make([]string, 0, len(filers))
	for _, a := range filers {
		names = append(names, a.HTTP)
	}
	slices.Sort(names)
	h := sha256.Sum256([]byte(strings.Join(names, ",")))
	return filepath.Join(cacheDir, cacheDirName(euid), hex.EncodeToString(h[:8]))
}

// cacheDirName is the directory under -cacheDir of the mounts run by user
// euid: root's keeps the name it always had, so that its caches stay warm
// across an upgrade; any other user's is named for the user, since the
// tier refuses a directory it does not own (pagecache.CheckPrivateDir), and
// with one name for all, whichever user mounted first with the default
// -cacheDir (/tmp) would have kept every other user's mount from starting.
func cacheDirName(euid int) string {
	if euid == 0 {
		return "weedfuse"
	}
	return "weedfuse-" + strconv.Itoa(euid)
}

// prepareDiskCacheDir makes the disk cache's directory for the filers
// under -cacheDir, and returns it, or an error, naming the directory, its
// owner and mode and what to do, where another local user could choose
// what is in it. The tier checks what it reads against tables that lie
// beside the bytes, so whoever may write the directory, or swap it, or one
// above it, for one of their own, could plant needles, with tables to
// match, that the mount would serve to every reader as the filer's bytes.
// So:
//   - -cacheDir, with its symlinks resolved, and every directory above it
//     are root's or the mount's user's, and writable by no one else,
//     unless sticky (as /tmp is: there no one may rename or remove
//     another's entries);
//   - the mount's directories under it (cacheDirName, and the cluster's)
//     are the mount's user's own, not symlinks, and not writable by group
//     or others (pagecache.CheckPrivateDir).
//
// What -cacheDir resolves to is what the tier is given, so that a symlink
// on the way, changed later, changes nothing.
func prepareDiskCacheDir(cacheDir string, filers []filer.Address) (string, error) {
	euid := os.Geteuid()
	abs, err := filepath.Abs(cacheDir)
	if err != nil {
		return "", fmt.Errorf("-cacheDir %s: %w", cacheDir, err)
	}
	// Before MkdirAll too, which would make what is missing wherever a
	// planted link leads.
	if err := checkLinksOwned(abs, euid); err != nil {
		return "", fmt.Errorf("-cacheDir %s: %w", cacheDir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("-cacheDir %s: %w", cacheDir, err)
	}
	if err := checkLinksOwned(abs, euid); err != nil {
		return "", fmt.Errorf("-cacheDir %s: %w", cacheDir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("-cacheDir %s: %w", cacheDir, err)
	}
	if err := checkCacheDirChain(real, euid); err != nil {
		return "", fmt.Errorf("-cacheDir %s: %w", cacheDir, err)
	}
	dir := diskCacheDir(real, filers, euid)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("-cacheDir %s: %w", cacheDir, err)
		}
		if err := pagecache.CheckPrivateDir(d); err != nil {
			return "", fmt.Errorf("-cacheDir %s: %w", cacheDir, err)
		}
	}
	return dir, nil
}

// checkLinksOwned checks that no symlink on the way to path (absolute) is
// another user's: one planted in a sticky /tmp (which the kernel follows
// unless fs.protected_symlinks is set) would choose where the cache goes,
// say into a directory of root's that root never meant for it.
func checkLinksOwned(path string, euid int) error {
	p := string(filepath.Separator)
	for _, part := range strings.Split(path, string(filepath.Separator)) {
		if part == "" {
			continue
		}
		p = filepath.Join(p, part)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); errors.Is(err, syscall.ENOENT) {
			return nil // the rest is made by this user
		} else if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFLNK && st.Uid != 0 && int(st.Uid) != euid {
			target, _ := os.Readlink(p)
			return fmt.Errorf("%s is a symlink (to %s) owned by uid %d, neither root nor uid %d, which runs the mount: its owner chooses where the cache goes. Give -cacheDir the real directory", p, target, st.Uid, euid)
		}
	}
	return nil
}

// checkCacheDirChain checks dir (absolute, its symlinks resolved) and each
// directory above it: root's or euid's, and writable by group or others
// only when sticky.
func checkCacheDirChain(dir string, euid int) error {
	for d := dir; ; d = filepath.Dir(d) {
		var st syscall.Stat_t
		if err := syscall.Lstat(d, &st); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		mode := st.Mode & 0o7777
		switch {
		case st.Uid != 0 && int(st.Uid) != euid:
			return fmt.Errorf("%s is owned by uid %d (mode %04o), neither root nor uid %d, which runs the mount: its owner could swap the cache's directory for one holding bytes of their choosing, which the mount would serve as files'. Give -cacheDir a directory that only root or uid %d can change, all the way up", d, st.Uid, mode, euid, euid)
		case mode&0o022 != 0 && mode&syscall.S_ISVTX == 0:
			return fmt.Errorf("%s is writable by group or others (mode %04o) and not sticky: they could swap the cache's directory for one holding bytes of their choosing, which the mount would serve as files'. chmod go-w (or +t) it, or give -cacheDir another directory", d, mode)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func prepareMountpoint(cfg *config, umask uint64) (string, error) {
	dir, err := filepath.Abs(cfg.dir)
	if err != nil {
		return "", fmt.Errorf("-dir %q: %w", cfg.dir, err)
	}
	st, err := os.Stat(dir)
	if errors.Is(err, syscall.ENOTCONN) {
		// A mount whose process died (a crash, a kill -9) is left at dir:
		// weed mount unmounts it before mounting, so that a restart after
		// a crash just works. Detached, it goes once nothing uses it.
		if uerr := detach(dir); uerr != nil {
			return "", fmt.Errorf("-dir %s: %w; unmounting the dead mount there: %w", dir, err, uerr)
		}
		slog.Info("unmounted a dead mount at the mount point", "dir", dir)
		st, err = os.Stat(dir)
	}
	if errors.Is(err, os.ErrNotExist) && cfg.dirAutoCreate {
		// As weed mount makes it: 0777 less -umask.
		if err := os.MkdirAll(dir, os.FileMode(0o777&^umask)); err != nil {
			return "", fmt.Errorf("-dir %s: %w", dir, err)
		}
		st, err = os.Stat(dir)
	}
	if err != nil {
		return "", fmt.Errorf("-dir %s: %w", dir, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("-dir %s: not a directory", dir)
	}
	// Like weed mount on Linux, the mount goes over a non-empty directory
	// with or without -nonempty (fuse3 has no such check).
	return dir, nil
}

// setReadAhead raises the mount's kernel readahead: go-fuse's MaxReadAhead
// can only lower the kernel's 128 KiB, but the bdi knob can raise it.
func setReadAhead(dir string, kb int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	dev := uint64(st.Dev)
	major, minor := (dev>>8)&0xfff|(dev>>32)&^0xfff, dev&0xff|(dev>>12)&^0xff
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	return os.WriteFile(p, []byte(strconv.Itoa(kb)), 0o644)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// httpServers are the optional debug and metrics endpoints.
type httpServers []*http.Server

func (s httpServers) close() {
	for _, srv := range s {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.Shutdown(ctx)
		cancel()
	}
}

func startHTTP(cfg *config, metrics http.Handler) httpServers {
	var out httpServers
	serve := func(addr string, h http.Handler) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			slog.Error("cannot serve metrics", "address", addr, "err", err)
			return
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		out = append(out, srv)
	}
	if cfg.debug {
		mux := http.NewServeMux()
		mux.Handle("/debug/", http.DefaultServeMux)
		mux.Handle("/metrics", metrics)
		serve(fmt.Sprintf("127.0.0.1:%d", cfg.debugPort), mux)
	}
	if cfg.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics)
		serve(cfg.metricsAddr, mux)
	}
	return out
}

// maxCachedListing is fs.Options.MaxCachedListing for -cacheDirMaxEntries,
// whose 0 keeps every listing.
func maxCachedListing(flag int) int {
	if flag <= 0 {
		return math.MaxInt
	}
	return flag
}

// detach lazily unmounts the mount at dir: umount2 as root, fusermount
// (setuid) as the user who mounted it otherwise, as weed mount does.
func detach(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if err == nil || !errors.Is(err, syscall.EPERM) {
		return err
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		out, ferr := exec.Command(bin, "-u", "-z", dir).CombinedOutput()
		if ferr == nil {
			return nil
		}
		if !errors.Is(ferr, exec.ErrNotFound) {
			return fmt.Errorf("%s -u -z: %w: %s", bin, ferr, strings.TrimSpace(string(out)))
		}
	}
	return err
}
