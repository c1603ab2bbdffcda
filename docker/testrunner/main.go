// Command testrunner drives weedfuse's docker-compose integration test, and is
// the one small helper that our scratch images carry.
//
//	testrunner wait [-timeout=D] URL... [-- CMD ARG...]  wait until every URL answers, then exec CMD
//	testrunner mounted DIR                               exit 0 when DIR is a live FUSE mount (healthcheck)
//	testrunner phase1                                    upload fixtures, sha256 them through the mount, run fio,
//	                                                     check Prometheus's targets and byte counters ($PROMETHEUS_URL)
//	testrunner warm                                      outage test, before the volume server stops
//	testrunner outage [-file=F -budget=D ...]            reads must fail with EIO within the retry budget
//	testrunner recover                                   reads succeed again once the volume server is back
//
// It uses the standard library only and is built with CGO_ENABLED=0, so that
// it runs in a FROM scratch image. See docker/compose-test.sh for the order.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "wait":
		err = cmdWait(args)
	case "mounted":
		err = cmdMounted(args)
	case "phase1", "warm", "outage", "recover":
		err = cmdTest(cmd, args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testrunner %s: FAIL: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testrunner wait|mounted|phase1|warm|outage|recover [flags]")
	os.Exit(2)
}

var start = time.Now()

func logf(format string, a ...any) {
	fmt.Printf("[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
}

// ---- wait / mounted: entrypoint and healthcheck helpers ----

// cmdWait waits until every URL answers HTTP with a status below 500, then
// execs the command after "--" (so that it becomes PID 1 and gets signals).
func cmdWait(args []string) error {
	fl := flag.NewFlagSet("wait", flag.ExitOnError)
	timeout := fl.Duration("timeout", 2*time.Minute, "give up after this long")
	fl.Parse(args)
	rest := fl.Args()
	var urls, command []string
	for i, a := range rest {
		if a == "--" {
			command = rest[i+1:]
			break
		}
		urls = append(urls, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for _, u := range urls {
		if err := poll(ctx, "wait for "+u, func() error { _, err := httpGet(ctx, u); return err }); err != nil {
			return err
		}
	}
	if len(command) == 0 {
		return nil
	}
	bin, err := exec.LookPath(command[0])
	if err != nil {
		return err
	}
	return syscall.Exec(bin, command, os.Environ())
}

// cmdMounted is the mount service's healthcheck: DIR must be a FUSE mount in
// this mount namespace, and stat must answer. It stats, never lists, so that
// it leaves no directory listing in the mount's caches.
func cmdMounted(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: testrunner mounted DIR")
	}
	return checkMounted(args[0], 3*time.Second)
}

func checkMounted(dir string, within time.Duration) error {
	fstype, err := mountType(dir)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(fstype, "fuse") {
		return fmt.Errorf("%s is a %s mount, not FUSE", dir, fstype)
	}
	return withDeadline(within, "stat "+dir, func() error { _, err := os.Stat(dir); return err })
}

// mountType returns the file system type of the mount at exactly dir.
func mountType(dir string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	fstype := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) {
				fstype = fields[i+1] // the last entry for a mount point is the one on top
			}
		}
	}
	if fstype == "" {
		return "", fmt.Errorf("%s is not a mount point", dir)
	}
	return fstype, nil
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// withDeadline runs fn and reports an error if it does not return in time.
// A call stuck in the kernel cannot be cancelled: it is left behind, and the
// process exits with the error soon after.
func withDeadline(d time.Duration, what string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("%s: no answer within %v (hung)", what, d)
	}
}

// ---- the test phases ----

type env struct {
	master, filer, volume string // http://host:port
	mnt                   string // the FUSE mount
	fio                   string
	prometheus            string // its URL; empty: no Prometheus check
	fioRuntime            time.Duration
	readRetry             time.Duration
	ready                 time.Duration
	file                  string        // outage: the file to read
	budget                time.Duration // outage: how long one READ may take to fail
	strict                bool          // outage: also read one at a time, within the budget
	withinHang            time.Duration // outage: deadline of every read
}

