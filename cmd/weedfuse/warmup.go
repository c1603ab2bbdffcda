package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// warmupMain is `weedfuse warmup [-threads N] PATH...`, as `juicefs
// warmup`: it reads files, or every file under directories, of a running
// mount in parallel, so that the mount's disk cache holds them, with a
// progress line and a summary. Reading through the mount is what fills the
// cache: a whole-file read fetches whole needles, verifies them and writes
// them to -cacheDir. The kernel's copies of the pages are dropped after
// each file, so that warming a tree larger than memory leaves the page
// cache as it was.
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
	if fl.NArg() == 0 {
		fl.Usage()
		return 2
	}
	for _, p := range fl.Args() {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			fmt.Fprintf(stderr, "weedfuse warmup: %v\n", err)
			return 1
		}
		if st.Type != unix.FUSE_SUPER_MAGIC {
			fmt.Fprintf(stderr, "weedfuse warmup: %s is not on a FUSE mount\n", p)
			return 1
		}
	}
	w := &warmer{start: time.Now()}
	paths := make(chan string, 1024)
	var wg sync.WaitGroup
	for i := 0; i < max(*threads, 1); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for p := range paths {
				w.read(p, buf)
			}
		}()
	}
	stop := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if !*quiet {
					fmt.Fprintf(stderr, "\r%s", w.line())
				}
			}
		}
	}()
	for _, root := range fl.Args() {
		filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				w.fail(p, err)
				return nil
			}
			if de.Type().IsRegular() {
				w.found.Add(1)
				paths <- p
			}
			return nil
		})
	}
	close(paths)
	wg.Wait()
	close(stop)
	<-progressDone
	if !*quiet {
		fmt.Fprintf(stderr, "\r%s\n", w.line())
	}
	secs := time.Since(w.start).Seconds()
	fmt.Fprintf(stdout, "warmed up %d files, %d bytes (%.1f MiB/s) in %.1f s; %d failed\n",
		w.files.Load(), w.bytes.Load(), float64(w.bytes.Load())/(1<<20)/max(secs, 1e-3), secs, w.failed.Load())
	if w.failed.Load() > 0 {
		return 1
	}
	return 0
}

// warmer counts a warm-up's progress. Safe for concurrent use.
type warmer struct {
	start                       time.Time
	found, files, bytes, failed atomic.Int64
	mu                          sync.Mutex // serializes error lines
}

func (w *warmer) line() string {
	secs := time.Since(w.start).Seconds()
	return fmt.Sprintf("warmup: %d/%d files, %.1f MiB, %.1f MiB/s, %d failed",
		w.files.Load(), w.found.Load(), float64(w.bytes.Load())/(1<<20), float64(w.bytes.Load())/(1<<20)/max(secs, 1e-3), w.failed.Load())
}

func (w *warmer) fail(p string, err error) {
	w.failed.Add(1)
	w.mu.Lock()
	fmt.Fprintf(os.Stderr, "\nweedfuse warmup: %s: %v\n", p, err)
	w.mu.Unlock()
}

// read reads one file to its end, then drops its pages from the kernel.
func (w *warmer) read(p string, buf []byte) {
	f, err := os.Open(p)
	if err != nil {
		w.fail(p, err)
		return
	}
	defer f.Close()
	for {
		n, err := f.Read(buf)
		w.bytes.Add(int64(n))
		if err == io.EOF {
			break
		}
		if err != nil {
			w.fail(p, err)
			return
		}
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	w.files.Add(1)
}
