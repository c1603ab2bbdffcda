//go:build faults

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// The fault campaign (make faults): readers on weedfuse and on the stock
// weed mount of one cluster read files in 1 MiB preads at random offsets,
// dropping the kernel's pages after each, while a fault is injected and
// healed; each read is checked against the bytes the file may hold. It
// writes docs/reliability.md (or $WEEDFUSE_RELIABILITY_OUT).

const (
	faultFiles    = 6
	faultFileSize = 8 << 20
	faultReadSize = 1 << 20
	faultBefore   = 2 * time.Second // reading before the fault
	faultHold     = 4 * time.Second // the fault lasts
	faultAfter    = 4 * time.Second // reading after the heal, at least
	faultWait     = 45 * time.Second
)

type faultEvent struct {
	at   time.Time // when the read returned
	dur  time.Duration
	err  error
	bad  int64 // wrong bytes
	torn bool  // parts of two versions, each byte right for one of them
	size int
}

// classify looks at a read that matched no version whole. It returns the
// bytes that match no version at their offset and, if there are none,
// that the read is torn: it holds parts of two versions, as a read that
// overlaps a replace may (the replace is not atomic for a reader).
func classify(got []byte, off int64, versions [][]byte) (wrong int64, torn bool) {
	for j, b := range got {
		ok := false
		for _, v := range versions {
			if v[off+int64(j)] == b {
				ok = true
				break
			}
		}
		if !ok {
			wrong++
		}
	}
	return wrong, wrong == 0
}

// faultReader reads one mount's files until stop is closed, then returns
// its events.
type faultReader struct {
	dir   string
	mu    sync.Mutex
	want  map[string][][]byte // acceptable contents per file
	ev    []faultEvent
	stuck bool
}

func (r *faultReader) accept(name string, versions ...[]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want[name] = versions
}

func (r *faultReader) run(stop <-chan struct{}, done chan<- struct{}, seed uint64) {
	defer close(done)
	rng := rand.New(rand.NewPCG(seed, 99))
	buf := make([]byte, faultReadSize)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		name := fmt.Sprintf("f%d.bin", rng.IntN(faultFiles))
		off := rng.Int64N(faultFileSize - faultReadSize)
		began := time.Now()
		n, err := 0, error(nil)
		f, err := os.Open(filepath.Join(r.dir, name))
		if err == nil {
			n, err = f.ReadAt(buf, off)
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			f.Close()
		}
		e := faultEvent{at: time.Now(), dur: time.Since(began), err: err, size: n}
		if err == nil {
			r.mu.Lock()
			versions := r.want[name]
			r.mu.Unlock()
			e.bad = int64(n)
			for _, v := range versions {
				if bytes.Equal(buf[:n], v[off:off+int64(n)]) {
					e.bad = 0
					break
				}
			}
			if e.bad > 0 {
				e.bad, e.torn = classify(buf[:n], off, versions)
			}
		}
		r.mu.Lock()
		r.ev = append(r.ev, e)
		r.mu.Unlock()
		if e.err != nil {
			time.Sleep(50 * time.Millisecond) // a failing mount answers at once
		}
	}
}

// faultRow summarises one mount's events for one fault.
type faultRow struct {
	fault, mount     string
	reads, errs      int
	kinds            string
	longest, recover time.Duration
	wrong            int64
	torn             int // reads that held parts of two versions
	stuck            bool
	notRun           string // why the fault did not run here
}

func summarise(fault, mount string, ev []faultEvent, healed time.Time, stuck bool) faultRow {
	row := faultRow{fault: fault, mount: mount, stuck: stuck}
	kinds := map[string]int{}
	var lastErr time.Time
	for _, e := range ev {
		row.reads++
		row.longest = max(row.longest, e.dur)
		row.wrong += e.bad
		if e.torn {
			row.torn++
		}
		if e.err != nil {
			row.errs++
			var errno syscall.Errno
			k := e.err.Error()
			if errors.As(e.err, &errno) {
				k = errno.Error()
			}
			kinds[k]++
			lastErr = e.at
		}
	}
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(ks)
	row.kinds = strings.Join(ks, ", ")
	// Recovered: the first read that succeeded after the heal and after
	// the last error; a read blocked by the fault counts when it returns.
	for _, e := range ev {
		if e.err == nil && e.at.After(healed) && e.at.After(lastErr) {
			row.recover = e.at.Sub(healed)
			break
		}
	}
	return row
}