func cmdTest(phase string, args []string) error {
	fl := flag.NewFlagSet(phase, flag.ExitOnError)
	e := &env{}
	fl.StringVar(&e.master, "master", getenv("WEED_MASTER", "http://master:9333"), "master URL")
	fl.StringVar(&e.filer, "filer", getenv("WEED_FILER", "http://filer:8888"), "filer URL")
	fl.StringVar(&e.volume, "volume", getenv("WEED_VOLUME", "http://volume:8080"), "volume server URL")
	fl.StringVar(&e.mnt, "mnt", getenv("WEEDFUSE_MNT", "/share/weed"), "the weedfuse mount")
	fl.StringVar(&e.fio, "fio", "fio", "fio binary")
	fl.StringVar(&e.prometheus, "prometheus", os.Getenv("PROMETHEUS_URL"), "phase1: Prometheus's URL (empty: skip its check)")
	fl.DurationVar(&e.fioRuntime, "fio.runtime", 4*time.Second, "runtime of each fio job")
	fl.DurationVar(&e.readRetry, "readRetryTime", mustDuration(getenv("WEEDFUSE_READ_RETRY", "3s")), "the mount's -readRetryTime")
	fl.DurationVar(&e.ready, "ready.timeout", 2*time.Minute, "how long to wait for the cluster and the mount")
	fl.StringVar(&e.file, "file", "stopped.bin", "outage: the file to read (stopped.bin or paused.bin)")
	fl.DurationVar(&e.budget, "budget", 0, "outage: how long one READ may take to fail (default -readRetryTime)")
	fl.BoolVar(&e.strict, "strict", true, "outage: first read one at a time, each within the budget (O_DIRECT: budget+2s, buffered: 2 x budget+5s)")
	fl.DurationVar(&e.withinHang, "within.hang", 0, "outage: every read must fail within this (default 4 x budget + 5s)")
	fl.Parse(args)
	t0 := time.Now()
	var err error
	switch phase {
	case "phase1":
		err = e.phase1()
	case "warm":
		err = e.warm()
	case "outage":
		err = e.outage()
	case "recover":
		err = e.recover()
	}
	if err != nil {
		return err
	}
	logf("%s: PASS in %.1fs", phase, time.Since(t0).Seconds())
	return nil
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func mustDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testrunner: bad duration %q: %v\n", s, err)
		os.Exit(2)
	}
	return d
}

// waitReady waits for master → volume → filer → mount, in that order.
func (e *env) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), e.ready)
	defer cancel()
	steps := []struct {
		name string
		fn   func() error
	}{
		{"master is leader", func() error {
			b, err := httpGet(ctx, e.master+"/cluster/status")
			if err == nil && !bytes.Contains(b, []byte(`"IsLeader":true`)) {
				err = fmt.Errorf("not leader yet: %s", b)
			}
			return err
		}},
		{"volume server answers", func() error { _, err := httpGet(ctx, e.volume+"/status"); return err }},
		{"volume server registered (assign works)", func() error {
			b, err := httpGet(ctx, e.master+"/dir/assign")
			if err == nil && !bytes.Contains(b, []byte(`"fid"`)) {
				err = fmt.Errorf("no fid: %s", b)
			}
			return err
		}},
		{"filer answers", func() error { _, err := httpGet(ctx, e.filer+"/"); return err }},
		{"mount is up", func() error { return checkMounted(e.mnt, 5*time.Second) }},
	}
	for _, s := range steps {
		t := time.Now()
		if err := poll(ctx, s.name, s.fn); err != nil {
			return err
		}
		logf("ready: %s (%.1fs)", s.name, time.Since(t).Seconds())
	}
	return nil
}

// fixture is one file of the data set. Its bytes follow from its path.
type fixture struct {
	path string // under the test directory
	size int64
	text bool // compressible text, which the filer stores gzipped
}

const testDir = "/compose-test"

