//go:build linux && cgo && rdma

package rdma

// TestWeedCluster runs against a real SeaweedFS volume server and a running
// weedrdma binary (integration/rxe/e2e.sh starts both inside the VM and sets
// WEED_MASTER, WEED_VOLUME and WEEDRDMA). It uploads needles, reads them over
// RDMA (whole and ranged, plain and gzip-stored), each checked against the
// real volume server's needle CRC32C, compares them with what was uploaded,
// and measures both paths.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/volume"
)

func weedUpload(t *testing.T, master, name string, data []byte) (fid, url string) {
	resp, err := http.Get("http://" + master + "/dir/assign")
	if err != nil {
		t.Fatal(err)
	}
	var a struct{ Fid, URL, Error string }
	err = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if err != nil || a.Fid == "" {
		t.Fatalf("assign: %+v %v", a, err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(data)
	mw.Close()
	resp, err = http.Post("http://"+a.URL+"/"+a.Fid, mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("upload %s: %d %s", name, resp.StatusCode, msg)
	}
	return a.Fid, a.URL
}

// weedClient is a Client of the weedrdma at side, beside the volume server
// vol, closed when the test ends.
func weedClient(t *testing.T, vol, side string, o ClientOptions) *Client {
	sc, err := ParseSidecars(vol + "=" + side)
	if err != nil {
		t.Fatal(err)
	}
	o.Sidecars, o.Locator, o.GIDIndex, o.Timeout, o.Logf = sc, staticLocator{vol}, -1, 60*time.Second, t.Logf
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Unavailable(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWeedCluster(t *testing.T) {
	master, vol, side := os.Getenv("WEED_MASTER"), os.Getenv("WEED_VOLUME"), os.Getenv("WEEDRDMA")
	if master == "" || vol == "" || side == "" {
		t.Skip("WEED_MASTER, WEED_VOLUME and WEEDRDMA are not set (integration/rxe/e2e.sh sets them)")
	}
	needDevice(t)
	text := []byte(strings.Repeat("weedfuse reads SeaweedFS over RDMA. ", 60000)) // ~2 MiB, stored gzipped
	files := map[string][]byte{"a.bin": randomBytes(1 << 20), "b.bin": randomBytes(4 << 20), "c.txt": text}
	fids := map[string]string{}
	for name, data := range files {
		fid, url := weedUpload(t, master, name, data)
		if url != vol {
			t.Fatalf("needle went to %s, not %s", url, vol)
		}
		fids[name] = fid
	}
	// What the volume server stores: the .txt needle must be gzip-stored,
	// or the whole-needle path is not exercised.
	req, _ := http.NewRequest(http.MethodGet, "http://"+vol+"/"+fids["c.txt"], nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	compressed := resp.Header.Get("Content-Encoding") == "gzip"
	t.Logf("E2E needles %v; c.txt stored gzipped: %v", fids, compressed)

	c := weedClient(t, vol, side, ClientOptions{MaxConcurrent: 8})
	ctx := context.Background()
	for name, data := range files {
		ch := needle.Chunk{FileID: fids[name], Size: int64(len(data)), Compressed: strings.HasSuffix(name, ".txt") && compressed}
		moved := c.Stats().FetchedBytes
		for _, rg := range [][2]int{{0, len(data)}, {12345, 100000}, {len(data) - 7, 7}} {
			dst := make([]byte, rg[1])
			n, err := readChunk(c, ctx, ch, int64(rg[0]), dst)
			if err != nil || !bytes.Equal(dst[:n], data[rg[0]:rg[0]+rg[1]]) {
				t.Fatalf("%s range %v: n=%d err=%v", name, rg, n, err)
			}
		}
		t.Logf("E2E %s (%s, %d bytes, compressed=%v): RDMA bytes match; %d stored bytes moved for 3 reads", name, ch.FileID,
			len(data), ch.Compressed, c.Stats().FetchedBytes-moved)
	}
	// A needle the volume server gzipped on upload, read as a chunk that
	// does not say so (as a filer may list it), by a client that has not
	// cached it: the reply's gzip flag says how to decode it.
	if compressed {
		fresh := weedClient(t, vol, side, ClientOptions{MaxConcurrent: 1})
		ch := needle.Chunk{FileID: fids["c.txt"], Size: int64(len(text))}
		dst := make([]byte, 5000)
		if n, err := readChunk(fresh, ctx, ch, 777, dst); err != nil || !bytes.Equal(dst[:n], text[777:5777]) || fresh.Stats().Fetches != 1 {
			t.Fatalf("c.txt as an uncompressed chunk: n=%d err=%v stats %+v", n, err, fresh.Stats())
		}
	}
	// Throughput against the real volume server: RDMA through weedrdma vs
	// plain HTTP GETs, same needles, same concurrency. The RDMA client
	// keeps no needle cache (c's holds these needles from the ranges
	// above), so that every read moves its needle.
	const conc, rounds = 8, 3
	bench := weedClient(t, vol, side, ClientOptions{MaxConcurrent: conc, WholeCacheBytes: -1})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}}
	for _, name := range []string{"a.bin", "b.bin"} {
		size := len(files[name])
		ch := needle.Chunk{FileID: fids[name], Size: int64(size)}
		iters := (32 << 20) / size
		run := func(read func([]byte) error) float64 {
			return readMBps(t, iters, size, conc, read)
		}
		var rd, ht []float64
		for i := 0; i < rounds; i++ {
			rd = append(rd, run(func(dst []byte) error {
				_, err := readChunk(bench, ctx, ch, 0, dst)
				return err
			}))
			ht = append(ht, run(func(dst []byte) error {
				resp, err := hc.Get("http://" + vol + "/" + ch.FileID)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				_, err = io.ReadFull(resp.Body, dst)
				return err
			}))
		}
		t.Logf("WEED-BENCH size=%d conc=%d rdma_MBps=%.1f http_MBps=%.1f (medians of %d)", size, conc, median(rd), median(ht), rounds)
	}
	// Unchecked == 0: the real volume server's ETag is a needle CRC32C the
	// client understood and checked, for every needle.
	for name, c := range map[string]*Client{"client": c, "bench client": bench} {
		st := c.Stats()
		t.Logf("E2E %s stats %+v", name, st)
		if st.CRCFailures != 0 || st.NeedleCRCFailures != 0 || st.Unchecked != 0 || st.Reads == 0 || st.Fetches == 0 {
			t.Fatal(fmt.Sprintf("%s stats %+v", name, st))
		}
	}
}

// TestWeedClusterCRCFault reads from two more weedrdma that e2e.sh starts:
// WEEDRDMA_FAULTY with -fault.corruptEvery=2 (every other reply has a byte
// flipped after its transfer CRC was computed) and WEEDRDMA_STORED_FAULTY
// with -fault.corruptStoredEvery=2 (flipped before it: only the real
// volume server's needle CRC32C can tell). The client must catch each one,
// the first by the transfer CRC, the second by the needle CRC, and the
// reader, served by the HTTP path instead, must get the right bytes.
func TestWeedClusterCRCFault(t *testing.T) {
	master, vol := os.Getenv("WEED_MASTER"), os.Getenv("WEED_VOLUME")
	after, before := os.Getenv("WEEDRDMA_FAULTY"), os.Getenv("WEEDRDMA_STORED_FAULTY")
	if master == "" || vol == "" || after == "" || before == "" {
		t.Skip("WEED_MASTER, WEED_VOLUME, WEEDRDMA_FAULTY and WEEDRDMA_STORED_FAULTY are not set (integration/rxe/e2e.sh sets them)")
	}
	needDevice(t)
	data := randomBytes(1 << 20)
	fid, url := weedUpload(t, master, "fault.bin", data)
	if url != vol {
		t.Fatalf("needle went to %s, not %s", url, vol)
	}
	h := volume.New(staticLocator{vol}, volume.Options{})
	defer h.Close()
	for _, tc := range []struct{ side, flag, counter string }{
		{after, "-fault.corruptEvery=2", "crc"},
		{before, "-fault.corruptStoredEvery=2", "needle_crc"},
	} {
		// No needle cache: every read moves the needle.
		c := weedClient(t, vol, tc.side, ClientOptions{MaxConcurrent: 2, WholeCacheBytes: -1})
		ch := needle.Chunk{FileID: fid, Size: int64(len(data))}
		var httpReads atomic.Int64
		for i := 0; i < 8; i++ {
			off := int64(i * 4099)
			if err := checkChain(c, h, ch, off, data[off:off+512<<10], &httpReads); err != nil {
				t.Fatal(err)
			}
		}
		st := c.Stats()
		caught := map[string]uint64{"crc": st.CRCFailures, "needle_crc": st.NeedleCRCFailures}
		t.Logf("E2E fault through weedrdma %s: 8 reads, %d CRC failures, %d needle CRC failures (%d %s fallbacks), %d over RDMA, %d over HTTP, all bytes right",
			tc.flag, st.CRCFailures, st.NeedleCRCFailures, st.Fallbacks[tc.counter], tc.counter, st.Reads, httpReads.Load())
		if caught[tc.counter] < 3 || st.Fallbacks[tc.counter] != caught[tc.counter] || st.CRCFailures+st.NeedleCRCFailures != caught[tc.counter] ||
			st.Reads < 3 || uint64(httpReads.Load()) != caught[tc.counter] {
			t.Fatalf("stats %+v", st)
		}
	}
}
