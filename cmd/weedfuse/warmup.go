package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// warmupMain is `weedfuse warmup [-threads N] [-quiet] PATH...`, as
// `juicefs warmup`: it reads files, or every file under directories, of
// running weedfuse mounts in parallel, so that their disk caches hold
// them, and then says what the mounts fetched, wrote to disk and evicted
// meanwhile (their metrics, before and after). Reading through the mount
// is what fills the cache: a whole-file read fetches whole needles,
// verifies them and writes them to -cacheDir. Reads are O_DIRECT, whose
// stream the mount keeps whole on disk (pagecache's KeepsStream): a
// buffered read of pages the kernel still holds would never reach the
// mount, which would then not fetch needles evicted from its disk cache;
// and O_DIRECT leaves the page cache as it was, other readers' pages in
// it, without filling it with a tree larger than memory.
func warmupMain(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("weedfuse warmup", flag.ContinueOnError)
	fl.SetOutput(stderr)
	threads := fl.Int("threads", 8, "files read at once")
	quiet := fl.Bool("quiet", false, "no progress line")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: weedfuse warmup [-threads N] [-quiet] PATH...\n\nReads files (or every file under directories) of a weedfuse mount, so that its disk cache (-cacheDir) holds them.")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() == 0 || *threads <= 0 {
		fl.Usage()
		return 2
	}
	// O_DIRECT wants page-aligned buffers, which a mapping's are.
	bufs, err := unix.Mmap(-1, 0, *threads*warmupBuf, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Fprintf(stderr, "weedfuse warmup: read buffers: %v\n", err)
		return 1
	}
	defer unix.Munmap(bufs)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Once interrupted, a second Ctrl-C kills at once.
	context.AfterFunc(ctx, stop)

	w := &warmer{start: time.Now(), stderr: stderr}
	jobs := make(chan warmupJob, 1024)
	var wg sync.WaitGroup
	for i := range *threads {
		buf := bufs[i*warmupBuf : (i+1)*warmupBuf]
		wg.Go(func() {
			for j := range jobs {
				w.read(ctx, j, buf)
			}
		})
	}
	stopProgress := func() {}
	if !*quiet && isTerminal(stderr) {
		stopProgress = w.showProgress()
	}
	for _, arg := range fl.Args() {
		if ctx.Err() != nil {
			break
		}
		w.walk(ctx, arg, jobs)
	}
	close(jobs)
	wg.Wait()
	stopProgress()
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "weedfuse warmup: interrupted")
	}
	w.report(stdout)
	switch {
	case ctx.Err() != nil:
		return signalExit(ctx)
	case w.failed.Load() > 0:
		return 1
	}
	return 0
}

// signalExit is the exit status after ctx, from signal.NotifyContext for
// SIGINT and SIGTERM, was cancelled: 128 + the signal, as a shell reports
// a process it killed. NotifyContext's cause names the signal (by its text:
// the cause's type is unexported).
func signalExit(ctx context.Context) int {
	if strings.HasPrefix(context.Cause(ctx).Error(), syscall.SIGTERM.String()) {
		return 128 + int(syscall.SIGTERM)
	}
	return 128 + int(syscall.SIGINT)
}

// warmupBuf is the size of each read.
const warmupBuf = 1 << 20

// The metrics a warm-up reads (internal/metrics/tables.go).
var (
	diskTier      = map[string]string{"tier": "disk"}
	fetchedMetric = []string{"weedfuse_http_fetched_bytes_total", "weedfuse_http_range_bytes_total", "weedfuse_rdma_fetched_bytes_total"}
)

// warmer is a warm-up in progress: its counters, and the mounts it reads
// from. Safe for concurrent use, but for walk and report.
type warmer struct {
	start                       time.Time
	found, files, bytes, failed atomic.Int64
	mounts                      []*warmedMount

	stderr io.Writer
	mu     sync.Mutex // serializes stderr's lines
	shown  bool       // a progress line is on screen; mu held
}

// warmedMount is a mount that a warm-up reads from, with its metrics from
// before and the bytes read from it, to tell what stayed on its disk.
type warmedMount struct {
	mountRef
	read atomic.Int64
}

// capacity is the size of the mount's disk cache: 0 for none.
func (m *warmedMount) capacity() float64 {
	return m.first.sum("weedfuse_cache_capacity_bytes", diskTier)
}

// warmupJob is a file to read, and the mount it is on.
type warmupJob struct {
	path  string
	mount *warmedMount
}

// walk feeds the files at or under arg to the workers, until ctx is done.
func (w *warmer) walk(ctx context.Context, arg string, jobs chan<- warmupJob) {
	root, err := filepath.Abs(arg)
	if err == nil {
		// WalkDir would take a symlink, even as its root, for a file of
		// its own, and walk nothing.
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		w.fail(arg, err)
		return
	}
	m, err := w.mount(ctx, root)
	if err != nil {
		w.fail(arg, err)
		return
	}
	filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		switch {
		case ctx.Err() != nil:
			return fs.SkipAll
		case err != nil:
			w.fail(p, err)
			return nil
		case !de.Type().IsRegular():
			return nil
		}
		w.found.Add(1)
		select {
		case jobs <- warmupJob{path: p, mount: m}:
			return nil
		case <-ctx.Done():
			return fs.SkipAll
		}
	})
}

