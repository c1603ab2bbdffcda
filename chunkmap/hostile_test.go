package chunkmap

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// fanOut stores a chain of manifests, depth levels deep, each listing the
// next level's manifest n times; the last lists n data chunks. It returns
// the top manifest chunk: n^depth leaves from depth blobs.
func fanOut(t *testing.T, f *memFetcher, n, depth int) *filerpb.FileChunk {
	t.Helper()
	var kids []*filerpb.FileChunk
	for i := range n {
		kids = append(kids, &filerpb.FileChunk{FileId: fmt.Sprintf("3,%x01", 0x1000+i), Offset: int64(i), Size: 1, ModifiedTsNs: 1})
	}
	var top *filerpb.FileChunk
	for level := depth; level >= 1; level-- {
		top = f.manifest(t, fmt.Sprintf("4,%x02", level), 1, kids...)
		kids = make([]*filerpb.FileChunk, n)
		for i := range kids {
			kids[i] = top
		}
	}
	return top
}

func TestHostileFanOutIsRefusedQuickly(t *testing.T) {
	f := newMemFetcher()
	top := fanOut(t, f, 1000, 3) // 10^9 leaves from three blobs of ~13 KiB
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Build(context.Background(), []*filerpb.FileChunk{top}, f)
	took := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooManyChunks) {
		t.Fatalf("Build = %v, want ErrTooManyChunks", err)
	}
	if got := f.reads.Load(); got != 3 {
		t.Errorf("%d manifest fetches, want 3 (each blob once)", got)
	}
	if took > 10*time.Second {
		t.Errorf("refusal took %v", took)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
		t.Errorf("refusal allocated %d MiB", grew>>20)
	}
	t.Logf("refused in %v: %v", took, err)
}

func TestRepeatedChildManifestIsFetchedOnce(t *testing.T) {
	f := newMemFetcher()
	child := f.manifest(t, "5,0a01", 1,
		&filerpb.FileChunk{FileId: "3,0b01", Offset: 0, Size: 10, ModifiedTsNs: 1},
		&filerpb.FileChunk{FileId: "3,0c01", Offset: 10, Size: 10, ModifiedTsNs: 1})
	mid := f.manifest(t, "5,0d01", 1, child, child, child)
	m, err := Build(context.Background(), []*filerpb.FileChunk{child, mid, child, mid}, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.reads.Load(); got != 2 {
		t.Errorf("%d manifest fetches, want 2", got)
	}
	if got := m.Extent(); got != 20 {
		t.Errorf("extent %d, want 20", got)
	}
}

func TestFailedManifestIsFetchedOnce(t *testing.T) {
	f := newMemFetcher()
	bad := &filerpb.FileChunk{FileId: "5,0e01", Size: 5, IsChunkManifest: true}
	f.errs["5,0e01"] = errors.New("gone")
	_, err := Build(context.Background(), []*filerpb.FileChunk{bad, bad, bad}, f)
	if err == nil {
		t.Fatal("Build of a missing manifest succeeded")
	}
	if got := f.reads.Load(); got != 1 {
		t.Errorf("%d fetches, want 1", got)
	}
}

func TestChunkAndManifestBounds(t *testing.T) {
	data := func(i int) *filerpb.FileChunk {
		return &filerpb.FileChunk{FileId: fmt.Sprintf("3,%x01", 0x100+i), Offset: int64(i), Size: 1, ModifiedTsNs: 1}
	}
	f := newMemFetcher()
	var many []*filerpb.FileChunk // 20 distinct manifests of one chunk each
	for i := range 20 {
		many = append(many, f.manifest(t, fmt.Sprintf("6,%x01", 0x200+i), 1, data(i)))
	}
	flat := make([]*filerpb.FileChunk, 0, 20)
	for i := range 20 {
		flat = append(flat, data(i))
	}
	cases := []struct {
		name   string
		chunks []*filerpb.FileChunk
		lim    limits
		want   error
	}{
		{"flat at the bound", flat, limits{chunks: 20, manifests: 0}, nil},
		{"flat past the bound", flat, limits{chunks: 19, manifests: 0}, ErrTooManyChunks},
		// 20 manifest entries plus 20 children: 40 entries.
		{"manifests at both bounds", many, limits{chunks: 40, manifests: 20}, nil},
		{"one manifest too many", many, limits{chunks: 40, manifests: 19}, ErrTooManyManifests},
		{"children past the chunk bound", many, limits{chunks: 39, manifests: 20}, ErrTooManyChunks},
		{"zero-size entries count", append(flat, make([]*filerpb.FileChunk, 5)...), limits{chunks: 24, manifests: 0}, ErrTooManyChunks},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build(context.Background(), tc.chunks, f, tc.lim)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("build = %v, want %v", err, tc.want)
			}
		})
	}
}

// An empty manifest listed over and over yields no leaves, but every
// reference is still counted: nothing can make Build loop without bound.
func TestEmptyManifestFanOutIsBounded(t *testing.T) {
	f := newMemFetcher()
	empty := f.manifest(t, "7,0101", 1)
	empty.Size = 1 // a manifest that claims bytes and lists nothing
	kids := make([]*filerpb.FileChunk, 1000)
	for i := range kids {
		kids[i] = empty
	}
	var top *filerpb.FileChunk
	for level := range 4 {
		top = f.manifest(t, fmt.Sprintf("7,%x02", 0x10+level), 1, kids...)
		top.Size = 1
		for i := range kids {
			kids[i] = top
		}
	}
	start := time.Now()
	_, err := Build(context.Background(), []*filerpb.FileChunk{top}, f)
	if !errors.Is(err, ErrTooManyChunks) {
		t.Fatalf("Build = %v, want ErrTooManyChunks", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v", took)
	}
}
