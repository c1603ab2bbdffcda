package chunkmap

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle"
)

// spec is a chunk as a test generates it, with its needle key known
// directly rather than parsed back out of the file id.
type spec struct {
	off, size int64
	ts        int64
	vid       uint32
	key       uint64
	asFid     bool // Fid only, as SeaweedFS stores chunks; else a FileId string
}

// chunksOf turns specs into filer chunks. The cookie is the index, so every
// chunk has its own file id even when volume and key repeat.
func chunksOf(specs []spec) []*filerpb.FileChunk {
	out := make([]*filerpb.FileChunk, len(specs))
	for i, s := range specs {
		c := &filerpb.FileChunk{Offset: s.off, Size: uint64(s.size), ModifiedTsNs: s.ts, ETag: fmt.Sprint("etag", i)}
		fid := &filerpb.FileId{VolumeId: s.vid, FileKey: s.key, Cookie: uint32(i)}
		if s.asFid {
			c.Fid = fid
		} else {
			c.FileId = needle.FormatFileID(fid.VolumeId, fid.FileKey, fid.Cookie)
		}
		out[i] = c
	}
	return out
}

// model paints the chunks onto a byte array in ascending priority (timestamp,
// then needle key, then list position), so every byte ends up owned by the
// chunk that must show there; -1 is a hole.
func model(specs []spec) []int {
	var length int64
	for _, s := range specs {
		length = max(length, s.off+s.size)
	}
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		sa, sb := specs[a], specs[b]
		if sa.ts != sb.ts {
			return cmpInt(sa.ts, sb.ts)
		}
		if sa.key != sb.key {
			if sa.key < sb.key {
				return -1
			}
			return 1
		}
		return 0 // stable: list order
	})
	owner := make([]int, length)
	for i := range owner {
		owner[i] = -1
	}
	for _, i := range order {
		for b := specs[i].off; b < specs[i].off+specs[i].size; b++ {
			owner[b] = i
		}
	}
	return owner
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkViews compares m.Views for one range with the model, byte by byte,
// and checks the shape invariants: contiguous, in order, non-empty, clipped
// to [0, fileSize), no two holes or two pieces of one chunk side by side.
func checkViews(m *Map, chunks []*filerpb.FileChunk, owner []int, off, size, fileSize int64) error {
	vs := m.Views(nil, off, size, fileSize)
	lo := max(off, 0)
	hi := fileSize
	if off < 0 || size <= math.MaxInt64-off {
		hi = min(off+size, fileSize)
	}
	if size <= 0 || lo >= hi {
		if len(vs) != 0 {
			return fmt.Errorf("Views(%d, %d, %d): got %q, want nothing", off, size, fileSize, render(vs))
		}
		return nil
	}
	ownerAt := func(b int64) int {
		if b < int64(len(owner)) {
			return owner[b]
		}
		return -1
	}
	pos := lo
	for i, v := range vs {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("Views(%d, %d, %d) = %q, view %d: %s", off, size, fileSize, render(vs), i, fmt.Sprintf(format, args...))
		}
		if v.FileOff != pos {
			return fail("got start %d, want %d", v.FileOff, pos)
		}
		if v.Len <= 0 {
			return fail("got length %d, want > 0", v.Len)
		}
		if i > 0 {
			p := vs[i-1]
			if p.Hole && v.Hole {
				return fail("got two holes side by side, want one")
			}
			if !p.Hole && !v.Hole && p.Chunk.FileID == v.Chunk.FileID && p.ChunkOff+p.Len == v.ChunkOff {
				return fail("got one chunk split in two, want one view")
			}
		}
		if v.Hole {
			if !reflect.DeepEqual(v.Chunk, needle.Chunk{}) || v.ChunkOff != 0 {
				return fail("got hole with chunk %+v at %d, want zero", v.Chunk, v.ChunkOff)
			}
		} else if v.ChunkOff < 0 || v.ChunkOff+v.Len > v.Chunk.Size {
			return fail("got chunk bytes [%d,%d), want inside [0,%d)", v.ChunkOff, v.ChunkOff+v.Len, v.Chunk.Size)
		}
		// Every byte of a view has the same owner in the model: the chunk
		// of a data view (so one comparison of the descriptor and the
		// offset covers all of them) or none for a hole.
		o := ownerAt(v.FileOff)
		for b := v.FileOff; b < v.FileOff+v.Len; b++ {
			if got := ownerAt(b); got != o {
				return fail("model owners of bytes %d and %d: %d and %d, want one owner per view", v.FileOff, b, o, got)
			}
		}
		switch {
		case v.Hole && o >= 0:
			return fail("got hole, want chunk %s", FileID(chunks[o]))
		case v.Hole:
		case o < 0:
			return fail("got chunk %s, want hole", v.Chunk.FileID)
		case !reflect.DeepEqual(v.Chunk, ChunkFromFiler(chunks[o])):
			return fail("got chunk %+v, want %+v", v.Chunk, ChunkFromFiler(chunks[o]))
		case v.ChunkOff != v.FileOff-chunks[o].Offset:
			return fail("got chunk offset %d, want %d", v.ChunkOff, v.FileOff-chunks[o].Offset)
		}
		pos += v.Len
	}
	if pos != hi {
		return fmt.Errorf("Views(%d, %d, %d) = %q: got end %d, want %d", off, size, fileSize, render(vs), pos, hi)
	}
	return nil
}

