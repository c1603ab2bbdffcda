package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSingleVolume runs the default cluster through every helper, and ends
// with Stop, checking that no process is left.
func TestSingleVolume(t *testing.T) {
	began := time.Now()
	c := StartT(t, Options{})
	t.Logf("cluster started in %v", time.Since(began))
	ctx := t.Context()
	big := randomBytes(t, 5<<20)
	bigPath := "/roundtrip/" + strconv.Itoa(len(big))

	t.Run("PutGet", func(t *testing.T) {
		for _, data := range [][]byte{{}, {'x'}, big} {
			p := "/roundtrip/" + strconv.Itoa(len(data))
			check(t, c.Put(ctx, p, data))
			got, err := c.Get(ctx, p)
			check(t, err)
			if !bytes.Equal(data, got) {
				t.Errorf("%s: read %d bytes back, want the %d put", p, len(got), len(data))
			}
		}
		// At the default -maxMB=4, 5 MiB makes a 4 MiB and a 1 MiB chunk.
		e, err := c.Entry(ctx, "/roundtrip", strconv.Itoa(len(big)))
		check(t, err)
		slices.SortFunc(e.Chunks, func(a, b *filerpb.FileChunk) int { return int(a.Offset - b.Offset) })
		var sizes []uint64
		for _, ch := range e.Chunks {
			sizes = append(sizes, ch.Size)
		}
		if !slices.Equal(sizes, []uint64{4 << 20, 1 << 20}) {
			t.Errorf("chunk sizes %v, want [4 MiB, 1 MiB]", sizes)
		}
		if e.Attributes.FileSize != uint64(len(big)) || e.Attributes.FileMode != 0o644 {
			t.Errorf("size %d mode %o, want %d and 644", e.Attributes.FileSize, e.Attributes.FileMode, len(big))
		}

		// Data of more chunks than one upload may hold goes up in parts
		// and comes out one file of chunks of the size asked for.
		defer func(n int) { maxUploadChunks = n }(maxUploadChunks)
		maxUploadChunks = 2
		check(t, c.PutChunked(ctx, "/roundtrip/parts", big, 1))
		got, err := c.Get(ctx, "/roundtrip/parts")
		check(t, err)
		if !bytes.Equal(big, got) {
			t.Errorf("parts: read %d bytes back, want the %d put", len(got), len(big))
		}
		e, err = c.Entry(ctx, "/roundtrip", "parts")
		check(t, err)
		if n := len(e.GetChunks()); n != 5 || e.Attributes.FileSize != uint64(len(big)) {
			t.Errorf("parts: %d chunks and %d bytes, want 5 of 1 MiB and %d", n, e.Attributes.FileSize, len(big))
		}
		for _, ch := range e.GetChunks() {
			if ch.GetSize() != 1<<20 {
				t.Errorf("parts: a chunk of %d bytes, want 1 MiB", ch.GetSize())
			}
		}
		if _, err := c.Entry(ctx, "/roundtrip", ".parts.part0"); !errors.Is(err, ErrNotFound) {
			t.Errorf("parts: the first part's entry is still there (%v)", err)
		}

		local := filepath.Join(t.TempDir(), "big")
		check(t, os.WriteFile(local, big, 0o644))
		check(t, c.PutFile(ctx, "/roundtrip/file with space?", local))
		got, err = c.Get(ctx, "/roundtrip/file with space?")
		check(t, err)
		if !bytes.Equal(big, got) {
			t.Errorf("PutFile: read %d bytes back, want %d", len(got), len(big))
		}

		if _, err := c.Get(ctx, "/roundtrip/missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of a missing file: %v, want ErrNotFound", err)
		}
		if _, err := c.Entry(ctx, "/roundtrip", "missing"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Entry of a missing file: %v, want ErrNotFound", err)
		}
	})

	t.Run("MkdirSymlinkDelete", func(t *testing.T) {
		check(t, c.Mkdir(ctx, "/tree/a/b"))
		check(t, c.Symlink(ctx, "/tree/a/link", "b"))
		d, err := c.Entry(ctx, "/tree/a", "b")
		check(t, err)
		if !d.IsDirectory || d.Attributes.FileMode != uint32(os.ModeDir|0o755) {
			t.Errorf("directory entry: is_directory %v, mode %v", d.IsDirectory, os.FileMode(d.Attributes.FileMode))
		}
		l, err := c.Entry(ctx, "/tree/a", "link")
		check(t, err)
		if l.Attributes.FileMode != uint32(os.ModeSymlink|0o777) || l.Attributes.SymlinkTarget != "b" {
			t.Errorf("symlink entry: mode %v, target %q", os.FileMode(l.Attributes.FileMode), l.Attributes.SymlinkTarget)
		}

		check(t, c.Delete(ctx, "/tree"))
		if _, err := c.Entry(ctx, "/", "tree"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Entry after Delete: %v, want ErrNotFound", err)
		}
	})

	t.Run("WeedMount", func(t *testing.T) {
		if _, err := os.Stat("/dev/fuse"); err != nil {
			t.Skip("no /dev/fuse")
		}
		check(t, c.Symlink(ctx, "/roundtrip/link", strconv.Itoa(len(big))))
		m, err := c.StartWeedMount(ctx, filepath.Join(t.TempDir(), "mnt"), "-readOnly")
		check(t, err)
		got, err := os.ReadFile(filepath.Join(m.Dir(), bigPath))
		check(t, err)
		if !bytes.Equal(big, got) {
			t.Errorf("read %d bytes through weed mount, want %d", len(got), len(big))
		}
		target, err := os.Readlink(filepath.Join(m.Dir(), "roundtrip", "link"))
		check(t, err)
		if target != strconv.Itoa(len(big)) {
			t.Errorf("readlink through weed mount: %q", target)
		}

		check(t, m.Unmount())
		if mounted, err := IsFUSEMount(m.Dir()); err != nil || mounted {
			t.Errorf("after Unmount: mounted %v, err %v", mounted, err)
		}
		if m.p.running() {
			t.Error("weed mount still running after Unmount")
		}
	})

	t.Run("StopStartVolume", func(t *testing.T) {
		addr := c.VolumeAddrs()[0]
		check(t, c.StopVolume(0))
		if c.volumes[0].running() {
			t.Fatal("volume server running after StopVolume")
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			nodes, err := c.RegisteredVolumes(ctx)
			check(t, err)
			if _, listed := nodes[addr]; !listed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("master still lists %s after StopVolume", addr)
			}
			time.Sleep(100 * time.Millisecond)
		}

		check(t, c.StartVolume(ctx, 0))
		got, err := c.Get(ctx, bigPath)
		check(t, err)
		if !bytes.Equal(big, got) {
			t.Errorf("after restart: read %d bytes, want %d", len(got), len(big))
		}
	})

	var gatewayPid int
	t.Run("S3Gateway", func(t *testing.T) {
		g, err := c.StartS3(ctx, "key", "secret")
		check(t, err)
		gatewayPid = g.Pid()
		check(t, c.Put(ctx, "/buckets/bkt/x", []byte("x")))
		// Anonymous: refused, which shows both that the gateway serves and
		// that it holds the identity config.
		resp, err := http.Get(g.Endpoint() + "/bkt/x")
		check(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("anonymous GET of /bkt/x: %s, want 403", resp.Status)
		}
		if !slices.Contains(g.Args(), "-port.iceberg=0") || !strings.HasPrefix(g.Endpoint(), "http://127.0.0.1:") {
			t.Errorf("gateway %s: %v", g.Endpoint(), g.Args())
		}
	})

	t.Run("StopLeavesNoProcess", func(t *testing.T) {
		pids := c.pids()
		if len(pids) != 3 {
			t.Fatalf("pids %v, want master, filer and one volume server", pids)
		}
		if gatewayPid != 0 {
			pids = append(pids, gatewayPid)
		}
		check(t, c.Stop())
		check(t, c.Stop())
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("pid %d after Stop: kill 0 says %v, want ESRCH", pid, err)
			}
		}
		if _, err := os.Stat(c.sockDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket directory %s after Stop: %v", c.sockDir, err)
		}
	})
}

