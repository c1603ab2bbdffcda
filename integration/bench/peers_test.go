package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPeerCacheMB(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 1024}, // the common -cacheCapacityMB
		{[]string{}, defaultCacheMB},
		{[]string{"-cacheCapacityMB=8192"}, 8192},
		{[]string{"--cacheCapacityMB=2048", "-other"}, 2048},
	} {
		if got := peerCacheMB(tc.args, 1024); got != tc.want {
			t.Errorf("peerCacheMB(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
}

func TestPeerArgs(t *testing.T) {
	pm := peerMount{dir: "/m", cache: "/c", cacheMB: 2048, freeMB: 10_000}
	for _, tc := range []struct {
		name string
		got  []string
		want string
	}{
		{"rclone full", rcloneArgs("/w/rclone.conf", true, pm),
			"mount weed: /m --config=/w/rclone.conf --read-only --cache-dir=/c --vfs-cache-mode=full --vfs-cache-max-size=2048M"},
		{"rclone off", rcloneArgs("/w/rclone.conf", false, pm),
			"mount weed: /m --config=/w/rclone.conf --read-only --cache-dir=/c --vfs-cache-mode=off"},
		{"s3fs cache", s3fsArgs("http://127.0.0.1:9", "/w/pw", true, pm),
			"bench /m -f -o ro -o url=http://127.0.0.1:9 -o use_path_request_style -o passwd_file=/w/pw -o use_cache=/c -o ensure_diskfree=7952"},
		{"s3fs", s3fsArgs("http://127.0.0.1:9", "/w/pw", false, pm),
			"bench /m -f -o ro -o url=http://127.0.0.1:9 -o use_path_request_style -o passwd_file=/w/pw"},
		{"juicefs", juicefsArgs("sqlite3:///w/meta.db", pm),
			"--no-agent mount --no-usage-report --read-only --no-bgjob --cache-dir=/c --cache-size=2048 --buffer-size=256 sqlite3:///w/meta.db /m"},
	} {
		if got := strings.Join(tc.got, " "); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	pm.xattr, pm.freeMB = true, 100
	if got := strings.Join(juicefsArgs("m", pm), " "); !strings.Contains(got, " --enable-xattr m /m") {
		t.Errorf("juicefs with xattrs: %s", got)
	}
	if got := strings.Join(s3fsArgs("u", "p", true, pm), " "); !strings.HasSuffix(got, "ensure_diskfree=0") {
		t.Errorf("s3fs on a nearly full disk: %s", got)
	}
	if !wantsXAttr([]string{"-disableXAttr=false"}) || wantsXAttr(nil) {
		t.Error("wantsXAttr")
	}
}

func TestRcloneConfig(t *testing.T) {
	want := "[weed]\ntype = s3\nprovider = SeaweedFS\nendpoint = http://127.0.0.1:9\naccess_key_id = k\nsecret_access_key = s\n"
	if got := rcloneConfig("http://127.0.0.1:9", "k", "s"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// fakePeerResults are two workloads on weed mount, weedfuse, rclone full
// and JuiceFS, s3fs missing, one failed JuiceFS run.
func fakePeerResults() *results {
	res := &results{runs: 2, mounts: []kind{weedMount, weedfuse, rcloneFull, juiceFS}}
	for k := range numKinds {
		res.val[k], res.rss[k], res.cacheDisk[k] = map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	}
	res.steps = []step{lsStep("ls2000", smallDir, smallN, ""), seqStep("seq-buf", "buffered", "buf", fioJob{}, 2)}
	set := func(k kind, id string, vs ...float64) { res.val[k][id] = vs }
	set(weedMount, "ls2000", 0.2, 0.2)
	set(weedfuse, "ls2000", 0.1, 0.1)
	set(rcloneFull, "ls2000", 2, 2)
	set(juiceFS, "ls2000", 0.1, math.NaN())
	for _, k := range res.mounts {
		set(k, "seq-buf-cold", 100, 100)
		set(k, "seq-buf-warm", 1000, 1000)
		res.rss[k]["ls2000"] = []float64{50, 60}
		res.cacheDisk[k]["ls2000"] = []float64{0, 1 << 20}
	}
	set(weedfuse, "seq-buf-cold", 400, 400)
	res.peers = &peerReport{versions: map[string]string{"rclone": "rclone v1.75.2"}, tools: map[string]string{}}
	res.peers.unavailable[s3fsCache] = "s3fs is not installed (make bench-deps: apt-get install s3fs): exec: not found"
	res.peers.unavailable[s3fsPlain] = res.peers.unavailable[s3fsCache]
	res.peers.cmds[rcloneFull] = "rclone mount weed: <mnt> --vfs-cache-mode=full"
	res.peers.failures = []string{"run 2, ls2000 on JuiceFS: boom"}
	return res
}

func TestWritePeers(t *testing.T) {
	res := fakePeerResults()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	writePeers(p, &options{cacheMB: 1024, only: regexp.MustCompile("")}, &sysInfo{weed: "4.48"}, res)
	out := b.String()
	for _, want := range []string{
		"| workload | unit | weed mount | weedfuse | rclone full | JuiceFS |\n|---|---|--:|--:|--:|--:|\n",
		"| `ls -l` of 2000 entries, cold | s | 0.200 | 0.100 | 2.00 | 0.100 |\n",
		// Times: the other's over weedfuse's; the failed run is left out.
		"| workload | weed mount | rclone full | JuiceFS |\n",
		"| ls2000 | 2.00× | 20.0× | 1.00× |\n",
		"| seq-buf-cold | 4.00× | 4.00× | 4.00× |\n",
		"| seq-buf-warm | 1.00× | 1.00× | 1.00× |\n",
		"| **geometric mean** | **2.00×** (3) | **4.31×** (3) | **1.59×** (3) |\n",
		"| ls2000 | 60.0 | 60.0 | 60.0 | 60.0 |\n",
		"| ls2000 | 1.00 | 1.00 | 1.00 | 1.00 |\n",
		"- **s3fs cache**: not measured: s3fs is not installed (make bench-deps: apt-get install s3fs): exec: not found\n",
		"- run 2, ls2000 on JuiceFS: boom\n",
		"- rclone full: `rclone mount weed: <mnt> --vfs-cache-mode=full`\n",
		"rclone: `rclone v1.75.2`",
		"| weedfuse ÷ | seq buf cold | seq buf warm | geometric mean, all workloads |\n",
		"| rclone full | 4.00× | 1.00× | 4.31× |\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if !strings.Contains(out, "**s3fs**: not") {
		t.Errorf("s3fs without cache is not reported as missing:\n%s", out)
	}
}

func TestPeerChart(t *testing.T) {
	groups, series, ratios := newPeerTable(fakePeerResults()).chartData()
	if want := []string{"weed mount", "rclone full", "JuiceFS"}; !slices.Equal(series, want) {
		t.Errorf("series %q, want %q", series, want)
	}
	if len(groups) != 3 || len(ratios) != 3 || ratios[0][1] != 20 {
		t.Errorf("groups %q, ratios %v", groups, ratios)
	}
	img := drawGroupedChart("t", "s", groups, series, ratios)
	if img.Bounds().Dy() < plotTop+3*len(series)*subH {
		t.Errorf("chart of %v is too small", img.Bounds())
	}
	texts := []string{"weedfuse over each mount: median ratio, higher is better (log scale)"}
	for k := range numKinds {
		texts = append(texts, k.String())
	}
	for _, s := range texts {
		for _, r := range strings.ToUpper(s) {
			if _, ok := glyphs[r]; !ok {
				t.Errorf("%q: no glyph for %q", s, r)
			}
		}
	}
}

func TestChildPids(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	time.Sleep(50 * time.Millisecond)
	if kids := childPids(os.Getpid()); !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("childPids = %v, want %d among them", kids, cmd.Process.Pid)
	}
}

func TestMatchNice(t *testing.T) {
	self := procStat(os.Getpid())
	cmd := exec.Command("nice", "-n", "3", "sleep", "10")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	// nice execs sleep once it has set the value.
	for range 100 {
		if f := procStat(pid); len(f) > 16 && f[16] != self[16] {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := matchNice(pid); err != nil {
		t.Fatal(err)
	}
	if f := procStat(pid); len(f) <= 16 || f[16] != self[16] {
		t.Errorf("nice of the child after matchNice: %v, want %s", f, self[16])
	}
}

func TestCapFS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a loop device")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir() + "/cache"
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	undo, err := capFS(dir, 64)
	if err != nil {
		t.Skip(err) // no loop devices here
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize >> 20; free < 64 || free > 64+64/16+160 {
		t.Errorf("%d MiB free on a file system for 64, want at least 64 and no more than its image", free)
	}
	if !mounted(dir) {
		t.Error("not mounted")
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if mounted(dir) {
		t.Error("still mounted after undo")
	}
	if _, err := os.Stat(dir + ".img"); !os.IsNotExist(err) {
		t.Errorf("image after undo: %v", err)
	}
}
