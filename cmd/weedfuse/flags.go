package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// config is everything the command line sets.
type config struct {
	filer              string
	filerPath          string
	dir                string
	readOnly           bool
	allowOthers        bool
	umask              string
	dataCenter         string
	volumeServerAccess string
	concurrentReaders  int
	cacheCapacityMB    int
	cacheDir           string
	readerCacheSizeMB  int
	cacheMetaTTLSec    int
	nonempty           bool
	dirAutoCreate      bool
	debug              bool
	debugPort          int
	debugFuse          bool
	readRetryTime      time.Duration
	filerStartTimeout  time.Duration
	maxBackground      int
	defaultPermissions bool
	disableXAttr       bool
	volumeName         string
	optionsFile        string

	// weed mount's flags that shape what the mount shows.
	includeSystemEntries bool
	mapUID               string
	mapGID               string

	// weed mount's flags that shape what df shows and what memory the
	// mount takes.
	collection         string
	replication        string
	ttlSec             int
	diskType           string
	collectionQuotaMB  int
	dfLogical          bool
	memoryLimitMB      int
	cacheDirMaxEntries int
	dirIdleEvictSec    int

	// weedfuse's own flags.
	readAheadKB int
	verifyETag  bool
	verify      string
	passthrough bool
	metricsAddr string
	verbosity   int // -v, see logging.go

	rdmaEnabled       bool
	rdmaSidecar       string
	rdmaFallback      bool
	rdmaMaxConcurrent int
	rdmaTimeoutMs     int
	rdmaDevice        string
	rdmaTLSCert       string
	rdmaTLSKey        string
	rdmaTLSCA         string
}

// ignoredFlags are weed mount's flags that a read-only mount has no use for.
// They are accepted, so that weedfuse drops in for weed mount, with a
// one-line warning. The value says whether the flag is boolean (takes no
// argument).
var ignoredFlags = map[string]bool{
	"asyncDio": true, "autofs": true, "cacheSymlink": true,
	"dlm": true, "peer.enable": true, "posix.dirNLink": true, "sys.novncache": true,
	"writebackCache": true,
	"cacheDirWrite":  false, "chunkSizeLimitMB": false, "concurrentWriters": false,
	"cpuprofile": false, "fuse.congestionThreshold": false, "localSocket": false,
	"memprofile": false, "metadataFlushSeconds": false, "peer.advertise": false,
	"peer.dataCenter": false, "peer.listen": false, "peer.rack": false,
	"windows.gid": false, "windows.uid": false, "writeBufferSizeMB": false,
}

// ignored is a flag.Value that warns once when set.
type ignored struct {
	name    string
	isBool  bool
	warn    io.Writer
	warned  bool
	setWith string
}

func (f *ignored) String() string   { return f.setWith }
func (f *ignored) IsBoolFlag() bool { return f.isBool }
func (f *ignored) Set(v string) error {
	f.setWith = v
	if !f.warned {
		fmt.Fprintf(f.warn, "weedfuse: -%s is a weed mount flag that a read-only mount does not use; ignored\n", f.name)
		f.warned = true
	}
	return nil
}