// TestReplicatedSecureCluster starts the non-default configuration: two
// volume servers with replication 001, encrypted chunks, and read JWTs
// from security.toml.
func TestReplicatedSecureCluster(t *testing.T) {
	c := StartT(t, Options{
		Volumes:           2,
		Replication:       "001",
		EncryptVolumeData: true,
		SecurityTOML:      "[jwt.signing.read]\nkey = \"weedfuse-test-read-key\"\nexpires_after_seconds = 60\n",
	})
	ctx := t.Context()
	data := randomBytes(t, 100<<10)
	check(t, c.Put(ctx, "/r/file", data))
	got, err := c.Get(ctx, "/r/file")
	check(t, err)
	if !bytes.Equal(data, got) {
		t.Errorf("read %d bytes back, want %d", len(got), len(data))
	}

	e, err := c.Entry(ctx, "/r", "file")
	check(t, err)
	if len(e.Chunks) != 1 {
		t.Fatalf("%d chunks, want 1", len(e.Chunks))
	}
	chunk := e.Chunks[0]
	if len(chunk.CipherKey) == 0 {
		t.Error("chunk has no cipher key: -encryptVolumeData did not apply")
	}

	vid, _, _ := strings.Cut(chunk.FileId, ",")
	resp, err := c.FilerClient().LookupVolume(ctx, &filerpb.LookupVolumeRequest{VolumeIds: []string{vid}})
	check(t, err)
	var urls []string
	for _, l := range resp.LocationsMap[vid].GetLocations() {
		urls = append(urls, l.Url)
	}
	slices.Sort(urls)
	want := slices.Sorted(slices.Values(c.VolumeAddrs()))
	if !slices.Equal(urls, want) {
		t.Fatalf("volume %s is on %v, want both servers %v", vid, urls, want)
	}

	// security.toml was found: a volume server wants a JWT to read.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+urls[0]+"/"+chunk.FileId, nil)
	check(t, err)
	vresp, err := http.DefaultClient.Do(req)
	check(t, err)
	vresp.Body.Close()
	if vresp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET %s without a JWT: %s, want 401", req.URL, vresp.Status)
	}
}

