package chunkmap

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// FuzzManifest hands Build a manifest chunk whose blob, as a volume server
// sent it, is any bytes: a blob that does not parse, lists children that
// break the manifest's rules, or refers to itself is an error, never a
// panic or a runaway, and a map that builds answers Views within its
// extent.
func FuzzManifest(f *testing.F) {
	add := func(children ...*filerpb.FileChunk) {
		blob, err := proto.Marshal(&filerpb.FileChunkManifest{Chunks: children})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blob, int64(0), uint64(8<<20))
	}
	add(&filerpb.FileChunk{FileId: "3,01637037d6", Offset: 0, Size: 4 << 20, ModifiedTsNs: 1},
		&filerpb.FileChunk{FileId: "3,02637037d6", Offset: 4 << 20, Size: 4 << 20, ModifiedTsNs: 2})
	add(&filerpb.FileChunk{FileId: "9,01000000aa", Offset: 0, Size: 1 << 20, IsChunkManifest: true})
	add(&filerpb.FileChunk{FileId: "9,0100000000", Offset: 1 << 62, Size: 1 << 63})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, int64(0), uint64(1))
	f.Fuzz(func(t *testing.T, blob []byte, off int64, size uint64) {
		fetch := newMemFetcher()
		fetch.blobs["9,01000000aa"] = blob
		chunks := []*filerpb.FileChunk{{FileId: "9,01000000aa", Offset: off, Size: size, IsChunkManifest: true}}
		m, err := Build(context.Background(), chunks, fetch)
		if err != nil {
			return
		}
		ext := m.Extent()
		n := min(ext, 64<<20)
		var covered int64
		for _, v := range m.Views(nil, 0, n, ext) {
			if v.Len <= 0 || v.FileOff != covered || v.ChunkOff < 0 {
				t.Fatalf("views of [0, %d): %+v does not follow %d", n, v, covered)
			}
			covered += v.Len
		}
		if covered != n {
			t.Fatalf("views of [0, %d) cover %d bytes", n, covered)
		}
	})
}