type fault struct {
	name   string
	inject func(t *testing.T) // starts the fault
	heal   func(t *testing.T) // ends it
	// hold is how long the fault lasts between inject and heal; 0 is
	// faultHold.
	hold time.Duration
	// replaces holds the files the fault rewrites: readers accept the old
	// and the new bytes during it, and only the new after it.
	replaces map[string][]byte
	// notRun, if set, says why the fault cannot run here: its rows say so.
	notRun string
}

// campaignMount is one mount that the readers read.
type campaignMount struct{ name, dir string }

func TestFaultCampaign(t *testing.T) {
	// Registered first, so run last: the cluster's log dump on failure
	// comes before it, and the failures stay at the end of the output.
	var failures []string
	t.Cleanup(func() {
		if len(failures) > 0 {
			t.Logf("the campaign failed:\n%s", strings.Join(failures, "\n"))
		}
	})
	// A short grace: weed volume and filer can ignore SIGTERM for long.
	c := cluster.StartT(t, cluster.Options{StopGrace: 500 * time.Millisecond})
	ctx := ctxT(t, 20*time.Minute)
	rng := rand.New(rand.NewPCG(5, 6))
	files := map[string][]byte{}
	for i := range faultFiles {
		data := make([]byte, faultFileSize)
		fillRandom(rng, data)
		name := fmt.Sprintf("f%d.bin", i)
		files[name] = data
		if err := c.Put(ctx, "/faults/"+name, data); err != nil {
			t.Fatal(err)
		}
	}
	// Small caches, so that reads reach the cluster.
	wfCache := t.TempDir()
	wf := startMountAt(t, c, filepath.Join(t.TempDir(), "wf"), "-filer.path=/faults",
		"-cacheDir="+wfCache, "-cacheCapacityMB=0", "-readerCacheSizeMB=16")
	weedCache := t.TempDir()
	wm, err := c.StartWeedMount(ctx, filepath.Join(t.TempDir(), "wm"), "-filer.path=/faults",
		"-cacheDir="+weedCache, "-cacheCapacityMB=0")
	if err != nil {
		t.Fatal(err)
	}
	mounts := []campaignMount{{"weedfuse", wf.Dir}, {"weed mount", wm.Dir()}}

	replaced := make([]byte, faultFileSize)
	fillRandom(rng, replaced)
	faults := []fault{
		{name: "filer killed (SIGKILL) and restarted", inject: func(t *testing.T) { must(t, c.StopFiler(0)) }, heal: func(t *testing.T) { must(t, c.StartFiler(ctx)) }},
		{name: "master killed and restarted", inject: func(t *testing.T) { must(t, c.StopMaster(0)) }, heal: func(t *testing.T) { must(t, c.StartMaster(ctx)) }},
		{name: "volume server stopped (SIGTERM, SIGKILL after 0.5 s) and restarted", inject: func(t *testing.T) { must(t, c.StopVolume(0)) }, heal: func(t *testing.T) { must(t, c.StartVolume(ctx, 0)) }},
		{name: "volume server SIGSTOPped, then SIGCONT", inject: func(t *testing.T) { must(t, syscall.Kill(c.VolumePids()[0], syscall.SIGSTOP)) },
			heal: func(t *testing.T) { must(t, syscall.Kill(c.VolumePids()[0], syscall.SIGCONT)) }},
		{name: "file replaced while being read", inject: func(t *testing.T) { must(t, c.Put(ctx, "/faults/f0.bin", replaced)) }, heal: func(*testing.T) {},
			replaces: map[string][]byte{"f0.bin": replaced}},
		{name: "cache directory removed", inject: func(t *testing.T) {
			must(t, os.RemoveAll(wfCache))
			must(t, os.RemoveAll(weedCache))
		}, heal: func(*testing.T) {}},
	}
	rows := runFaults(t, mounts, files, faults)
	netRows, netNote := netFaults(t, ctx, files)
	rows = append(rows, netRows...)
	rss := peakRSS(t, ctx, c)
	writeReliability(t, rows, netNote, rss)
	// Only weedfuse is held to the rules: weed mount is the baseline, and
	// what it returns is measured and reported, not asserted.
	check := func(mount, format string, args ...any) {
		if mount == "weedfuse" {
			t.Errorf(format, args...)
			failures = append(failures, fmt.Sprintf(format, args...))
		} else {
			t.Logf("reported, not asserted: "+format, args...)
		}
	}
	for _, r := range rows {
		if r.wrong != 0 {
			check(r.mount, "%s, %s: %d wrong bytes", r.fault, r.mount, r.wrong)
		}
	}
	for _, r := range rss {
		if r.wrong != 0 || r.errs != 0 {
			check(r.mount, "peak RSS, %s: %d errors, %d wrong bytes", r.mount, r.errs, r.wrong)
		}
	}
}

