package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// exactNeedle is a needle uploaded through the filer, to be referenced by
// hand-made chunk lists: its filer chunk and its bytes.
type exactNeedle struct {
	chunk *filerpb.FileChunk
	data  []byte
}

// exactUpload stores data at path through the filer and returns its single
// chunk.
func exactUpload(ctx context.Context, t *testing.T, c *cluster.Cluster, path string, data []byte) exactNeedle {
	t.Helper()
	require.NoError(t, c.Put(ctx, path, data))
	dir, name := filepath.Split(path)
	e, err := c.Entry(ctx, filepath.Clean(dir), name)
	require.NoError(t, err)
	require.Len(t, e.GetChunks(), 1, "%s: want one chunk", path)
	return exactNeedle{chunk: e.GetChunks()[0], data: data}
}

// exactPlace returns a chunk that shows needle n at offset off of a file,
// written at tsNs; withFid writes the file id as the FileId message, as
// SeaweedFS writes chunks into manifests, instead of the string.
func exactPlace(n exactNeedle, off, tsNs int64, withFid bool) *filerpb.FileChunk {
	ch := &filerpb.FileChunk{
		FileId:       n.chunk.GetFileId(),
		Offset:       off,
		Size:         uint64(len(n.data)),
		ModifiedTsNs: tsNs,
		ETag:         n.chunk.GetETag(),
		IsCompressed: n.chunk.GetIsCompressed(),
	}
	if withFid {
		ch.Fid = exactParseFid(ch.FileId)
		ch.FileId = ""
	}
	return ch
}

// exactParseFid parses "vid,keycookie" into the FileId message.
func exactParseFid(fid string) *filerpb.FileId {
	var vid uint32
	var kc string
	if _, err := fmt.Sscanf(fid, "%d,%s", &vid, &kc); err != nil || len(kc) <= 8 {
		panic("bad file id " + fid)
	}
	var key uint64
	var cookie uint32
	fmt.Sscanf(kc[:len(kc)-8], "%x", &key)
	fmt.Sscanf(kc[len(kc)-8:], "%x", &cookie)
	return &filerpb.FileId{VolumeId: vid, FileKey: key, Cookie: cookie}
}

// exactModel lays out chunks, oldest first, over zeros: the bytes a file of
// size with these (resolved, distinct-timestamp) chunks holds.
func exactModel(size int64, chunks []*filerpb.FileChunk, data func(*filerpb.FileChunk) []byte) []byte {
	out := make([]byte, size)
	sorted := slices.Clone(chunks)
	slices.SortStableFunc(sorted, func(a, b *filerpb.FileChunk) int {
		return int(a.GetModifiedTsNs() - b.GetModifiedTsNs())
	})
	for _, ch := range sorted {
		d := data(ch)[:ch.GetSize()]
		if ch.GetOffset() < size {
			copy(out[ch.GetOffset():], d)
		}
	}
	return out
}

// exactCreate creates a file entry with the given chunks and size.
func exactCreate(ctx context.Context, t *testing.T, c *cluster.Cluster, dir, name string, size int64, chunks []*filerpb.FileChunk) {
	t.Helper()
	now := time.Now().Unix()
	resp, err := c.FilerClient().CreateEntry(ctx, &filerpb.CreateEntryRequest{
		Directory: dir,
		Entry: &filerpb.Entry{
			Name:   name,
			Chunks: chunks,
			Attributes: &filerpb.FuseAttributes{
				FileSize: uint64(size), FileMode: 0o644, Mtime: now, Crtime: now,
			},
		},
	})
	require.NoError(t, err)
	require.Empty(t, resp.GetError())
}

