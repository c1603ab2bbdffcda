package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/integration/faultproxy"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// exactFaultCluster is a cluster whose volume servers are each reached
// through a faultproxy: each server is started with -publicUrl=<its proxy>,
// so the filer's LookupVolume names the proxies as public URLs, and
// weedfuse, mounted with -volumeServerAccess=publicUrl, reads through them.
// The filer itself, and the test's uploads, use the servers' own URLs.
type exactFaultCluster struct {
	c *cluster.Cluster
	// proxies by the public URL that the filer reports for them.
	proxies map[string]*faultproxy.Proxy
}

// exactStartFaultCluster starts a cluster of one volume server behind a
// proxy and, for replicas == 2, a second one behind another proxy, started
// by the test since the harness gives all its volume servers the same
// arguments.
func exactStartFaultCluster(t *testing.T, replicas int) *exactFaultCluster {
	t.Helper()
	pa, err := faultproxy.Start()
	require.NoError(t, err)
	t.Cleanup(func() { pa.Close() })
	c := cluster.StartT(t, cluster.Options{VolumeArgs: []string{"-publicUrl=" + pa.Addr()}})
	pa.SetTarget(c.VolumeAddrs()[0])
	fc := &exactFaultCluster{c: c, proxies: map[string]*faultproxy.Proxy{pa.Addr(): pa}}
	if replicas == 2 {
		pb, err := faultproxy.Start()
		require.NoError(t, err)
		t.Cleanup(func() { pb.Close() })
		pb.SetTarget(exactExtraVolume(t, c, pb.Addr()))
		fc.proxies[pb.Addr()] = pb
	}
	return fc
}