// runFaults injects and heals each fault in turn while readers read every
// mount, and returns a row per fault and mount. files is updated with
// what the faults rewrote.
func runFaults(t *testing.T, mounts []campaignMount, files map[string][]byte, faults []fault) []faultRow {
	var rows []faultRow
	for _, f := range faults {
		if f.notRun != "" {
			for _, m := range mounts {
				rows = append(rows, faultRow{fault: f.name, mount: m.name, notRun: f.notRun})
			}
			continue
		}
		readers := make([]*faultReader, len(mounts))
		stop := make(chan struct{})
		dones := make([]chan struct{}, len(mounts))
		for i, m := range mounts {
			readers[i] = &faultReader{dir: m.dir, want: map[string][][]byte{}}
			for name, data := range files {
				readers[i].accept(name, data)
			}
			for name, data := range f.replaces {
				readers[i].accept(name, files[name], data)
			}
			dones[i] = make(chan struct{})
			go readers[i].run(stop, dones[i], uint64(i+1))
		}
		time.Sleep(faultBefore)
		t.Logf("%s: inject", f.name)
		f.inject(t)
		hold := f.hold
		if hold == 0 {
			hold = faultHold
		}
		time.Sleep(hold)
		f.heal(t)
		healed := time.Now()
		t.Logf("%s: healed", f.name)
		// Read on until every mount has read without error for faultAfter,
		// or faultWait has passed.
		deadline := healed.Add(faultWait)
		for time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
			calm := time.Since(healed) >= faultAfter
			for _, r := range readers {
				r.mu.Lock()
				n := len(r.ev)
				quiet := n > 0 && r.ev[n-1].err == nil && time.Since(r.ev[n-1].at) < 2*time.Second
				for j := n - 1; j >= 0 && quiet; j-- {
					if r.ev[j].at.Before(time.Now().Add(-faultAfter)) {
						break
					}
					quiet = r.ev[j].err == nil
				}
				r.mu.Unlock()
				calm = calm && quiet
			}
			if calm {
				break
			}
		}
		close(stop)
		for i, r := range readers {
			select {
			case <-dones[i]:
			case <-time.After(30 * time.Second):
				r.stuck = true
			}
			r.mu.Lock()
			row := summarise(f.name, mounts[i].name, r.ev, healed, r.stuck)
			r.mu.Unlock()
			t.Logf("%+v", row)
			rows = append(rows, row)
		}
		for name, data := range f.replaces {
			files[name] = data
		}
	}
	return rows
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeReliability(t *testing.T, rows []faultRow, netNote string, rss []rssRow) {
	out := os.Getenv("WEEDFUSE_RELIABILITY_OUT")
	if out == "" {
		out = filepath.Join("..", "docs", "reliability.md")
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Reliability: fault campaign

Written by `+"`make faults`"+` (integration/faults_test.go, TestFaultCampaign) on %s.
A cluster (master, one volume server, filer on 127.0.0.1; weed %s); weedfuse and the stock weed
mount read the same %d files of %d MiB side by side, during the same faults, in %d KiB preads at
random offsets, dropping the kernel's pages after each read (weedfuse: -readerCacheSizeMB=16
-cacheCapacityMB=0; weed mount: -cacheCapacityMB=0). Each fault runs for %v after %v of reading;
reading goes on after the heal until both mounts have read without error for %v (at most %v).

- **errors**: reads that failed, by errno;
- **longest stall**: the slowest single read (a read blocked by the fault counts whole);
- **recovered after**: from the heal to the first read that succeeded after it (and after the
  last error): how long the mount kept readers waiting or failing once the cluster was whole;
- **torn reads**: reads that matched no version whole but each byte of which matched one: parts
  of the old and the new file in one read, which a read overlapping a replace may return;
- **wrong bytes**: bytes that matched no version the file held at their offset. weedfuse must
  return none (the test fails); weed mount's are reported as measured.

| fault | mount | reads | errors | longest stall | recovered after | torn reads | wrong bytes |
|---|---|---|---|---|---|---|---|
`, time.Now().UTC().Format("2006-01-02 15:04 UTC"), weedVersion(), faultFiles, faultFileSize>>20,
		faultReadSize>>10, faultHold, faultBefore, faultAfter, faultWait)
	for _, r := range rows {
		if r.notRun != "" {
			fmt.Fprintf(&b, "| %s | %s | not run: %s | | | | | |\n", r.fault, r.mount, r.notRun)
			continue
		}
		errs := "0"
		if r.errs > 0 {
			errs = fmt.Sprintf("%d (%s)", r.errs, r.kinds)
		}
		stall := r.longest.Round(time.Millisecond).String()
		if r.stuck {
			stall += ", still blocked at the end"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %d | %d |\n", r.fault, r.mount, r.reads, errs, stall,
			r.recover.Round(time.Millisecond), r.torn, r.wrong)
	}
	if netNote != "" {
		fmt.Fprintf(&b, "\n%s\n", netNote)
	}
	if len(rss) > 0 {
		fmt.Fprintf(&b, `
## Peak memory with %d concurrent readers

On the first cluster, each mount alone and freshly mounted with %s (a disk size, as weed mount's;
the other flags at their defaults: a 256 MiB memory budget, -readerCacheSizeMB), %d readers read
%d files of %d MiB (twice that cache; reader i reads file i mod %d) in %d KiB preads from a random
offset on, sequentially, dropping the kernel's pages after each read, for %v. **Peak RSS** is the
mount process's VmHWM at the end: its whole resident high-water mark, including anything mapped
outside the Go heap. weedfuse's idle RSS is mostly its memory tier, mapped and populated whole at
mount (pagecache/arena.go); under load, go-fuse adds a buffer of the request's size (1 MiB) per
READ in flight (fuse.(*Server).handleRequest), and the Go heap keeps their pages for a while.

| mount | idle RSS | peak RSS | read | errors | wrong bytes |
|---|---|---|---|---|---|
`, rssReaders, rss[0].flags, rssReaders, rssFiles, rssFileSize>>20, rssFiles, rssReadSize>>10, rssRun)
		for _, r := range rss {
			fmt.Fprintf(&b, "| %s | %d MiB | %d MiB | %d MiB in %v (%.0f MiB/s) | %d | %d |\n", r.mount, r.idle>>20, r.peak>>20,
				r.read>>20, r.took.Round(100*time.Millisecond), float64(r.read)/(1<<20)/r.took.Seconds(), r.errs, r.wrong)
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", out)
}

func weedVersion() string {
	w, err := cluster.FindWeed()
	if err != nil {
		return "?"
	}
	out, _ := exec.Command(w, "version").Output()
	if f := strings.Fields(string(out)); len(f) >= 3 {
		return f[2]
	}
	return strings.TrimSpace(string(out))
}