func fixtures() []fixture {
	fx := []fixture{
		{"empty.bin", 0, false},
		{"one.bin", 1, false},
		{"page-minus-one.bin", 4095, false},
		{"page.bin", 4096, false},
		{"odd.bin", 1_000_003, false},
		{"mib.bin", 1 << 20, false},
		{"chunk.bin", 4 << 20, false},            // exactly one 4 MiB chunk
		{"chunk-plus-one.bin", 4<<20 + 1, false}, // a 1-byte second chunk
		{"multi.bin", 9<<20 + 12345, false},      // three chunks
		{"text/readme.txt", 200_000, true},
		{"text/log.txt", 5<<20 + 3, true}, // gzipped, and more than one chunk
		{"nested/a/b/c/deep.bin", 70_000, false},
		{"dir with space/naïve ünïcode.bin", 12_345, false},
		{"big/fio.bin", 64 << 20, false}, // fio's file
	}
	for i := 0; i < 100; i++ {
		fx = append(fx, fixture{fmt.Sprintf("many/f%03d.dat", i), int64(100 + i*331), false})
	}
	return fx
}

// content returns a fixture's bytes: pseudo-random for binary files, and
// repetitive lines for text, all determined by the path.
func content(p string, size int64, text bool) []byte {
	h := fnv.New64a()
	h.Write([]byte(p))
	seed := h.Sum64()
	b := make([]byte, size)
	if !text {
		var key [32]byte
		for i := range key {
			key[i] = byte(seed >> (8 * (i % 8)))
		}
		key[31] ^= byte(len(p))
		rand.NewChaCha8(key).Read(b)
		return b
	}
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"seaweed", "fuse", "volume", "filer", "chunk", "needle", "master", "read", "mount", "rdma"}
	var buf bytes.Buffer
	for n := 0; int64(buf.Len()) < size; n++ {
		fmt.Fprintf(&buf, "%08d", n)
		for w := 0; w < 8; w++ {
			buf.WriteByte(' ')
			buf.WriteString(words[r.IntN(len(words))])
		}
		buf.WriteByte('\n')
	}
	copy(b, buf.Bytes())
	return b
}

func (e *env) phase1() error {
	logf("phase1: upload fixtures to %s%s, check them through %s, run fio", e.filer, testDir, e.mnt)
	if err := e.waitReady(); err != nil {
		return err
	}
	fx := fixtures()
	t := time.Now()
	var total int64
	for _, f := range fx {
		if err := e.upload(path.Join(testDir, f.path), content(f.path, f.size, f.text)); err != nil {
			return err
		}
		total += f.size
	}
	logf("uploaded %d files, %.1f MiB, in %.1fs", len(fx), float64(total)/(1<<20), time.Since(t).Seconds())

	root := filepath.Join(e.mnt, testDir)
	if err := e.waitVisible(filepath.Join(root, fx[len(fx)-1].path), fx[len(fx)-1].size); err != nil {
		return err
	}
	if err := checkTree(root, fx); err != nil {
		return err
	}
	t = time.Now()
	if err := checkSums(root, fx); err != nil {
		return err
	}
	logf("sha256 of all %d files through the mount: OK (%.1fs, %.0f MiB/s)", len(fx),
		time.Since(t).Seconds(), float64(total)/(1<<20)/time.Since(t).Seconds())
	if err := checkRanges(root, "multi.bin", 9<<20+12345, 200); err != nil {
		return err
	}
	if err := checkRanges(root, "text/log.txt", 5<<20+3, 100); err != nil {
		return err
	}
	if err := checkReadOnly(root); err != nil {
		return err
	}
	big := filepath.Join(root, "big/fio.bin")
	if err := e.runFio("seqread", big, "--rw=read", "--bs=1M", "--numjobs=1"); err != nil {
		return err
	}
	if err := e.runFio("randread", big, "--rw=randread", "--bs=4k", "--direct=1", "--numjobs=4"); err != nil {
		return err
	}
	var binary int64
	for _, f := range fx {
		if !f.text {
			binary += f.size
		}
	}
	return e.checkPrometheus(total, binary)
}

