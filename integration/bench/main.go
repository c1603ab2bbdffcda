// Command bench measures weedfuse against the stock `weed mount` on one real
// SeaweedFS cluster, in the same run, alternating between the two mounts, and
// writes <out>/results.md and <out>/results.png (`make bench`).
//
// It needs root (FUSE mounts, dropping the kernel's caches), fio, fuse3 and
// the weed binary. A run takes about 25 minutes (and about 65 GB free
// disk); -quick about 2.
//
// -peers also runs every workload on rclone mount, s3fs and JuiceFS over
// `weed s3` (peers.go; `make bench-deps` installs them), and adds their
// tables and results-peers.png.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/integration/mount"
)

func main() {
	log.SetFlags(log.Ltime)
	if err := run(); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

// options are the command line.
type options struct {
	quick    bool
	out      string
	runs     int
	randTime time.Duration
	cacheMB  int
	weedfuse string   // a prebuilt binary; "" builds ./cmd/weedfuse
	wfArgs   []string // extra weedfuse flags
	weedArgs []string // extra weed mount flags
	only     *regexp.Regexp
	hold     bool
	peers    bool // also rclone, s3fs and JuiceFS (peers.go)
}

func parseOptions() (*options, error) {
	o := &options{}
	flag.BoolVar(&o.quick, "quick", false, "a short smoke run: 1 run, 5 s per random-read job")
	flag.StringVar(&o.out, "out", "bench", "directory for results.md and results.png")
	flag.IntVar(&o.runs, "runs", 0, "runs of every workload on each mount (default 3, with -quick 1)")
	flag.DurationVar(&o.randTime, "randTime", 0, "length of each time-based random-read fio job (default 20s, with -quick 5s)")
	flag.IntVar(&o.cacheMB, "cacheCapacityMB", 1024, "-cacheCapacityMB given to both mounts")
	flag.StringVar(&o.weedfuse, "weedfuse", "", "a prebuilt weedfuse binary (default: go build ./cmd/weedfuse)")
	wfArgs := flag.String("weedfuse.args", "", `extra weedfuse flags, space-separated, e.g. "-debug -debug.port=6062" for pprof`)
	weedArgs := flag.String("weed.args", "", "extra weed mount flags, space-separated")
	only := flag.String("only", "", "run only the workloads whose id matches this regular expression (ids: "+strings.Join(stepIDs(), ", ")+", http)")
	flag.BoolVar(&o.peers, "peers", false, "also run every workload on rclone mount and s3fs over weed s3, and on JuiceFS (install them with make bench-deps)")
	flag.BoolVar(&o.hold, "hold", false, "load the data (with that of the workloads -only selects), mount both, print where, and wait for Ctrl-C instead of measuring (for profiling by hand)")
	flag.Parse()
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", flag.Arg(0))
	}
	if o.runs <= 0 {
		o.runs = map[bool]int{false: 3, true: 1}[o.quick]
	}
	if o.randTime <= 0 {
		o.randTime = map[bool]time.Duration{false: 20 * time.Second, true: 5 * time.Second}[o.quick]
	}
	if o.cacheMB <= 0 {
		return nil, fmt.Errorf("-cacheCapacityMB %d: want a positive size", o.cacheMB)
	}
	o.wfArgs, o.weedArgs = strings.Fields(*wfArgs), strings.Fields(*weedArgs)
	re, err := regexp.Compile(*only)
	if err != nil {
		return nil, fmt.Errorf("-only: %w", err)
	}
	o.only = re
	return o, nil
}

// checkPrerequisites fails early, with the remedy, rather than minutes into
// a run.
func checkPrerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark mounts FUSE file systems and drops the kernel's caches")
	}
	for _, tool := range []string{"fio", "fusermount3", "ls"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing (.ci/install installs fio and fuse3): %w", tool, err)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("FUSE is unavailable: %w", err)
	}
	return nil
}

// startSpace is the free space the start workload needs beside the rest:
// weed mount allocates its whole -cacheCapacityMB (startCacheMB) on disk
// when it mounts (fallocate of its cache volumes), and fails when it cannot
// (the bench stopped eight minutes in, where the disk had 55 GB free).
const startSpace = startCacheMB<<20 + 16<<30

// checkSpace fails early when the file system under work cannot hold what
// the selected workloads write.
func checkSpace(work string, o *options) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(work, &st); err != nil {
		return nil // unknown: the run finds out
	}
	return spaceFor(filepath.Dir(work), int64(st.Bavail)*st.Bsize, o)
}

// spaceFor says why free bytes in dir are too few for the run o asks for.
func spaceFor(dir string, free int64, o *options) error {
	if o.hold || !o.only.MatchString("start") || free >= startSpace {
		return nil
	}
	return fmt.Errorf("%s has %d MiB free; the start workload needs %d MiB (weed mount allocates its -cacheCapacityMB=%d at mount, and the data and other caches take the rest): free some, or leave it out with -only",
		dir, free>>20, int64(startSpace)>>20, startCacheMB)
}

func run() (err error) {
	o, err := parseOptions()
	if err != nil {
		return err
	}
	if err := checkPrerequisites(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	info := collectInfo()

	work, err := os.MkdirTemp("", "weedfuse-bench-")
	if err != nil {
		return err
	}
	if err := checkSpace(work, o); err != nil {
		os.Remove(work)
		return err
	}
	// Deferred first, so it runs last: after the mounts and the cluster,
	// which live in it, are gone.
	defer func() {
		err = errors.Join(err, os.RemoveAll(work))
	}()
	bin := o.weedfuse
	if bin == "" {
		log.Printf("building weedfuse")
		if bin, err = mount.Build(work); err != nil {
			return err
		}
	}
	// The data (7.3 GiB) lives under /buckets, so in the collection
	// "bench", which grows volumes of its own beside the default
	// collection's: the cluster's default 32 volumes of 256 MiB run out
	// while the dataset loads. With -peers, JuiceFS's copy of the data
	// doubles what the volume server holds, in a third collection.
	copts := cluster.Options{DataDir: filepath.Join(work, "cluster"), Logf: log.Printf, MaxVolumes: 160}
	c, err := cluster.Start(ctx, copts)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, c.Stop())
	}()
	info.weed = weedVersion(c.Weed())

	ds, err := loadData(ctx, c)
	if err != nil {
		return err
	}
	m := newMounter(c, bin, work, o)
	// Before the cluster stops: a mount whose filer is gone hangs its readers.
	defer func() {
		err = errors.Join(err, m.close())
	}()
	for _, k := range kinds {
		if err := m.fresh(ctx, k); err != nil {
			return err
		}
		if err := ds.verify(m.dir(k)); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		log.Printf("%s reads the data byte-exact", k)
	}

	if o.hold {
		// The data of the workloads -only selects too, to profile them.
		if err := prepareSteps(ctx, o, c, m, newResults(o)); err != nil {
			return err
		}
		fmt.Printf("filer %s (gRPC %s); weed mount at %s (pid %d), weedfuse at %s (pid %d); Ctrl-C ends\n",
			c.FilerAddr(), c.FilerGRPCAddr(), m.dir(weedMount), m.weed.Pid(), m.dir(weedfuse), m.wf.Pid())
		<-ctx.Done()
		return nil
	}
	res, err := runAll(ctx, o, c, m, ds)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; %s left as it was", o.out)
	}
	if err != nil {
		return err
	}
	info.elapsed = time.Since(began)
	info.loadAfter = loadAvg()
	return writeReport(o, info, res)
}