// checkIntervals checks that the intervals are the model's owned runs,
// sorted and disjoint, and that Extent is the last owned byte plus one.
func checkIntervals(m *Map, chunks []*filerpb.FileChunk, owner []int) error {
	var extent int64
	for b := len(owner) - 1; b >= 0; b-- {
		if owner[b] >= 0 {
			extent = int64(b) + 1
			break
		}
	}
	if got := m.Extent(); got != extent {
		return fmt.Errorf("Extent: got %d, want %d", got, extent)
	}
	all := m.Intervals()
	covered := int64(0)
	for i, v := range all {
		if v.Hole || v.Len <= 0 || (i > 0 && v.FileOff < all[i-1].FileOff+all[i-1].Len) {
			return fmt.Errorf("Intervals %q: interval %d is a hole, empty, or overlaps the one before", render(all), i)
		}
		covered += v.Len
	}
	owned := int64(0)
	for _, o := range owner {
		if o >= 0 {
			owned++
		}
	}
	if covered != owned {
		return fmt.Errorf("Intervals %q: got %d bytes covered, want %d", render(all), covered, owned)
	}
	// With coverage equal, Views over everything checks each byte's owner.
	return checkViews(m, chunks, owner, 0, extent, extent)
}

// wrapInManifests replaces runs of chunks by manifest chunks (manifests of
// manifests too), keeping list order, and returns the new list.
func wrapInManifests(t testing.TB, r *rand.Rand, f *memFetcher, chunks []*filerpb.FileChunk, serial *int) []*filerpb.FileChunk {
	for range r.IntN(3) {
		if len(chunks) == 0 {
			break
		}
		i := r.IntN(len(chunks))
		j := i + 1 + r.IntN(len(chunks)-i)
		*serial++
		// The manifest's own timestamp is noise: it must not matter.
		man := f.manifest(t, fmt.Sprintf("m%d", *serial), r.Int64N(10), chunks[i:j]...)
		chunks = slices.Concat(chunks[:i], []*filerpb.FileChunk{man}, chunks[j:])
	}
	return chunks
}

func randomSpecs(r *rand.Rand, n int, span int64) []spec {
	specs := make([]spec, n)
	for i := range specs {
		specs[i] = spec{
			off: r.Int64N(span),
			// Small timestamp, volume and key ranges make ties common.
			size:  r.Int64N(span/3 + 1),
			ts:    r.Int64N(4),
			vid:   uint32(1 + r.IntN(2)),
			key:   uint64(r.IntN(4)),
			asFid: r.IntN(2) == 0,
		}
	}
	return specs
}

func TestRandomAgainstModel(t *testing.T) {
	rounds := 3000
	if testing.Short() {
		rounds = 300
	}
	r := rand.New(rand.NewPCG(1, 2))
	f := newMemFetcher()
	serial := 0
	for round := range rounds {
		span := 8 + r.Int64N(200)
		specs := randomSpecs(r, r.IntN(25), span)
		chunks := chunksOf(specs)
		list := wrapInManifests(t, r, f, chunks, &serial)
		m, err := Build(context.Background(), list, f)
		if err != nil {
			t.Fatalf("round %d: Build: %v", round, err)
		}
		owner := model(specs)
		if err := checkIntervals(m, chunks, owner); err != nil {
			t.Fatalf("round %d, specs %+v: %v", round, specs, err)
		}
		for range 10 {
			off := r.Int64N(span+20) - 10
			size := r.Int64N(span + 20)
			fileSize := r.Int64N(span + 40)
			if err := checkViews(m, chunks, owner, off, size, fileSize); err != nil {
				t.Fatalf("round %d, specs %+v: %v", round, specs, err)
			}
		}
	}
}

// FuzzViews decodes chunks from data, 4 bytes each: offset, size, timestamp
// and key with the id form in bit 2; then checks one Views range and the
// intervals against the model.
func FuzzViews(f *testing.F) {
	f.Add([]byte{0, 100, 1, 0}, int16(0), uint16(100), int16(100))
	f.Add([]byte{0, 100, 1, 0, 40, 20, 2, 0}, int16(30), uint16(40), int16(100))
	f.Add([]byte{10, 10, 1, 1, 30, 10, 1, 2}, int16(-5), uint16(60), int16(45))
	f.Add([]byte{0, 100, 7, 2, 50, 100, 7, 1, 20, 0, 9, 0}, int16(0), uint16(200), int16(120))
	f.Add([]byte{5, 50, 3, 3, 5, 50, 3, 7, 5, 50, 3, 3}, int16(1), uint16(1000), int16(30))
	f.Fuzz(func(t *testing.T, data []byte, off int16, size uint16, fileSize int16) {
		var specs []spec
		for i := 0; i+4 <= len(data) && len(specs) < 64; i += 4 {
			specs = append(specs, spec{
				off:   int64(data[i]),
				size:  int64(data[i+1]),
				ts:    int64(data[i+2] % 8),
				vid:   1,
				key:   uint64(data[i+3] & 3),
				asFid: data[i+3]&4 != 0,
			})
		}
		chunks := chunksOf(specs)
		m, err := Build(context.Background(), chunks, nil)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		owner := model(specs)
		if err := checkIntervals(m, chunks, owner); err != nil {
			t.Fatal(err)
		}
		if err := checkViews(m, chunks, owner, int64(off), int64(size), int64(fileSize)); err != nil {
			t.Fatal(err)
		}
	})
}
