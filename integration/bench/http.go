package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// httpCase is one raw HTTP measurement: conns parallel connections, from a
// cold or a warm volume server.
type httpCase struct {
	conns int
	warm  bool
}

func (h httpCase) String() string {
	return fmt.Sprintf("%d connections, %s", h.conns, map[bool]string{false: "cold", true: "warm"}[h.warm])
}

// httpCases are measured in this order in every run; each warm case
// directly follows its cold one.
var httpCases = []httpCase{{4, false}, {4, true}, {8, false}, {8, true}}

// chunkURL is one chunk of the 1 GiB file on its volume server.
type chunkURL struct {
	url  string
	size int64
}

// seqChunks lists the chunks of the 1 GiB file, as URLs on the volume
// servers that hold them.
func seqChunks(ctx context.Context, c *cluster.Cluster) ([]chunkURL, error) {
	return fileChunks(ctx, c, seqDir, seqName, seqSize)
}

// fileChunks lists the chunks of the file dir/name, of size bytes.
func fileChunks(ctx context.Context, c *cluster.Cluster, dir, name string, size int64) ([]chunkURL, error) {
	seqPath := dir + "/" + name
	e, err := c.Entry(ctx, onFiler(dir), name)
	if err != nil {
		return nil, err
	}
	var fids []string
	vids := map[string]bool{}
	var total int64
	for _, ch := range e.GetChunks() {
		// Such a chunk's bytes on the volume server are not the file's, so
		// fetching them would not measure the same work as a mount's read.
		if ch.GetIsChunkManifest() || ch.GetIsCompressed() || len(ch.GetCipherKey()) > 0 {
			return nil, fmt.Errorf("%s: chunk %s is a manifest, compressed or encrypted", seqPath, ch.GetFileId())
		}
		fid := ch.GetFileId()
		if fid == "" {
			fid = formatFid(ch.GetFid())
		}
		vid, _, ok := strings.Cut(fid, ",")
		if !ok {
			return nil, fmt.Errorf("%s: malformed file id %q", seqPath, fid)
		}
		fids = append(fids, fid)
		vids[vid] = true
		total += int64(ch.GetSize())
	}
	if total != size {
		return nil, fmt.Errorf("%s: chunks of %d bytes in all, want %d", seqPath, total, size)
	}
	var req filerpb.LookupVolumeRequest
	for vid := range vids {
		req.VolumeIds = append(req.VolumeIds, vid)
	}
	resp, err := c.FilerClient().LookupVolume(ctx, &req)
	if err != nil {
		return nil, fmt.Errorf("look up volumes %v: %w", req.VolumeIds, err)
	}
	chunks := make([]chunkURL, len(fids))
	for i, fid := range fids {
		vid, _, _ := strings.Cut(fid, ",")
		locs := resp.GetLocationsMap()[vid].GetLocations()
		if len(locs) == 0 {
			return nil, fmt.Errorf("look up volume %s: no location", vid)
		}
		chunks[i] = chunkURL{url: "http://" + locs[0].GetUrl() + "/" + fid, size: int64(e.GetChunks()[i].GetSize())}
	}
	return chunks, nil
}

// formatFid writes a structured file id as SeaweedFS's "vid,keycookie":
// the key's 8 and the cookie's 4 big-endian bytes in hex, less the key's
// leading zero bytes.
func formatFid(f *filerpb.FileId) string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], f.GetFileKey())
	binary.BigEndian.PutUint32(b[8:], f.GetCookie())
	i := 0
	for i < 8 && b[i] == 0 {
		i++
	}
	return fmt.Sprintf("%d,%s", f.GetVolumeId(), hex.EncodeToString(b[i:]))
}

// measureHTTP fetches every chunk straight from the volume servers in each
// of httpCases: the ceiling that a mount's sequential read approaches.
func measureHTTP(ctx context.Context, chunks []chunkURL, volPid int, res *results) error {
	for _, hc := range httpCases {
		if !hc.warm {
			// The volume server reads its disk, as for a cold mount.
			if err := dropCaches(); err != nil {
				return err
			}
		}
		cpu := newCPUMeter(os.Getpid(), volPid)
		mbps, err := fetchAll(ctx, chunks, hc.conns)
		if err != nil {
			return fmt.Errorf("raw HTTP, %v: %w", hc, err)
		}
		cpu.stop()
		res.http[hc] = append(res.http[hc], mbps)
		res.httpCPU[hc] = append(res.httpCPU[hc], *cpu.use)
		log.Printf("  %-16s %-22s %10.4g MB/s", "http", hc, mbps)
	}
	return nil
}

// fetchAll GETs every chunk on conns connections at once and returns the
// throughput in MB/s.
func fetchAll(ctx context.Context, chunks []chunkURL, conns int) (float64, error) {
	tr := &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var total int64
	sizes := make([]int64, len(chunks))
	began := time.Now()
	err := forEach(ctx, len(chunks), conns, func(ctx context.Context, i int) error {
		n, err := fetch(ctx, client, chunks[i].url)
		if err == nil && n != chunks[i].size {
			err = fmt.Errorf("GET %s: %d bytes, want %d", chunks[i].url, n, chunks[i].size)
		}
		sizes[i] = n
		return err
	})
	took := time.Since(began)
	if err != nil {
		return 0, err
	}
	for _, n := range sizes {
		total += n
	}
	return float64(total) / took.Seconds() / 1e6, nil
}

// fetch GETs url and discards the body; it returns the body's length.
func fetch(ctx context.Context, client *http.Client, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", url, err)
	}
	return n, nil
}