// newFlagSet declares every flag. Go's flag package takes -name=value,
// -name value and --name=value alike, which covers weed's single-dash
// spellings and pflag's double-dash ones. It is used here, where the house
// rule names pflag, because pflag reads a single dash as bundled one-letter
// flags (-filer as -f -i -l ...), and every weed mount command line in use
// spells its flags with one dash: drop-in comes first.
func newFlagSet(c *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("weedfuse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		// The commands first: after a hundred flags they go unseen.
		fmt.Fprintln(stderr, "Usage: weedfuse [weed mount's flags]   mount a filer directory read-only, as weed mount does")
		usageSubcommands(stderr)
		fmt.Fprintln(stderr, "\nFlags (weed mount's, with one dash or two):")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.filer, "filer", "localhost:8888", "comma-separated weed filer locations: host:port or host:port.grpcPort")
	fs.StringVar(&c.filerPath, "filer.path", "/", "mount this remote path from the filer")
	fs.StringVar(&c.dir, "dir", ".", "mount the filer at this directory")
	fs.BoolVar(&c.readOnly, "readOnly", false, "read only (weedfuse always mounts read-only; accepted for compatibility)")
	fs.BoolVar(&c.allowOthers, "allowOthers", true, "allow other users to access the file system")
	fs.StringVar(&c.umask, "umask", "022", "octal umask, e.g. 022, 0111")
	fs.StringVar(&c.dataCenter, "dataCenter", "", "prefer volume servers in this data center")
	fs.StringVar(&c.volumeServerAccess, "volumeServerAccess", "direct", "access volume servers by [direct|publicUrl|filerProxy]")
	fs.IntVar(&c.concurrentReaders, "concurrentReaders", 128, "limit concurrent chunk fetches for read operations")
	fs.IntVar(&c.cacheCapacityMB, "cacheCapacityMB", 128, "file chunk read cache capacity in MB: the disk cache under -cacheDir (0: none)")
	fs.StringVar(&c.cacheDir, "cacheDir", os.TempDir(), "local cache directory for file chunks")
	fs.IntVar(&c.readerCacheSizeMB, "readerCacheSizeMB", 256, "memory budget in MiB for cached and in-flight chunk blocks across all files")
	fs.IntVar(&c.cacheMetaTTLSec, "cacheMetaTtlSec", 60, "metadata cache validity seconds")
	fs.BoolVar(&c.nonempty, "nonempty", false, "allow mounting over a non-empty directory (weedfuse, as weed mount on Linux, mounts over one either way)")
	fs.BoolVar(&c.dirAutoCreate, "dirAutoCreate", false, "create the mount directory if it does not exist")
	fs.BoolVar(&c.debug, "debug", false, "serve profiling data and metrics on localhost:<debug.port>")
	fs.IntVar(&c.debugPort, "debug.port", 6061, "http port for debugging")
	fs.BoolVar(&c.debugFuse, "debug.fuse", false, "log raw FUSE requests and responses")
	fs.DurationVar(&c.readRetryTime, "readRetryTime", 6*time.Second, "maximum read retry wait time")
	fs.IntVar(&c.maxBackground, "fuse.maxBackground", 128, "FUSE max_background: in-flight asynchronous requests")
	fs.BoolVar(&c.defaultPermissions, "defaultPermissions", true, "enforce permissions by the operating system (weedfuse always lets the kernel check them; weed mount checks them itself when false)")
	fs.BoolVar(&c.disableXAttr, "disableXAttr", true, "disable xattr (weedfuse's default; -disableXAttr=false serves the xattrs weed mount stores, at two FUSE round trips per file of every ls -l)")
	fs.StringVar(&c.volumeName, "volumeName", "", "name of the mount shown by mount and df")
	fs.StringVar(&c.optionsFile, "options", "", "a file of command line options, each line in optionName=optionValue format")
	fs.BoolVar(&c.includeSystemEntries, "includeSystemEntries", false, "show filer system entries (/topics, /etc) in directory listings and lookups")
	fs.StringVar(&c.mapUID, "map.uid", "", "map local uid to uid on filer, comma-separated <local_uid>:<filer_uid>")
	fs.StringVar(&c.mapGID, "map.gid", "", "map local gid to gid on filer, comma-separated <local_gid>:<filer_gid>")
	fs.StringVar(&c.collection, "collection", "", "collection: df shows its space (weed mount also writes into it)")
	fs.StringVar(&c.replication, "replication", "", "replication (e.g. 000, 001): sent with df's request, as weed mount sends it")
	fs.IntVar(&c.ttlSec, "ttl", 0, "file ttl in seconds: sent with df's request, as weed mount sends it")
	fs.StringVar(&c.diskType, "disk", "", "[hdd|ssd|<tag>] disk type: sent with df's request, as weed mount sends it")
	fs.IntVar(&c.collectionQuotaMB, "collectionQuotaMB", 0, "quota for the collection: caps the size df shows")
	fs.BoolVar(&c.dfLogical, "df.logical", false, "report data sizes to df and the quota, instead of the space they occupy with replicas and ec parity")
	fs.IntVar(&c.memoryLimitMB, "memoryLimitMB", 0, "soft Go runtime memory limit in MiB; 0 preserves GOMEMLIMIT (or weedfuse's own, see README)")
	fs.IntVar(&c.cacheDirMaxEntries, "cacheDirMaxEntries", 100000, "a directory with more children than this keeps no listing in memory and is read from the filer; 0 keeps every listing")
	fs.IntVar(&c.dirIdleEvictSec, "dirIdleEvictSec", 600, "seconds a listing of a directory the kernel forgot is kept (at most -cacheMetaTtlSec; 0: -cacheMetaTtlSec)")

	fs.IntVar(&c.readAheadKB, "readAheadKB", 4096, "weedfuse: kernel readahead for the mount (bdi read_ahead_kb); 0 keeps the kernel's")
	fs.BoolVar(&c.verifyETag, "verifyETag", false, "weedfuse: check every chunk against the filer's e_tag MD5 too (the volume server's CRC32C is always checked; MD5 costs ~1.4 ms of CPU per MiB)")
	fs.StringVar(&c.verify, "verify", "ranges", "weedfuse: ranges (a random read of a needle in no cache fetches just its blocks, checked against the needle's block table where one is known, else counted as unverified) or strict (every miss fetches and checks the whole needle)")
	fs.BoolVar(&c.passthrough, "passthrough", true, "weedfuse: let the kernel read a file that is one chunk held whole in the disk cache straight from the cache's file (FUSE passthrough, Linux 6.9+; the file is checked when opened); the mount then answers every open")
	fs.StringVar(&c.metricsAddr, "metrics.address", "", "weedfuse: serve counters at http://ADDR/metrics (e.g. 127.0.0.1:9327)")
	fs.DurationVar(&c.filerStartTimeout, "filer.startTimeout", 0, "weedfuse: how long to wait at start for a filer that does not answer (0: until one does, as weed mount)")

	fs.BoolVar(&c.rdmaEnabled, "rdma.enabled", false, "read chunks over RDMA through weedrdma sidecars")
	fs.StringVar(&c.rdmaSidecar, "rdma.sidecar", "", "weedrdma addresses: a comma list of volumeHost:port=sidecarHost:port, or :PORT for a sidecar on every volume server's host")
	fs.BoolVar(&c.rdmaFallback, "rdma.fallback", true, "fall back to HTTP when RDMA cannot serve a read (false: such reads fail)")
	fs.IntVar(&c.rdmaMaxConcurrent, "rdma.maxConcurrent", 16, "maximum concurrent RDMA reads; each holds an 8 MiB registered slot")
	fs.IntVar(&c.rdmaTimeoutMs, "rdma.timeoutMs", 5000, "timeout of one RDMA read in milliseconds")
	fs.StringVar(&c.rdmaDevice, "rdma.device", "", "weedfuse: RDMA device name (default: the first with an active port)")
	fs.StringVar(&c.rdmaTLSCert, "rdma.tls.cert", "", "weedfuse: client certificate for the weedrdma control connection (TLS when given)")
	fs.StringVar(&c.rdmaTLSKey, "rdma.tls.key", "", "weedfuse: key of -rdma.tls.cert")
	fs.StringVar(&c.rdmaTLSCA, "rdma.tls.ca", "", "weedfuse: CA that signs weedrdma's certificate")

	addLogFlags(fs, c, stderr)
	for name, isBool := range ignoredFlags {
		fs.Var(&ignored{name: name, isBool: isBool, warn: stderr}, name, "weed mount flag; ignored by weedfuse")
	}
	return fs
}