// TestExactManifest reads files whose chunk lists hold manifest chunks:
//
//   - "filer-made.bin": a CreateEntry of 10,137 data chunks, which the filer
//     itself folds into a manifest (its cleanupChunks calls MaybeManifestize,
//     whose batch, filer.ManifestBatch, is a constant 10,000 with no flag), so
//     the manifest blob is SeaweedFS's own, with FileId messages, not strings;
//   - "nested.bin": a hand-made manifest of a manifest, the outer blob
//     stored gzipped, with a newer plain chunk overlapping the manifest's span and a
//     hole before a last plain chunk.
//
// Each must read through weedfuse as the model of its chunks says, and as the
// filer's HTTP GET serves it.
func TestExactManifest(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 3*time.Minute)
	rng := rand.New(rand.NewPCG(51, 52))
	sizes := []int{1, 7, 100, 200, 333, 500, 512, 640, 999, 1000, 1024, 1500}
	var needles []exactNeedle
	for i, n := range sizes {
		data := make([]byte, n)
		fillRandom(rng, data)
		needles = append(needles, exactUpload(ctx, t, c, fmt.Sprintf("/msrc/s%02d.bin", i), data))
	}
	byFid := map[string][]byte{}
	for _, n := range needles {
		byFid[n.chunk.GetFileId()] = n.data
	}
	dataOf := func(ch *filerpb.FileChunk) []byte {
		fid := ch.GetFileId()
		if fid == "" {
			fid = exactFormatFid(ch.GetFid())
		}
		d, ok := byFid[fid]
		if !ok {
			panic("unknown needle " + fid)
		}
		return d
	}
	base := time.Now().UnixNano()
	want := map[string][]byte{}

	// A list long enough for the filer to make a manifest of its own.
	const count = 10_137
	var list []*filerpb.FileChunk
	var off int64
	for i := range count {
		n := needles[rng.IntN(len(needles))]
		list = append(list, exactPlace(n, off, base+int64(i), false))
		off += int64(len(n.data))
	}
	want["filer-made.bin"] = exactModel(off, list, dataOf)
	began := time.Now()
	exactCreate(ctx, t, c, "/man", "filer-made.bin", off, list)
	t.Logf("CreateEntry of %d chunks (%d bytes) took %v", count, off, time.Since(began).Round(time.Millisecond))
	e, err := c.Entry(ctx, "/man", "filer-made.bin")
	require.NoError(t, err)
	var manifests []*filerpb.FileChunk
	for _, ch := range e.GetChunks() {
		if ch.GetIsChunkManifest() {
			manifests = append(manifests, ch)
		}
	}
	require.NotEmpty(t, manifests, "the filer made no manifest of %d chunks", count)
	for _, m := range manifests {
		t.Logf("filer-made.bin: the filer made manifest %s [%d,+%d) compressed %v e_tag %q; %d chunks in the entry",
			m.GetFileId(), m.GetOffset(), m.GetSize(), m.GetIsCompressed(), m.GetETag(), len(e.GetChunks()))
	}

	// A manifest of a manifest, by hand.
	var inner []*filerpb.FileChunk
	off = 0
	for i := range 300 {
		n := needles[rng.IntN(len(needles))]
		inner = append(inner, exactPlace(n, off, base+int64(i), i%2 == 0))
		off += int64(len(n.data))
	}
	innerSpan := off
	blob, err := proto.Marshal(&filerpb.FileChunkManifest{Chunks: inner})
	require.NoError(t, err)
	m1 := exactUpload(ctx, t, c, "/mblob/inner.bin", blob)
	var outerData []*filerpb.FileChunk
	for i := range 200 {
		n := needles[rng.IntN(len(needles))]
		outerData = append(outerData, exactPlace(n, off, base+1000+int64(i), i%3 == 0))
		off += int64(len(n.data))
	}
	outerSpan := off
	innerChunk := &filerpb.FileChunk{
		FileId: m1.chunk.GetFileId(), Offset: 0, Size: uint64(innerSpan),
		ModifiedTsNs: base, ETag: m1.chunk.GetETag(), IsCompressed: m1.chunk.GetIsCompressed(), IsChunkManifest: true,
	}
	blob, err = proto.Marshal(&filerpb.FileChunkManifest{Chunks: append([]*filerpb.FileChunk{innerChunk}, outerData...)})
	require.NoError(t, err)
	// The outer blob is stored gzipped, as weed's uploader stores a chunk
	// it compressed: the needle holds the gzip stream and is flagged
	// compressed (the upload said Content-Encoding: gzip), and the chunk is
	// marked compressed. Like the filer's own manifests, it has no e_tag.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(blob)
	require.NoError(t, zw.Close())
	m2fid := exactUploadNeedle(ctx, t, c, gz.Bytes(), true)
	t.Logf("nested.bin: inner blob %s (%d bytes), outer blob %s (%d bytes, gzipped to %d)",
		m1.chunk.GetFileId(), len(m1.data), m2fid, len(blob), gz.Len())
	outerChunk := &filerpb.FileChunk{
		FileId: m2fid, Offset: 0, Size: uint64(outerSpan),
		ModifiedTsNs: base, IsCompressed: true, IsChunkManifest: true,
	}
	// A newer plain chunk across the inner manifest's end, and one after a hole.
	over := needles[len(needles)-1]
	overlap := exactPlace(over, innerSpan-700, base+5000, false)
	last := exactPlace(needles[3], outerSpan+12345, base+5001, false)
	size := last.GetOffset() + int64(last.GetSize())
	leaves := slices.Concat(inner, outerData, []*filerpb.FileChunk{overlap, last})
	want["nested.bin"] = exactModel(size, leaves, dataOf)
	exactCreate(ctx, t, c, "/man", "nested.bin", size, []*filerpb.FileChunk{outerChunk, overlap, last})
	e, err = c.Entry(ctx, "/man", "nested.bin")
	require.NoError(t, err)
	require.Len(t, e.GetChunks(), 3)

	for _, name := range slices.Sorted(maps.Keys(want)) {
		began := time.Now()
		served, err := c.Get(ctx, "/man/"+name)
		require.NoError(t, err)
		exactEqual(t, name+" from the filer's HTTP vs the model", served, want[name])
		t.Logf("%s: %d bytes; filer HTTP GET took %v", name, len(want[name]), time.Since(began).Round(time.Millisecond))
	}

	m := startMount(t, c, "-filer.path=/man")
	for _, name := range slices.Sorted(maps.Keys(want)) {
		began := time.Now()
		got, err := os.ReadFile(filepath.Join(m.Dir, name))
		require.NoError(t, err, "%s\n%s", name, m.Log())
		exactEqual(t, name+" through weedfuse", got, want[name])
		t.Logf("%s: read through weedfuse in %v", name, time.Since(began).Round(time.Millisecond))
		f, err := os.Open(filepath.Join(m.Dir, name))
		require.NoError(t, err)
		exactReadRanges(t, name, f, want[name], []int64{innerSpan, outerSpan, innerSpan - 700}, rng, 200)
		f.Close()
	}
}

