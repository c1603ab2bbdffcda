package chunkmap

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle"
)

var benchSizes = []int{10, 1_000, 100_000, 1_000_000}

const benchChunk = 4 << 20 // the filer's default -maxMB=4

// sequentialChunks is a file written front to back: n 4 MiB chunks in order,
// each with a formatted file id, as ListEntries returns them.
func sequentialChunks(n int) []*filerpb.FileChunk {
	out := make([]*filerpb.FileChunk, n)
	for i := range out {
		out[i] = &filerpb.FileChunk{
			FileId:       needle.FormatFileID(uint32(1+i%7), uint64(0x1000+i), 0x6b1a2c3d),
			Offset:       int64(i) * benchChunk,
			Size:         benchChunk,
			ModifiedTsNs: 1_700_000_000_000_000_000 + int64(i),
		}
	}
	return out
}

// overwrittenChunks is a sequential base of which a tenth is then overwritten
// at random places with random lengths, and the list shuffled: the sweep has
// overlaps to settle and nothing arrives sorted. The chunks are allocated in
// list order, as decoding a ListEntries reply allocates them.
func overwrittenChunks(n int) []*filerpb.FileChunk {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	type write struct {
		vid       uint32
		key       uint64
		off, size int64
		ts        int64
	}
	base := n - n/10
	writes := make([]write, 0, n)
	for i := range base {
		writes = append(writes, write{uint32(1 + i%7), uint64(0x1000 + i), int64(i) * benchChunk, benchChunk, 1_700_000_000_000_000_000 + int64(i)})
	}
	for i := range n - base {
		writes = append(writes, write{9, uint64(0x10_0000 + i), r.Int64N(int64(base) * benchChunk), 1 + r.Int64N(benchChunk), 1_800_000_000_000_000_000 + int64(i)})
	}
	r.Shuffle(len(writes), func(i, j int) { writes[i], writes[j] = writes[j], writes[i] })
	out := make([]*filerpb.FileChunk, len(writes))
	for i, w := range writes {
		out[i] = &filerpb.FileChunk{FileId: needle.FormatFileID(w.vid, w.key, 0x6b1a2c3d), Offset: w.off, Size: uint64(w.size), ModifiedTsNs: w.ts}
	}
	return out
}

func BenchmarkBuild(b *testing.B) {
	for _, shape := range []struct {
		name string
		gen  func(int) []*filerpb.FileChunk
	}{{"sequential", sequentialChunks}, {"overwritten", overwrittenChunks}} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/n=%d", shape.name, n), func(b *testing.B) {
				chunks := shape.gen(n)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Build(context.Background(), chunks, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/chunk")
			})
		}
	}
}

// BenchmarkViews maps 128 KiB reads (the kernel's default readahead) at
// random offsets; SetBytes makes the MB/s column the file bytes mapped.
func BenchmarkViews(b *testing.B) {
	const readSize = 128 << 10
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			m, err := Build(context.Background(), overwrittenChunks(n), nil)
			if err != nil {
				b.Fatal(err)
			}
			extent := m.Extent()
			r := rand.New(rand.NewPCG(1, 1))
			offs := make([]int64, 4096)
			for i := range offs {
				offs[i] = r.Int64N(extent)
			}
			dst := make([]View, 0, 64)
			b.SetBytes(readSize)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dst = m.Views(dst[:0], offs[i%len(offs)], readSize, extent)
				i++
			}
		})
	}
}