// mount returns the weedfuse mount that holds root. Each mount is found
// once, so that its metrics "before" come before any of the warm-up's
// reads.
func (w *warmer) mount(ctx context.Context, root string) (*warmedMount, error) {
	ref, err := findMount(ctx, root)
	if err != nil {
		return nil, err
	}
	for _, m := range w.mounts {
		if m.sock == ref.sock {
			return m, nil
		}
	}
	m := &warmedMount{mountRef: ref}
	if m.capacity() == 0 {
		return nil, fmt.Errorf("the mount at %s has no disk cache (-cacheCapacityMB=0, or no -cacheDir): nothing to warm", ref.dir)
	}
	w.mounts = append(w.mounts, m)
	return m, nil
}

// read reads one file to its end. It stops after the read under way
// when ctx is done, counting the file neither warmed nor failed.
func (w *warmer) read(ctx context.Context, j warmupJob, buf []byte) {
	if ctx.Err() != nil {
		return
	}
	f, err := os.OpenFile(j.path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		w.fail(j.path, err)
		return
	}
	defer f.Close()
	for ctx.Err() == nil {
		n, err := f.Read(buf)
		w.bytes.Add(int64(n))
		j.mount.read.Add(int64(n))
		if err == io.EOF {
			w.files.Add(1)
			return
		}
		if err != nil {
			w.fail(j.path, err)
			return
		}
	}
}

// fail counts a failure and says what it was, naming the path once,
// though a *PathError holds one too.
func (w *warmer) fail(p string, err error) {
	w.failed.Add(1)
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		p, err = pe.Path, pe.Err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clearLineLocked()
	fmt.Fprintf(w.stderr, "weedfuse warmup: %s: %v\n", p, err)
}

// showProgress redraws a progress line every 500 ms, and returns what
// stops it and clears the line.
func (w *warmer) showProgress() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				w.mu.Lock()
				fmt.Fprintf(w.stderr, "\r\x1b[K%s", w.line())
				w.shown = true
				w.mu.Unlock()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		w.mu.Lock()
		w.clearLineLocked()
		w.mu.Unlock()
	}
}

// clearLineLocked erases the progress line, if one is on screen; w.mu held.
func (w *warmer) clearLineLocked() {
	if w.shown {
		fmt.Fprint(w.stderr, "\r\x1b[K")
		w.shown = false
	}
}

func (w *warmer) line() string {
	secs := time.Since(w.start).Seconds()
	return fmt.Sprintf("warmup: %d/%d files, %.1f MiB, %.1f MiB/s, %d failed",
		w.files.Load(), w.found.Load(), mib(w.bytes.Load()), mib(w.bytes.Load())/max(secs, 1e-3), w.failed.Load())
}

// report prints the summary: what was read, and what the mounts fetched,
// wrote to their disk caches and evicted meanwhile; with a warning for a
// mount whose disk cache could not hold what was read from it.
func (w *warmer) report(stdout io.Writer) {
	var fetched, written, evictions float64
	for _, m := range w.mounts {
		// Not the interrupted context: the summary is wanted then too.
		after, err := scrape(context.Background(), m.sock)
		if err != nil {
			w.fail(m.dir, fmt.Errorf("metrics after the warm-up: %w", err))
			continue
		}
		delta := func(name string) float64 { return after.sum(name, nil) - m.first.sum(name, nil) }
		for _, name := range fetchedMetric {
			fetched += delta(name)
		}
		wrote, evicted := delta("weedfuse_disk_written_bytes_total"), delta("weedfuse_disk_evictions_total")
		written += wrote
		evictions += evicted
		read, capacity := float64(m.read.Load()), m.capacity()
		if evicted == 0 && read <= capacity {
			continue
		}
		// No counter has the bytes evicted; what was written and is no
		// longer there is.
		gone := max(0, m.first.sum("weedfuse_cache_used_bytes", diskTier)+wrote-after.sum("weedfuse_cache_used_bytes", diskTier))
		w.mu.Lock()
		if read > capacity {
			fmt.Fprintf(w.stderr, "weedfuse warmup: warning: the disk cache of %s (%.0f MiB) is smaller than what was warmed; %.1f MiB were evicted\n",
				m.dir, mib(capacity), mib(gone))
		} else {
			fmt.Fprintf(w.stderr, "weedfuse warmup: %.1f MiB of older data were evicted from the disk cache of %s (%.0f MiB) to make room\n",
				mib(gone), m.dir, mib(capacity))
		}
		w.mu.Unlock()
	}
	secs := time.Since(w.start).Seconds()
	files := "files"
	if w.files.Load() == 1 {
		files = "file"
	}
	fmt.Fprintf(stdout, "warmed up %d %s, %.1f MiB read in %.1f s (%.1f MiB/s); %d failed\n",
		w.files.Load(), files, mib(w.bytes.Load()), secs, mib(w.bytes.Load())/max(secs, 1e-3), w.failed.Load())
	fmt.Fprintf(stdout, "fetched %.1f MiB from volume servers, wrote %.1f MiB to the disk cache; %.0f evictions\n",
		mib(fetched), mib(written), evictions)
}

func mib[N int64 | float64](b N) float64 { return float64(b) / (1 << 20) }