func TestFindWeed(t *testing.T) {
	weed, err := FindWeed()
	if err != nil {
		t.Skipf("no weed: %v", err)
	}
	t.Setenv("WEED_BIN", weed)
	got, err := FindWeed()
	if err != nil || got != weed {
		t.Errorf("with WEED_BIN=%s: %q, %v", weed, got, err)
	}
	out, err := exec.Command(weed, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "version") {
		t.Errorf("%s version: %v: %s", weed, err, out)
	}

	t.Setenv("WEED_BIN", filepath.Join(t.TempDir(), "no-such-weed"))
	if _, err := FindWeed(); err == nil || !strings.Contains(err.Error(), "WEED_BIN") {
		t.Errorf("with a missing WEED_BIN: %v", err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/mnt/a\040b\134c`); got != `/mnt/a b\c` {
		t.Errorf("got %q", got)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	check(t, Run(ctx, "sleep 30", time.Second))
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Run took %v after its context ended", d)
	}
	var exit *exec.ExitError
	if err := Run(t.Context(), "exit 3", time.Second); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Run of exit 3: %v", err)
	}
}

func TestStartFailureQuotesLog(t *testing.T) {
	_, err := Start(t.Context(), Options{MasterArgs: []string{"-no-such-flag"}, StartTimeout: 10 * time.Second})
	if err == nil {
		t.Fatal("Start with a bad master flag succeeded")
	}
	for _, want := range []string{"master exited early", "master.log", "-no-such-flag", "[...]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestCheckReplication(t *testing.T) {
	for _, tc := range []struct {
		r       string
		volumes int
		ok      bool
	}{
		{"", 1, true}, {"000", 1, true}, {"001", 2, true}, {"002", 3, true},
		{"001", 1, false}, {"010", 2, false}, {"100", 2, false}, {"1", 1, false}, {"00x", 3, false},
	} {
		if err := checkReplication(tc.r, tc.volumes); (err == nil) != tc.ok {
			t.Errorf("replication %q with %d volume servers: %v", tc.r, tc.volumes, err)
		}
	}
}