// exactUploadNeedle stores data as a new needle, as weed's uploader does: a
// file id from the master's /dir/assign, then a multipart POST to the volume
// server, with Content-Encoding: gzip on the part when data is a gzip stream
// (the needle is then flagged compressed). It returns the file id.
func exactUploadNeedle(ctx context.Context, t *testing.T, c *cluster.Cluster, data []byte, gzipped bool) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.MasterAddr()+"/dir/assign", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var a struct{ Fid, URL, Error string }
	err = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	require.NoError(t, err)
	require.NotEmpty(t, a.Fid, "assign: %s", a.Error)

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="blob"`)
	h.Set("Content-Type", "application/octet-stream")
	if gzipped {
		h.Set("Content-Encoding", "gzip")
	}
	part, err := mw.CreatePart(h)
	require.NoError(t, err)
	part.Write(data)
	require.NoError(t, mw.Close())
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.URL+"/"+a.Fid, &body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "upload %s: %s", a.Fid, msg)
	return a.Fid
}

// exactFormatFid renders a FileId message as "vid,keycookie", with the
// key's leading zero bytes dropped, as SeaweedFS does.
func exactFormatFid(f *filerpb.FileId) string {
	kc := fmt.Sprintf("%016x%08x", f.GetFileKey(), f.GetCookie())
	for len(kc) > 8 && kc[:2] == "00" {
		kc = kc[2:]
	}
	return fmt.Sprintf("%d,%s", f.GetVolumeId(), kc)
}