// exactExtraVolume starts one more volume server for c, advertising
// publicURL, stops it when the test ends, and returns its address once the
// master lists it.
func exactExtraVolume(t *testing.T, c *cluster.Cluster, publicURL string) string {
	t.Helper()
	port := exactFreePortPair(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir := t.TempDir()
	conf := filepath.Join(c.Dir(), "config")
	logf, err := os.Create(filepath.Join(dir, "volume.log"))
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(c.Weed(), "-config_dir="+conf, "volume",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-port="+strconv.Itoa(port), "-port.grpc="+strconv.Itoa(port+10000),
		"-dir="+dir, "-master="+c.MasterAddr(), "-max=32", "-preStopSeconds=0",
		"-publicUrl="+publicURL)
	cmd.Dir = conf
	cmd.Env = append(os.Environ(), "HOME="+conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "volume.log")); t.Failed() && len(bytes.TrimSpace(b)) > 0 {
			t.Logf("extra volume server %s log:\n%s", addr, lastLinesOf(string(b), 30))
		}
	})
	ctx := ctxT(t, 30*time.Second)
	for {
		nodes, err := c.RegisteredVolumes(ctx)
		if _, ok := nodes[addr]; ok && err == nil {
			return addr
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "volume.log"))
			t.Fatalf("extra volume server exited:\n%s", lastLinesOf(string(b), 30))
		case <-ctx.Done():
			t.Fatalf("extra volume server %s did not register", addr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// exactFreePortPair returns a port p such that p and p+10000 are free.
func exactFreePortPair(t *testing.T) int {
	t.Helper()
	for range 1000 {
		p := 11000 + rand.IntN(32768-10000-11000)
		a, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	t.Fatal("no free port pair")
	return 0
}

// put stores data at path with the given replication, through the filer's
// HTTP API (cluster.Put has no replication parameter).
func (fc *exactFaultCluster) put(ctx context.Context, t *testing.T, path string, data []byte, replication string) {
	t.Helper()
	q := url.Values{"mode": {"0644"}}
	if replication != "" {
		q.Set("replication", replication)
	}
	u := url.URL{Scheme: "http", Host: fc.c.FilerAddr(), Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(data))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var r struct {
		Size  int64
		Error string
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	require.Empty(t, r.Error)
	require.Equal(t, int64(len(data)), r.Size)
}

// firsts maps each proxy to the file ids of path's chunks for which the
// filer lists it first, and checks that every chunk has want replicas.
func (fc *exactFaultCluster) firsts(ctx context.Context, t *testing.T, path string, want int) map[*faultproxy.Proxy][]string {
	t.Helper()
	dir, name := filepath.Split(path)
	e, err := fc.c.Entry(ctx, filepath.Clean(dir), name)
	require.NoError(t, err)
	out := map[*faultproxy.Proxy][]string{}
	for _, ch := range e.GetChunks() {
		fid := ch.GetFileId()
		vid, _, _ := strings.Cut(fid, ",")
		resp, err := fc.c.FilerClient().LookupVolume(ctx, &filerpb.LookupVolumeRequest{VolumeIds: []string{vid}})
		require.NoError(t, err)
		locs := resp.GetLocationsMap()[vid].GetLocations()
		require.Len(t, locs, want, "%s: chunk %s replicas", path, fid)
		for _, l := range locs {
			_, ok := fc.proxies[l.GetPublicUrl()]
			require.True(t, ok, "%s: replica %s has public URL %q, not a proxy", path, l.GetUrl(), l.GetPublicUrl())
		}
		p := fc.proxies[locs[0].GetPublicUrl()]
		out[p] = append(out[p], fid)
	}
	return out
}

// exactFids selects the GETs of the given file ids.
func exactFids(fids []string, also faultproxy.Match) faultproxy.Match {
	set := map[string]bool{}
	for _, f := range fids {
		set["/"+f] = true
	}
	return func(r *http.Request) bool { return set[r.URL.Path] && also(r) }
}

// exactFile is a file of a fault test: its path on the filer and its bytes.
type exactFile struct {
	path string
	data []byte
}

// exactFaultFiles uploads the files the fault tests read:
//   - small.bin and small.txt (gzipped): one chunk under 256 KiB, which
//     weedfuse's page cache fetches whole, so the e_tag MD5 is checked;
//   - big.bin: 10 MiB in 4 MiB chunks, read through the mount in ranges.
func exactFaultFiles(ctx context.Context, t *testing.T, fc *exactFaultCluster, replication string) (small, text, big exactFile) {
	t.Helper()
	rng := rand.New(rand.NewPCG(71, 72))
	small = exactFile{"/flt/small.bin", make([]byte, 200_000)}
	fillRandom(rng, small.data)
	text = exactFile{"/flt/small.txt", exactText(rng, 250_000)}
	big = exactFile{"/flt/big.bin", make([]byte, 10<<20+99)}
	fillRandom(rng, big.data)
	for _, f := range []exactFile{small, text, big} {
		fc.put(ctx, t, f.path, f.data, replication)
	}
	return small, text, big
}

// read reads a file whole through the mount, timing it.
func exactTimedRead(dir, path string) ([]byte, time.Duration, error) {
	start := time.Now()
	b, err := os.ReadFile(filepath.Join(dir, path))
	return b, time.Since(start), err
}

// TestExactFaultOneReplica reads files with two replicas, the replica that
// the filer lists first behind a proxy that spoils its answers. weedfuse
// must notice each spoiled answer it can notice and read the other
// replica: truncated bodies (by length), stalls (by its stall timeout),
// 503s, and flipped bytes in whole-chunk reads (by the chunk's e_tag MD5).
// Every read must be byte-exact. Flipped bytes in partial reads of a large
// chunk are TestExactCorruptRangedRead's.
func TestExactFaultOneReplica(t *testing.T) {
	fc := exactStartFaultCluster(t, 2)
	ctx := ctxT(t, 3*time.Minute)
	small, text, big := exactFaultFiles(ctx, t, fc, "001")
	files := []exactFile{small, text, big}
	firsts := map[string]map[*faultproxy.Proxy][]string{}
	for _, f := range files {
		firsts[f.path] = fc.firsts(ctx, t, f.path, 2)
	}

	cases := []struct {
		name  string
		fault faultproxy.Fault
		files []exactFile
		n     int
	}{
		{"truncate", faultproxy.Truncate, files, 0},
		{"unavailable", faultproxy.Unavailable, files, 0},
		{"flip whole-chunk reads", faultproxy.Flip, []exactFile{small, text}, 0},
		// Each stall costs weedfuse's 5 s stall timeout; a few show it.
		{"stall", faultproxy.Stall, files, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := startMount(t, fc.c, "-volumeServerAccess=publicUrl", "-readerCacheSizeMB=16", "-cacheCapacityMB=0")
			for _, p := range fc.proxies {
				p.ResetStats()
			}
			for _, f := range tc.files {
				for p, fids := range firsts[f.path] {
					p.SetFault(tc.fault, exactFids(fids, faultproxy.AnyGet), tc.n)
				}
				got, d, err := exactTimedRead(m.Dir, f.path)
				require.NoError(t, err, "%s\n%s", f.path, m.Log())
				exactEqual(t, f.path, got, f.data)
				t.Logf("%s: %d bytes exact in %v", f.path, len(got), d.Round(time.Millisecond))
				require.Less(t, d, 30*time.Second, "hang bound")
			}
			var faulted int64
			for addr, p := range fc.proxies {
				s := p.Stats()
				t.Logf("proxy %s: %v", addr, s)
				faulted += s.Faulted
				p.SetFault(faultproxy.Pass, nil, 0)
			}
			require.Positive(t, faulted, "no answer was spoiled: the test proves nothing")
		})
	}
}

// TestExactFaultOnlyReplica reads files whose only replica is behind a
// proxy that spoils its answers. weedfuse must answer EIO, never wrong
// bytes, for every spoiled answer it can notice: flipped bytes in a
// whole-chunk read (e_tag MD5), truncated bodies (length), stalls (stall
// timeout). A single spoiled answer must be retried and the read succeed.
func TestExactFaultOnlyReplica(t *testing.T) {
	fc := exactStartFaultCluster(t, 1)
	ctx := ctxT(t, 3*time.Minute)
	small, text, big := exactFaultFiles(ctx, t, fc, "")
	var p *faultproxy.Proxy
	for _, q := range fc.proxies {
		p = q
	}
	fc.firsts(ctx, t, big.path, 1)

	const budget = time.Second
	cases := []struct {
		name  string
		fault faultproxy.Fault
		files []exactFile
		n     int
		ok    bool // a retry must succeed
	}{
		{"flip whole-chunk reads", faultproxy.Flip, []exactFile{small, text}, 0, false},
		{"truncate", faultproxy.Truncate, []exactFile{small, text, big}, 0, false},
		{"unavailable", faultproxy.Unavailable, []exactFile{small, big}, 0, false},
		{"stall", faultproxy.Stall, []exactFile{small}, 0, false},
		{"one flip of a whole-chunk read", faultproxy.Flip, []exactFile{small, text}, 1, true},
		{"one truncation", faultproxy.Truncate, []exactFile{big}, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := startMount(t, fc.c, "-volumeServerAccess=publicUrl", "-readerCacheSizeMB=16", "-cacheCapacityMB=0", "-readRetryTime="+budget.String())
			for _, f := range tc.files {
				p.ResetStats()
				p.SetFault(tc.fault, faultproxy.AnyGet, tc.n)
				got, d, err := exactTimedRead(m.Dir, f.path)
				s := p.Stats()
				p.SetFault(faultproxy.Pass, nil, 0)
				t.Logf("%s: err %v after %v; proxy: %v", f.path, err, d.Round(time.Millisecond), s)
				require.Positive(t, s.Faulted, "no answer was spoiled: the test proves nothing")
				// Hang bound: stall timeout, retry budget and slack.
				require.Less(t, d, 2*(5*time.Second+budget)+10*time.Second)
				if tc.ok {
					require.NoError(t, err, "%s\n%s", f.path, m.Log())
					exactEqual(t, f.path, got, f.data)
					continue
				}
				require.ErrorIs(t, err, syscall.EIO, "%s: a spoiled read must fail, not return %d bytes (%d differ)",
					f.path, len(got), exactDiffers(got, f.data))
			}
		})
	}
}

// TestExactCorruptRangedRead reads part of a large plain chunk, and a
// manifest, through a replica that flips bytes. No checksum that SeaweedFS
// stores covers a byte range (a chunk's e_tag is the MD5 of the whole chunk;
// the volume server's ETag header is the CRC32C of the whole needle), and
// the filer writes manifest chunks without an e_tag, which is why weedfuse
// reads whole needles and parses a manifest before trusting a replica. The
// test asks for what every other fault gets: byte-exact reads when another
// replica is sound, EIO when none is, never wrong bytes.
func TestExactCorruptRangedRead(t *testing.T) {
	t.Run("two replicas", func(t *testing.T) {
		fc := exactStartFaultCluster(t, 2)
		ctx := ctxT(t, 2*time.Minute)
		_, _, big := exactFaultFiles(ctx, t, fc, "001")
		firsts := fc.firsts(ctx, t, big.path, 2)
		m := startMount(t, fc.c, "-volumeServerAccess=publicUrl", "-readerCacheSizeMB=16", "-cacheCapacityMB=0")
		for p, fids := range firsts {
			p.SetFault(faultproxy.Flip, exactFids(fids, faultproxy.AnyGet), 0)
		}
		got, _, err := exactTimedRead(m.Dir, big.path)
		var faulted int64
		for addr, p := range fc.proxies {
			t.Logf("proxy %s: %v", addr, p.Stats())
			faulted += p.Stats().Faulted
		}
		require.Positive(t, faulted, "no answer was spoiled: the test proves nothing")
		require.NoError(t, err)
		if n := exactDiffers(got, big.data); n > 0 {
			t.Errorf("%s: %d bytes differ from the file: weedfuse returned the flipped bytes of a ranged read of the first replica instead of the sound second replica's", big.path, n)
		}
	})
	t.Run("only replica", func(t *testing.T) {
		fc := exactStartFaultCluster(t, 1)
		ctx := ctxT(t, 2*time.Minute)
		_, _, big := exactFaultFiles(ctx, t, fc, "")
		m := startMount(t, fc.c, "-volumeServerAccess=publicUrl", "-readerCacheSizeMB=16", "-cacheCapacityMB=0", "-readRetryTime=2s")
		for _, p := range fc.proxies {
			p.SetFault(faultproxy.Flip, faultproxy.AnyGet, 0)
		}
		got, _, err := exactTimedRead(m.Dir, big.path)
		var faulted int64
		for addr, p := range fc.proxies {
			t.Logf("proxy %s: %v", addr, p.Stats())
			faulted += p.Stats().Faulted
		}
		require.Positive(t, faulted, "no answer was spoiled: the test proves nothing")
		if err == nil {
			if n := exactDiffers(got, big.data); n > 0 {
				t.Errorf("%s: read succeeded with %d wrong bytes: a flipped byte in a ranged read is neither detected nor reported", big.path, n)
			}
		} else {
			require.ErrorIs(t, err, syscall.EIO)
		}
	})
	t.Run("manifest blob", func(t *testing.T) {
		fc := exactStartFaultCluster(t, 2)
		ctx := ctxT(t, 2*time.Minute)
		rng := rand.New(rand.NewPCG(81, 82))
		var chunks []*filerpb.FileChunk
		var want []byte
		base := time.Now().UnixNano()
		for i := range 64 {
			data := make([]byte, 1000+rng.IntN(3000))
			fillRandom(rng, data)
			path := fmt.Sprintf("/mf/src/%02d.bin", i)
			fc.put(ctx, t, path, data, "001")
			e, err := fc.c.Entry(ctx, "/mf/src", fmt.Sprintf("%02d.bin", i))
			require.NoError(t, err)
			ch := e.GetChunks()[0]
			chunks = append(chunks, &filerpb.FileChunk{
				FileId: ch.GetFileId(), Offset: int64(len(want)), Size: ch.GetSize(),
				ModifiedTsNs: base + int64(i), ETag: ch.GetETag(),
			})
			want = append(want, data...)
		}
		blob, err := proto.Marshal(&filerpb.FileChunkManifest{Chunks: chunks})
		require.NoError(t, err)
		fc.put(ctx, t, "/mf/blob/m.bin", blob, "001")
		be, err := fc.c.Entry(ctx, "/mf/blob", "m.bin")
		require.NoError(t, err)
		bch := be.GetChunks()[0]
		// As the filer writes its own manifest chunks: no e_tag.
		exactCreate(ctx, t, fc.c, "/mf", "file.bin", int64(len(want)), []*filerpb.FileChunk{{
			FileId: bch.GetFileId(), Offset: 0, Size: uint64(len(want)), ModifiedTsNs: base, IsChunkManifest: true,
		}})
		served, err := fc.c.Get(ctx, "/mf/file.bin")
		require.NoError(t, err)
		require.Equal(t, want, served)
		firsts := fc.firsts(ctx, t, "/mf/blob/m.bin", 2)
		for p, fids := range firsts {
			p.SetFault(faultproxy.Flip, exactFids(fids, faultproxy.AnyGet), 0)
		}
		m := startMount(t, fc.c, "-volumeServerAccess=publicUrl", "-readerCacheSizeMB=16", "-cacheCapacityMB=0")
		got, _, err := exactTimedRead(m.Dir, "/mf/file.bin")
		var faulted int64
		for addr, p := range fc.proxies {
			t.Logf("proxy %s: %v", addr, p.Stats())
			faulted += p.Stats().Faulted
		}
		require.Positive(t, faulted, "no answer was spoiled: the test proves nothing")
		if err != nil {
			t.Errorf("manifest blob flipped on one of two replicas: read failed (%v) although the other replica is sound\n%s", err, m.Log())
			return
		}
		if n := exactDiffers(got, want); n > 0 {
			t.Errorf("manifest blob flipped on one of two replicas: %d bytes differ", n)
		}
	})
}