// promResponse is the envelope of Prometheus's HTTP API.
type promResponse struct {
	Status string          `json:"status"`
	Error  string          `json:"error"`
	Data   json.RawMessage `json:"data"`
}

func (e *env) promAPI(ctx context.Context, p string, data any) error {
	b, err := httpGet(ctx, strings.TrimRight(e.prometheus, "/")+p)
	if err != nil {
		return err
	}
	var r promResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("GET %s: %v", p, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", p, r.Status, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// promVector is the data of an instant query.
type promVector struct {
	Result []struct {
		Value [2]any `json:"value"`
	} `json:"result"`
}

// value returns the value of a query's single series.
func (d promVector) value() (float64, error) {
	if len(d.Result) != 1 {
		return 0, fmt.Errorf("%d series, want 1", len(d.Result))
	}
	s, _ := d.Result[0].Value[1].(string)
	var v float64
	if _, err := fmt.Sscan(s, &v); err != nil {
		return 0, fmt.Errorf("value %q: %v", s, err)
	}
	return v, nil
}

// checkPrometheus: the compose file's Prometheus scrapes the mount. Every
// active target must be up, the weedfuse job among them, and once it has
// scraped after the reads above, the bytes returned to READ must be at least
// what the sha256 pass alone read, and the bytes fetched over HTTP non-zero
// and at least the binary fixtures' size.
func (e *env) checkPrometheus(read, binary int64) error {
	if e.prometheus == "" {
		logf("prometheus: no -prometheus URL, not checked")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t := time.Now()
	var up []string
	err := poll(ctx, "Prometheus targets up", func() error {
		var d struct {
			Active []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
				ScrapeURL string            `json:"scrapeUrl"`
			} `json:"activeTargets"`
		}
		if err := e.promAPI(ctx, "/api/v1/targets?state=active", &d); err != nil {
			return err
		}
		up = up[:0]
		weedfuse := false
		for _, tg := range d.Active {
			if tg.Health != "up" {
				return fmt.Errorf("target %s (job %s): %s %s", tg.ScrapeURL, tg.Labels["job"], tg.Health, tg.LastError)
			}
			weedfuse = weedfuse || tg.Labels["job"] == "weedfuse"
			up = append(up, tg.Labels["job"]+" "+tg.ScrapeURL)
		}
		if !weedfuse {
			return fmt.Errorf("no weedfuse target among %d", len(d.Active))
		}
		return nil
	})
	if err != nil {
		return err
	}
	logf("prometheus: targets up: %s", strings.Join(up, ", "))
	// Values from a scrape later than now, so after every read above. The
	// filer stores the text fixtures gzipped, so HTTP fetched fewer bytes
	// than READ returned: at least the binary fixtures' bytes.
	after := time.Now()
	scrape := func() error {
		var d promVector
		if err := e.promAPI(ctx, "/api/v1/query?query="+url.QueryEscape(`timestamp(up{job="weedfuse"})`), &d); err != nil {
			return err
		}
		v, err := d.value()
		if err == nil && time.Unix(0, int64(v*1e9)).Before(after) {
			err = errors.New("no scrape since the reads yet")
		}
		return err
	}
	if err := poll(ctx, "Prometheus: a scrape after the reads", scrape); err != nil {
		return err
	}
	for _, q := range []struct {
		expr string
		min  int64
	}{
		{"sum(weedfuse_http_fetched_bytes_total)", binary},
		{"sum(weedfuse_fuse_read_bytes_total)", read},
	} {
		var d promVector
		if err := e.promAPI(ctx, "/api/v1/query?query="+url.QueryEscape(q.expr), &d); err != nil {
			return err
		}
		v, err := d.value()
		if err != nil {
			return fmt.Errorf("prometheus: %s: %v", q.expr, err)
		}
		if v < float64(q.min) || v == 0 {
			return fmt.Errorf("prometheus: %s = %.0f, want at least %d (and not 0)", q.expr, v, q.min)
		}
		logf("prometheus: %s = %.1f MiB (want at least %.1f MiB)", q.expr, v/(1<<20), float64(q.min)/(1<<20))
	}
	// The web UI: the image carries Debian's templates and scripts.
	page, err := httpGet(ctx, strings.TrimRight(e.prometheus, "/")+"/graph")
	if err != nil {
		return fmt.Errorf("prometheus: its graph page: %v", err)
	}
	if !bytes.Contains(page, []byte("static/js/graph/index.js")) {
		return fmt.Errorf("prometheus: /graph is not the graph page (%d bytes)", len(page))
	}
	js, err := httpGet(ctx, strings.TrimRight(e.prometheus, "/")+"/classic/static/js/graph/index.js")
	if err != nil || len(js) < 1000 {
		return fmt.Errorf("prometheus: the graph page's script: %d bytes, %v", len(js), err)
	}
	logf("prometheus: the graph page and its script load")
	logf("prometheus: OK (%.1fs)", time.Since(t).Seconds())
	return nil
}

// upload stores data at p on the filer with a multipart POST, retrying while
// the cluster grows its first volumes.
func (e *env) upload(p string, data []byte) error {
	u := e.filer + escapePath(p)
	var last error
	for i := 0; i < 30; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, err := mw.CreateFormFile("file", path.Base(p))
		if err != nil {
			return err
		}
		fw.Write(data)
		mw.Close()
		req, err := http.NewRequest(http.MethodPost, u, &body)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		resp, err := httpClient.Do(req)
		if err != nil {
			last = err
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Errorf("POST %s: %s: %s", u, resp.Status, bytes.TrimSpace(msg))
		if resp.StatusCode < 500 {
			return last
		}
	}
	return last
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// waitVisible waits until the mount shows file p with its full size.
func (e *env) waitVisible(p string, size int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return poll(ctx, "visible through the mount: "+p, func() error {
		st, err := os.Stat(p)
		if err == nil && st.Size() != size {
			err = fmt.Errorf("size %d, want %d", st.Size(), size)
		}
		return err
	})
}

// checkTree compares the files under root with the fixtures: the same names,
// regular files of the right sizes, nothing more.
func checkTree(root string, fx []fixture) error {
	want := map[string]int64{}
	for _, f := range fx {
		want[f.path] = f.size
	}
	got := map[string]int64{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: mode %v, want a regular file", p, info.Mode())
		}
		rel, _ := filepath.Rel(root, p)
		got[filepath.ToSlash(rel)] = info.Size()
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", root, err)
	}
	var problems []string
	for p, size := range want {
		if g, ok := got[p]; !ok {
			problems = append(problems, "missing "+p)
		} else if g != size {
			problems = append(problems, fmt.Sprintf("%s: size %d, want %d", p, g, size))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			problems = append(problems, "unexpected "+p)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("listing of %s differs: %s", root, strings.Join(problems, "; "))
	}
	logf("listing: %d files with the right names and sizes", len(got))
	return nil
}

// checkSums reads every fixture through the mount, two at a time, and
// compares sha256 with the uploaded bytes.
func checkSums(root string, fx []fixture) error {
	var (
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
		next     = make(chan fixture)
	)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				want := sha256.Sum256(content(f.path, f.size, f.text))
				got, n, err := sha256File(filepath.Join(root, f.path))
				msg := ""
				switch {
				case err != nil:
					msg = fmt.Sprintf("%s: %v", f.path, err)
				case n != f.size:
					msg = fmt.Sprintf("%s: read %d bytes, want %d", f.path, n, f.size)
				case got != hex.EncodeToString(want[:]):
					msg = fmt.Sprintf("%s: sha256 %s, want %x", f.path, got, want)
				}
				if msg != "" {
					mu.Lock()
					failures = append(failures, msg)
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range fx {
		next <- f
	}
	close(next)
	wg.Wait()
	if len(failures) > 0 {
		sort.Strings(failures)
		return fmt.Errorf("%d of %d files differ: %s", len(failures), len(fx), strings.Join(failures, "; "))
	}
	return nil
}

func sha256File(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// checkRanges preads random ranges, at unaligned offsets and across chunk
// boundaries, and compares them with the uploaded bytes.
func checkRanges(root, p string, size int64, n int) error {
	text := strings.HasSuffix(p, ".txt")
	want := content(p, size, text)
	f, err := os.Open(filepath.Join(root, p))
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(42, uint64(n)))
	for i := 0; i < n; i++ {
		off := r.Int64N(size)
		if i%4 == 0 { // straddle a 4 MiB chunk boundary
			off = max(0, min(size-1, (4<<20)*r.Int64N(size/(4<<20)+1)-r.Int64N(8192)))
		}
		ln := 1 + r.Int64N(300_000)
		buf := make([]byte, ln)
		got, err := f.ReadAt(buf, off)
		if err != nil && !(errors.Is(err, io.EOF) && off+int64(got) == size) {
			return fmt.Errorf("%s: pread(%d, %d): %v", p, off, ln, err)
		}
		end := min(size, off+ln)
		if int64(got) != end-off || !bytes.Equal(buf[:got], want[off:end]) {
			return fmt.Errorf("%s: pread(%d, %d): %d bytes, content differs", p, off, ln, got)
		}
	}
	logf("%d random preads of %s: OK", n, p)
	return nil
}

// checkReadOnly: weedfuse has no write path; writes must fail with EROFS.
func checkReadOnly(root string) error {
	err := os.WriteFile(filepath.Join(root, "should-not-exist"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("create in the mount: got %v, want EROFS", err)
	}
	logf("create in the mount: EROFS, as it should")
	return nil
}

// fioResult is the part of fio's JSON output that we check.
type fioResult struct {
	Jobs []struct {
		Name  string `json:"jobname"`
		Error int    `json:"error"`
		Read  struct {
			IOBytes int64   `json:"io_bytes"`
			BW      int64   `json:"bw_bytes"`
			IOPS    float64 `json:"iops"`
			Lat     struct {
				Mean float64 `json:"mean"`
			} `json:"clat_ns"`
		} `json:"read"`
	} `json:"jobs"`
}

func (e *env) runFio(name, file string, extra ...string) error {
	args := append([]string{
		"--name=" + name, "--filename=" + file, "--readonly", "--ioengine=psync",
		"--time_based", fmt.Sprintf("--runtime=%dms", e.fioRuntime.Milliseconds()),
		"--group_reporting", "--output-format=json",
	}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), e.fioRuntime+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.fio, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("fio %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	// fio may print notes before the JSON.
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var res fioResult
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("fio %s: output: %v", name, err)
	}
	if len(res.Jobs) == 0 {
		return fmt.Errorf("fio %s: no jobs in the output", name)
	}
	for _, j := range res.Jobs {
		if j.Error != 0 || j.Read.IOBytes == 0 {
			return fmt.Errorf("fio %s: job %s: error %d, %d bytes read", name, j.Name, j.Error, j.Read.IOBytes)
		}
		logf("fio %-8s %s: %.0f MiB/s, %.0f IOPS, mean latency %.0f µs, %d MiB read", name,
			strings.Join(extra, " "), float64(j.Read.BW)/(1<<20), j.Read.IOPS, j.Read.Lat.Mean/1000, j.Read.IOBytes>>20)
	}
	return nil
}

// ---- the outage test ----

const outageDir = "/compose-outage"

// The outage files: one read while the volume server is up, so that the
// mount holds live connections to it, and one for each outage, read for the
// first time during it, so that no cache can answer.
var outageFiles = []fixture{
	{"warm.bin", 8 << 20, false},
	{"stopped.bin", 8<<20 + 77, false},
	{"paused.bin", 8<<20 + 4099, false},
}

func outageFile(name string) (fixture, error) {
	for _, f := range outageFiles {
		if f.path == name {
			return f, nil
		}
	}
	return fixture{}, fmt.Errorf("-file %q: not one of the outage files", name)
}

// warm uploads the outage files and reads the first.
func (e *env) warm() error {
	if err := e.waitReady(); err != nil {
		return err
	}
	for _, f := range outageFiles {
		if err := e.upload(path.Join(outageDir, f.path), content(f.path, f.size, f.text)); err != nil {
			return err
		}
	}
	root := filepath.Join(e.mnt, outageDir)
	last := outageFiles[len(outageFiles)-1]
	if err := e.waitVisible(filepath.Join(root, last.path), last.size); err != nil {
		return err
	}
	if err := checkSums(root, outageFiles[:1]); err != nil {
		return err
	}
	logf("warm: %s read through the mount; the others are only stat'ed", outageFiles[0].path)
	return nil
}

// outage runs while the volume server is down (stopped, or paused: hung):
// reads of data that no cache holds must fail with EIO, and metadata, which
// the filer serves, must still answer.
//
// Round 1 reads one at a time (O_DIRECT, then buffered), and with -strict each read must fail within
// the budget, the time one FUSE READ may take to fail (-readRetryTime for a
// stopped server): an O_DIRECT read is one READ, so budget + 2s; a buffered
// read(2) may take two, because when the READ of the kernel's readahead
// fails the kernel retries the page with a READ of its own, so 2 x budget +
// 5s. Round 2 reads four at once, and each must fail within -within.hang
// (default 4 x budget + 5s): concurrent readers can wait for one another's
// failing fetches, so only "no hang" is asserted there. Every time is logged.
func (e *env) outage() error {
	budget := cmp.Or(e.budget, e.readRetry)
	fx, err := outageFile(e.file)
	if err != nil {
		return err
	}
	root := filepath.Join(e.mnt, outageDir)
	p := filepath.Join(root, fx.path)
	directDeadline := budget + 2*time.Second
	bufferedDeadline := 2*budget + 5*time.Second
	hangDeadline := cmp.Or(e.withinHang, 4*budget+5*time.Second)
	if e.strict {
		logf("outage: reads of %s must fail with EIO; one at a time within %v (O_DIRECT) and %v (buffered), "+
			"all at once within %v (budget %v, -readRetryTime=%v)", p, directDeadline, bufferedDeadline, hangDeadline, budget, e.readRetry)
	} else {
		logf("outage: reads of %s must fail with EIO within %v, four at once (budget %v, -readRetryTime=%v)",
			p, hangDeadline, budget, e.readRetry)
	}
	if err := withDeadline(5*time.Second, "stat", func() error {
		st, err := os.Stat(p)
		if err == nil && st.Size() != fx.size {
			err = fmt.Errorf("size %d, want %d", st.Size(), fx.size)
		}
		return err
	}); err != nil {
		return fmt.Errorf("stat %s with the volume server down: %w", p, err)
	}

	type read struct {
		name   string
		off    int64
		n      int
		direct bool
	}
	// readEIO reads and wants EIO within d; it returns how long it took.
	readEIO := func(label string, r read, d time.Duration) (time.Duration, error) {
		t := time.Now()
		var took time.Duration
		flags := os.O_RDONLY
		if r.direct {
			flags |= syscall.O_DIRECT
		}
		err := withDeadline(d, label+": "+r.name, func() error {
			f, err := os.OpenFile(p, flags, 0)
			if err != nil {
				return fmt.Errorf("open: %w", err)
			}
			defer f.Close()
			buf, err := alignedBuffer(r.n)
			if err != nil {
				return err
			}
			defer syscall.Munmap(buf)
			n, err := f.ReadAt(buf, r.off)
			took = time.Since(t)
			switch {
			case errors.Is(err, syscall.EIO):
				logf("%s: %s: EIO after %.2fs", label, r.name, took.Seconds())
				return nil
			case err == nil || errors.Is(err, io.EOF):
				return fmt.Errorf("%s: %s: returned %d bytes with the volume server down", label, r.name, n)
			default:
				return fmt.Errorf("%s: %s: got %v, want EIO", label, r.name, err)
			}
		})
		if err == nil && took > d { // returned, but late
			err = fmt.Errorf("%s: %s: EIO after %.2fs, want within %v", label, r.name, took.Seconds(), d)
		}
		return took, err
	}

	var worstDirect, worstBuffered, worstConcurrent time.Duration
	one := []read{
		{"O_DIRECT pread 1 MiB at 2 MiB", 2 << 20, 1 << 20, true},
		{"pread 256 KiB at 5 MiB+3", 5<<20 + 3, 256 << 10, false},
	}
	if !e.strict {
		one = nil // "no hang" is all that is asserted: the concurrent round says it
	}
	for _, r := range one {
		d := bufferedDeadline
		if r.direct {
			d = directDeadline
		}
		took, err := readEIO("one at a time", r, d)
		if err != nil {
			return err
		}
		if r.direct {
			worstDirect = max(worstDirect, took)
		} else {
			worstBuffered = max(worstBuffered, took)
		}
	}
	all := []read{
		{"read 1 MiB at 0", 0, 1 << 20, false},
		{"pread 256 KiB at 6 MiB+5", 6<<20 + 5, 256 << 10, false},
		{"pread 4 KiB at 8 MiB", 8 << 20, 4096, false},
		{"O_DIRECT pread 1 MiB at 4 MiB", 4 << 20, 1 << 20, true},
	}
	errs := make([]error, len(all))
	took := make([]time.Duration, len(all))
	var wg sync.WaitGroup
	for i, r := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			took[i], errs[i] = readEIO("all at once", r, hangDeadline)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, t := range took {
		worstConcurrent = max(worstConcurrent, t)
	}

	if err := withDeadline(5*time.Second, "readdir", func() error {
		ents, err := os.ReadDir(root)
		if err == nil && len(ents) != len(outageFiles) {
			err = fmt.Errorf("%d entries, want %d", len(ents), len(outageFiles))
		}
		return err
	}); err != nil {
		return fmt.Errorf("readdir %s with the volume server down: %w", root, err)
	}
	if e.strict {
		logf("outage: every read got EIO: one at a time, O_DIRECT in %.2fs, buffered in %.2fs; "+
			"all at once in at most %.2fs; stat and readdir still answer",
			worstDirect.Seconds(), worstBuffered.Seconds(), worstConcurrent.Seconds())
	} else {
		logf("outage: every read got EIO, in at most %.2fs; stat and readdir still answer", worstConcurrent.Seconds())
	}
	return nil
}

// alignedBuffer returns page-aligned memory, as O_DIRECT wants; release it
// with syscall.Munmap.
func alignedBuffer(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// recover runs once the volume server is back: every outage file reads
// correctly again.
func (e *env) recover() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t := time.Now()
	for _, fx := range outageFiles {
		p := filepath.Join(e.mnt, outageDir, fx.path)
		want := sha256.Sum256(content(fx.path, fx.size, fx.text))
		err := poll(ctx, "read "+p+" after the volume server is back", func() error {
			return withDeadline(30*time.Second, "read", func() error {
				got, n, err := sha256File(p)
				if err == nil && (n != fx.size || got != hex.EncodeToString(want[:])) {
					err = fmt.Errorf("%d bytes, sha256 %s: wrong content", n, got)
				}
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	logf("recover: all %d outage files read correctly again after %.1fs", len(outageFiles), time.Since(t).Seconds())
	return nil
}

// ---- HTTP and polling ----

var httpClient = &http.Client{Timeout: 30 * time.Second}

func httpGet(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 500 {
		return b, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return b, nil
}

// poll calls fn until it succeeds or ctx ends, and returns fn's last error.
func poll(ctx context.Context, what string, fn func() error) error {
	var err error
	for {
		if err = fn(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up: %w", what, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
