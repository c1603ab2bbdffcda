//go:build linux && cgo && rdma

package rdma

// TestWeedCluster runs against a real SeaweedFS volume server and a running
// weedrdma binary (integration/rxe/e2e.sh starts both inside the VM and sets
// WEED_MASTER, WEED_VOLUME and WEEDRDMA). It uploads needles, reads them over
// RDMA (plain, ranged, and a gzip-stored needle through the whole-needle
// path and volume.Decode), compares them with the volume server's own HTTP
// answer, and measures both paths.

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
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

	sc, err := ParseSidecars(vol + "=" + side)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientOptions{Sidecars: sc, Locator: staticLocator{vol}, MaxConcurrent: 8, GIDIndex: -1,
		Timeout: 60 * time.Second, Logf: t.Logf})
	if err != nil || c.Unavailable() != nil {
		t.Fatal(err, c.Unavailable())
	}
	defer c.Close()
	ctx := context.Background()
	for name, data := range files {
		ch := volume.Chunk{FileID: fids[name], Size: int64(len(data)), Compressed: strings.HasSuffix(name, ".txt") && compressed}
		for _, rg := range [][2]int{{0, len(data)}, {12345, 100000}, {len(data) - 7, 7}} {
			dst := make([]byte, rg[1])
			n, err := c.ReadChunk(ctx, ch, int64(rg[0]), dst)
			if err != nil || !bytes.Equal(dst[:n], data[rg[0]:rg[0]+rg[1]]) {
				t.Fatalf("%s range %v: n=%d err=%v", name, rg, n, err)
			}
		}
		t.Logf("E2E %s (%s, %d bytes, whole=%v): RDMA bytes match", name, ch.FileID, len(data), ch.Whole())
	}
	// Throughput against the real volume server: RDMA through weedrdma vs
	// plain HTTP GETs, same needles, same concurrency.
	const conc, rounds = 8, 3
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}}
	for _, name := range []string{"a.bin", "b.bin"} {
		size := len(files[name])
		ch := volume.Chunk{FileID: fids[name], Size: int64(size)}
		iters := (32 << 20) / size
		run := func(read func([]byte) error) float64 {
			var wg sync.WaitGroup
			jobs := make(chan struct{}, iters)
			for i := 0; i < iters; i++ {
				jobs <- struct{}{}
			}
			close(jobs)
			start := time.Now()
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					dst := make([]byte, size)
					for range jobs {
						if err := read(dst); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			return float64(iters*size) / time.Since(start).Seconds() / 1e6
		}
		var rd, ht []float64
		for i := 0; i < rounds; i++ {
			rd = append(rd, run(func(dst []byte) error {
				_, err := c.ReadChunk(ctx, ch, 0, dst)
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
	st := c.Stats()
	t.Logf("E2E client stats %+v", st)
	if st.CRCFailures != 0 || st.Reads == 0 {
		t.Fatal(fmt.Sprintf("stats %+v", st))
	}
}

// TestWeedClusterCRCFault reads from a second weedrdma that e2e.sh starts
// with -fault.corruptEvery=2 (WEEDRDMA_FAULTY): every other reply has a
// byte flipped after its CRC was computed. The client must catch each one
// and the reader, served over HTTP instead, must get the right bytes.
func TestWeedClusterCRCFault(t *testing.T) {
	master, vol, side := os.Getenv("WEED_MASTER"), os.Getenv("WEED_VOLUME"), os.Getenv("WEEDRDMA_FAULTY")
	if master == "" || vol == "" || side == "" {
		t.Skip("WEED_MASTER, WEED_VOLUME and WEEDRDMA_FAULTY are not set (integration/rxe/e2e.sh sets them)")
	}
	needDevice(t)
	data := randomBytes(1 << 20)
	fid, url := weedUpload(t, master, "fault.bin", data)
	if url != vol {
		t.Fatalf("needle went to %s, not %s", url, vol)
	}
	sc, err := ParseSidecars(vol + "=" + side)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientOptions{Sidecars: sc, Locator: staticLocator{vol}, MaxConcurrent: 2, GIDIndex: -1,
		Timeout: 60 * time.Second, Logf: t.Logf})
	if err != nil || c.Unavailable() != nil {
		t.Fatal(err, c.Unavailable())
	}
	defer c.Close()
	ch := volume.Chunk{FileID: fid, Size: int64(len(data))}
	var httpReads atomic.Int64
	for i := 0; i < 8; i++ {
		off := int64(i * 4099)
		if err := checkChain(c, "http://"+vol, ch, off, data[off:off+512<<10], &httpReads); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Stats()
	t.Logf("E2E CRC fault through weedrdma -fault.corruptEvery=2: %d reads, %d CRC failures (%d crc fallbacks), %d over RDMA, %d over HTTP, all bytes right",
		8, st.CRCFailures, st.Fallbacks["crc"], st.Reads, httpReads.Load())
	if st.CRCFailures < 3 || st.Fallbacks["crc"] != st.CRCFailures || st.Reads < 3 {
		t.Fatalf("stats %+v", st)
	}
}
