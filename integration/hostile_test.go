package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// TestHostileMetadata stores, in a real cluster, a file whose manifest
// lists one child manifest 1,100 times (1.1 million leaves from two small
// blobs) and a file whose one chunk claims 1 TiB. Reads of
// both fail with EIO within seconds, and the mount keeps serving a normal
// file beside them. (The filer's own HTTP GET of the first would resolve
// every leaf, so it is not asked.)
func TestHostileMetadata(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 2*time.Minute)
	data := bytes.Repeat([]byte("weedfuse"), 16) // 128 bytes
	n := exactUpload(ctx, t, c, "/bad/normal.bin", data)

	// A manifest of 1,000 data chunks, listed 1,100 times by another:
	// 1.1 million leaves, past weedfuse's bound of 2^20, from two blobs.
	// (Deeper fan-outs cannot be stored: the filer's CreateEntry resolves
	// every leaf, fetching each manifest once per reference, and 1,000
	// over three levels kept it busy past two minutes.)
	var kids []*filerpb.FileChunk
	for i := range 1000 {
		kids = append(kids, exactPlace(n, int64(i*len(data)), int64(i+1), true))
	}
	span := uint64(1000 * len(data))
	manifest := func(kids []*filerpb.FileChunk) *filerpb.FileChunk {
		blob, err := proto.Marshal(&filerpb.FileChunkManifest{Chunks: kids})
		require.NoError(t, err)
		fid := exactUploadNeedle(ctx, t, c, blob, false)
		t.Logf("manifest %s: %d bytes, %d entries", fid, len(blob), len(kids))
		return &filerpb.FileChunk{FileId: fid, Size: span, ModifiedTsNs: 1, IsChunkManifest: true}
	}
	child := manifest(kids)
	refs := make([]*filerpb.FileChunk, 1100)
	for i := range refs {
		refs[i] = child
	}
	top := manifest(refs)
	began := time.Now()
	exactCreate(ctx, t, c, "/bad", "fanout.bin", int64(span), []*filerpb.FileChunk{top})
	t.Logf("the filer's CreateEntry of fanout.bin took %v", time.Since(began).Round(time.Millisecond))
	huge := exactPlace(n, 0, 1, false)
	huge.Size = 1 << 40
	exactCreate(ctx, t, c, "/bad", "huge.bin", 1<<40, []*filerpb.FileChunk{huge})

	m := startMount(t, c, "-filer.path=/bad")
	for _, name := range []string{"fanout.bin", "huge.bin"} {
		began := time.Now()
		f, err := os.Open(filepath.Join(m.Dir, name))
		if err == nil {
			buf := make([]byte, 4096)
			_, err = f.ReadAt(buf, 0)
			f.Close()
		}
		took := time.Since(began)
		t.Logf("%s: %v after %v", name, err, took.Round(time.Millisecond))
		require.True(t, errors.Is(err, syscall.EIO), "%s: %v, want EIO", name, err)
		require.Less(t, took, 20*time.Second, name)
	}
	got, err := os.ReadFile(filepath.Join(m.Dir, "normal.bin"))
	require.NoError(t, err)
	require.Equal(t, data, got)
}
