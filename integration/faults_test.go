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
	size int
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
				// Count the bytes that differ from the newest version.
				v := versions[len(versions)-1][off : off+int64(n)]
				e.bad = 0
				for j := range n {
					if buf[j] != v[j] {
						e.bad++
					}
				}
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
	stuck            bool
}

func summarise(fault, mount string, ev []faultEvent, healed time.Time, stuck bool) faultRow {
	row := faultRow{fault: fault, mount: mount, stuck: stuck}
	kinds := map[string]int{}
	var lastErr time.Time
	for _, e := range ev {
		row.reads++
		row.longest = max(row.longest, e.dur)
		row.wrong += e.bad
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
}

func TestFaultCampaign(t *testing.T) {
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
	mounts := []struct{ name, dir string }{{"weedfuse", wf.Dir}, {"weed mount", wm.Dir()}}

	replaced := make([]byte, faultFileSize)
	fillRandom(rng, replaced)
	faults := []fault{
		{"filer killed (SIGKILL) and restarted", func(t *testing.T) { must(t, c.StopFiler(0)) }, func(t *testing.T) { must(t, c.StartFiler(ctx)) }},
		{"master killed and restarted", func(t *testing.T) { must(t, c.StopMaster(0)) }, func(t *testing.T) { must(t, c.StartMaster(ctx)) }},
		{"volume server stopped (SIGTERM, SIGKILL after 0.5 s) and restarted", func(t *testing.T) { must(t, c.StopVolume(0)) }, func(t *testing.T) { must(t, c.StartVolume(ctx, 0)) }},
		{"volume server SIGSTOPped, then SIGCONT", func(t *testing.T) { must(t, syscall.Kill(c.VolumePids()[0], syscall.SIGSTOP)) },
			func(t *testing.T) { must(t, syscall.Kill(c.VolumePids()[0], syscall.SIGCONT)) }},
		{"file replaced while being read", func(t *testing.T) { must(t, c.Put(ctx, "/faults/f0.bin", replaced)) }, func(*testing.T) {}},
		{"cache directory removed", func(t *testing.T) {
			must(t, os.RemoveAll(wfCache))
			must(t, os.RemoveAll(weedCache))
		}, func(*testing.T) {}},
	}

	var rows []faultRow
	for _, f := range faults {
		readers := make([]*faultReader, len(mounts))
		stop := make(chan struct{})
		dones := make([]chan struct{}, len(mounts))
		for i, m := range mounts {
			readers[i] = &faultReader{dir: m.dir, want: map[string][][]byte{}}
			for name, data := range files {
				readers[i].accept(name, data)
			}
			if f.name == "file replaced while being read" {
				readers[i].accept("f0.bin", files["f0.bin"], replaced)
			}
			dones[i] = make(chan struct{})
			go readers[i].run(stop, dones[i], uint64(i+1))
		}
		time.Sleep(faultBefore)
		t.Logf("%s: inject", f.name)
		f.inject(t)
		time.Sleep(faultHold)
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
		if f.name == "file replaced while being read" {
			files["f0.bin"] = replaced
		}
	}
	writeReliability(t, rows)
	for _, r := range rows {
		if r.wrong != 0 {
			t.Errorf("%s, %s: %d wrong bytes", r.fault, r.mount, r.wrong)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeReliability(t *testing.T, rows []faultRow) {
	out := os.Getenv("WEEDFUSE_RELIABILITY_OUT")
	if out == "" {
		out = filepath.Join("..", "docs", "reliability.md")
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Reliability: fault campaign

Written by `+"`make faults`"+` (integration/faults_test.go, TestFaultCampaign) on %s.
One cluster (master, one volume server, filer on 127.0.0.1; weed %s); weedfuse and the stock weed
mount read the same %d files of %d MiB side by side, during the same faults, in %d KiB preads at
random offsets, dropping the kernel's pages after each read (weedfuse: -readerCacheSizeMB=16
-cacheCapacityMB=0; weed mount: -cacheCapacityMB=0). Each fault runs for %v after %v of reading;
reading goes on after the heal until both mounts have read without error for %v (at most %v).

- **errors**: reads that failed, by errno;
- **longest stall**: the slowest single read (a read blocked by the fault counts whole);
- **recovered after**: from the heal to the first read that succeeded after it (and after the
  last error): how long the mount kept readers waiting or failing once the cluster was whole;
- **wrong bytes**: bytes that matched no version the file held; must be 0.

| fault | mount | reads | errors | longest stall | recovered after | wrong bytes |
|---|---|---|---|---|---|---|
`, time.Now().UTC().Format("2006-01-02 15:04 UTC"), weedVersion(), faultFiles, faultFileSize>>20,
		faultReadSize>>10, faultHold, faultBefore, faultAfter, faultWait)
	for _, r := range rows {
		errs := "0"
		if r.errs > 0 {
			errs = fmt.Sprintf("%d (%s)", r.errs, r.kinds)
		}
		stall := r.longest.Round(time.Millisecond).String()
		if r.stuck {
			stall += ", still blocked at the end"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %d |\n", r.fault, r.mount, r.reads, errs, stall,
			r.recover.Round(time.Millisecond), r.wrong)
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