// parseFlags parses args, then the -options file for flags not given on
// the command line, as weed mount does.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := newFlagSet(c, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.optionsFile != "" {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if err := applyOptionsFile(fs, c.optionsFile, set); err != nil {
			return nil, err
		}
	}
	c.dir, c.cacheDir = expandHome(c.dir), expandHome(c.cacheDir)
	return c, nil
}

func applyOptionsFile(fs *flag.FlagSet, file string, set map[string]bool) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("-options: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		name, value, ok := cutOption(s)
		name = strings.TrimLeft(name, "-")
		if set[name] {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("-options %s:%d: unknown option %q", file, line, name)
		}
		// A boolean with no value ("nonempty", "nonempty=") is set, as
		// on weed's command line.
		if b, isBool := f.Value.(interface{ IsBoolFlag() bool }); (!ok || value == "") && isBool && b.IsBoolFlag() {
			value = "true"
		}
		if err := fs.Set(name, strings.TrimSpace(value)); err != nil {
			return fmt.Errorf("-options %s:%d: %w", file, line, err)
		}
	}
	return sc.Err()
}

// cutOption splits an -options line as weed's own reader does: the name
// ends at the first '=', ':' or space, and the value is what follows that
// one character, trimmed.
func cutOption(line string) (name, value string, ok bool) {
	i := strings.IndexAny(line, "=: ")
	if i < 0 {
		return line, "", false
	}
	return line[:i], strings.TrimSpace(line[i+1:]), true
}

// expandHome resolves a leading "~" in a path to the user's home, as weed
// mount does for -dir and -cacheDir (a unit file or a shell that did not
// expand it otherwise leaves a directory named "~").
func expandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, p[1:])
}
