package chunkmap

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// ch is a data chunk with a literal file id.
func ch(fid string, off int64, size uint64, ts int64) *filerpb.FileChunk {
	return &filerpb.FileChunk{FileId: fid, Offset: off, Size: size, ModifiedTsNs: ts}
}

// render writes views compactly: "a[0,50)@0" is file bytes [0,50) from chunk
// a at chunk offset 0, "hole[50,60)" reads as zeros.
func render(vs []View) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		if v.Hole {
			parts[i] = fmt.Sprintf("hole[%d,%d)", v.FileOff, v.FileOff+v.Len)
		} else {
			parts[i] = fmt.Sprintf("%s[%d,%d)@%d", v.Chunk.FileID, v.FileOff, v.FileOff+v.Len, v.ChunkOff)
		}
	}
	return strings.Join(parts, " ")
}

func mustBuild(t testing.TB, chunks []*filerpb.FileChunk) *Map {
	t.Helper()
	m, err := Build(context.Background(), chunks, nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return m
}

func TestIntervals(t *testing.T) {
	// Keys 1 and 2 in volume 3, and key 1 in volume 4: same timestamps below.
	const k1, k2, k1v4 = "3,01000000aa", "3,02000000bb", "4,01000000cc"
	tests := []struct {
		name   string
		chunks []*filerpb.FileChunk
		want   string
		extent int64
	}{
		{"empty list", nil, "", 0},
		{"single chunk", []*filerpb.FileChunk{ch("a", 0, 100, 1)}, "a[0,100)@0", 100},
		{"sequential", []*filerpb.FileChunk{ch("a", 0, 100, 1), ch("b", 100, 100, 2)}, "a[0,100)@0 b[100,200)@0", 200},
		{"unsorted", []*filerpb.FileChunk{ch("c", 200, 50, 1), ch("a", 0, 100, 3), ch("b", 100, 100, 2)},
			"a[0,100)@0 b[100,200)@0 c[200,250)@0", 250},
		{"full overwrite", []*filerpb.FileChunk{ch("a", 0, 100, 1), ch("b", 0, 100, 2)}, "b[0,100)@0", 100},
		{"full overwrite, newer listed first", []*filerpb.FileChunk{ch("b", 0, 100, 2), ch("a", 0, 100, 1)}, "b[0,100)@0", 100},
		{"newer overlaps the end", []*filerpb.FileChunk{ch("a", 0, 100, 1), ch("b", 50, 100, 2)}, "a[0,50)@0 b[50,150)@0", 150},
		{"newer overlaps the start", []*filerpb.FileChunk{ch("a", 50, 100, 1), ch("b", 0, 100, 2)}, "b[0,100)@0 a[100,150)@50", 150},
		{"newer overlaps both ends", []*filerpb.FileChunk{ch("a", 20, 60, 1), ch("b", 0, 30, 2), ch("c", 70, 30, 3)},
			"b[0,30)@0 a[30,70)@10 c[70,100)@0", 100},
		{"newer in the middle", []*filerpb.FileChunk{ch("a", 0, 100, 1), ch("b", 40, 20, 2)}, "a[0,40)@0 b[40,60)@0 a[60,100)@60", 100},
		{"older in the middle is hidden", []*filerpb.FileChunk{ch("a", 0, 100, 2), ch("b", 40, 20, 1)}, "a[0,100)@0", 100},
		{"older sticks out", []*filerpb.FileChunk{ch("a", 0, 100, 2), ch("b", 90, 20, 1)}, "a[0,100)@0 b[100,110)@10", 110},
		{"three layers", []*filerpb.FileChunk{ch("a", 0, 100, 1), ch("b", 10, 80, 2), ch("c", 20, 10, 3), ch("d", 60, 10, 3)},
			"a[0,10)@0 b[10,20)@0 c[20,30)@0 b[30,60)@20 d[60,70)@0 b[70,90)@60 a[90,100)@90", 100},
		{"uncovered after the newest ends", []*filerpb.FileChunk{ch("a", 0, 10, 1), ch("b", 5, 100, 0), ch("c", 20, 10, 5)},
			"a[0,10)@0 b[10,20)@5 c[20,30)@0 b[30,105)@25", 105},
		{"holes at start, middle and end", []*filerpb.FileChunk{ch("b", 30, 10, 1), ch("a", 10, 10, 1)}, "a[10,20)@0 b[30,40)@0", 40},
		{"zero-size chunks cover nothing", []*filerpb.FileChunk{ch("z", 0, 0, 9), ch("a", 0, 100, 1), ch("y", 50, 0, 9), ch("x", 100, 0, 9)},
			"a[0,100)@0", 100},
		{"only zero-size chunks", []*filerpb.FileChunk{ch("z", 10, 0, 1)}, "", 0},
		{"equal timestamps, adjacent", []*filerpb.FileChunk{ch("b", 100, 100, 7), ch("a", 0, 100, 7)}, "a[0,100)@0 b[100,200)@0", 200},
		{"equal timestamps, larger key wins", []*filerpb.FileChunk{ch(k2, 0, 100, 7), ch(k1, 50, 100, 7)},
			k2 + "[0,100)@0 " + k1 + "[100,150)@50", 150},
		{"equal timestamps, larger key wins in either order", []*filerpb.FileChunk{ch(k1, 50, 100, 7), ch(k2, 0, 100, 7)},
			k2 + "[0,100)@0 " + k1 + "[100,150)@50", 150},
		{"equal timestamps and keys, later in list wins", []*filerpb.FileChunk{ch(k1v4, 0, 100, 7), ch(k1, 50, 100, 7)},
			k1v4 + "[0,50)@0 " + k1 + "[50,150)@0", 150},
		{"equal timestamps and keys, later in list wins, swapped", []*filerpb.FileChunk{ch(k1, 50, 100, 7), ch(k1v4, 0, 100, 7)},
			k1v4 + "[0,100)@0 " + k1 + "[100,150)@50", 150},
		{"equal timestamps, unparsable ids, later in list wins", []*filerpb.FileChunk{ch("a", 0, 100, 7), ch("b", 20, 10, 7), ch("c", 0, 100, 7)},
			"c[0,100)@0", 100},
		{"newer timestamp beats larger key", []*filerpb.FileChunk{ch(k2, 0, 100, 1), ch(k1, 0, 50, 2)}, k1 + "[0,50)@0 " + k2 + "[50,100)@50", 100},
		{"duplicate entries", []*filerpb.FileChunk{ch("a", 0, 100, 1), ch("a", 0, 100, 1)}, "a[0,100)@0", 100},
		{"same id at two offsets", []*filerpb.FileChunk{ch("a", 0, 10, 1), ch("a", 10, 10, 1)}, "a[0,10)@0 a[10,20)@0", 20},
		{"at the end of the offset range", []*filerpb.FileChunk{ch("a", math.MaxInt64-10, 10, 1)},
			fmt.Sprintf("a[%d,%d)@0", int64(math.MaxInt64-10), int64(math.MaxInt64)), math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustBuild(t, tt.chunks)
			if got := render(m.Intervals()); got != tt.want {
				t.Errorf("intervals: got %q, want %q", got, tt.want)
			}
			if got := m.Extent(); got != tt.extent {
				t.Errorf("Extent: got %d, want %d", got, tt.extent)
			}
		})
	}
}

func TestViews(t *testing.T) {
	holey := []*filerpb.FileChunk{ch("a", 10, 10, 1), ch("b", 30, 10, 1)}
	tests := []struct {
		name                string
		chunks              []*filerpb.FileChunk
		off, size, fileSize int64
		want                string
	}{
		{"whole file", holey, 0, 50, 50, "hole[0,10) a[10,20)@0 hole[20,30) b[30,40)@0 hole[40,50)"},
		{"inside one chunk", holey, 12, 5, 50, "a[12,17)@2"},
		{"inside one hole", holey, 21, 5, 50, "hole[21,26)"},
		{"across a chunk end", holey, 15, 10, 50, "a[15,20)@5 hole[20,25)"},
		{"exactly one chunk", holey, 30, 10, 50, "b[30,40)@0"},
		{"fileSize larger than extent", holey, 35, 100, 60, "b[35,40)@5 hole[40,60)"},
		{"fileSize smaller than extent", holey, 0, 100, 35, "hole[0,10) a[10,20)@0 hole[20,30) b[30,35)@0"},
		{"fileSize inside a chunk", []*filerpb.FileChunk{ch("a", 0, 100, 1)}, 10, 100, 42, "a[10,42)@10"},
		{"range past fileSize", holey, 60, 10, 50, ""},
		{"range starting at fileSize", holey, 50, 10, 50, ""},
		{"zero size", holey, 10, 0, 50, ""},
		{"negative size", holey, 10, -5, 50, ""},
		{"negative offset is clipped to 0", holey, -5, 20, 50, "hole[0,10) a[10,15)@0"},
		{"zero fileSize", holey, 0, 10, 0, ""},
		{"size overflowing int64", holey, 35, math.MaxInt64, 45, "b[35,40)@5 hole[40,45)"},
		{"most negative offset", holey, math.MinInt64, math.MaxInt64, 45, ""},
		{"most negative offset, range reaching into the file", holey, math.MinInt64 + 10, math.MaxInt64, 45, "hole[0,9)"},
		{"offset at the int64 end", holey, math.MaxInt64, math.MaxInt64, math.MaxInt64, ""},
		{"empty list", nil, 0, 10, 10, "hole[0,10)"},
		{"split by a newer chunk", []*filerpb.FileChunk{ch("a", 0, 100, 1), ch("b", 40, 20, 2)}, 30, 40, 100,
			"a[30,40)@30 b[40,60)@0 a[60,70)@60"},
		{"from the middle of a resurfacing chunk", []*filerpb.FileChunk{ch("a", 0, 100, 1), ch("b", 40, 20, 2)}, 65, 10, 100,
			"a[65,75)@65"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustBuild(t, tt.chunks)
			if got := render(m.Views(nil, tt.off, tt.size, tt.fileSize)); got != tt.want {
				t.Errorf("Views(%d, %d, %d): got %q, want %q", tt.off, tt.size, tt.fileSize, got, tt.want)
			}
		})
	}
}

func TestViewsAppends(t *testing.T) {
	m := mustBuild(t, []*filerpb.FileChunk{ch("a", 0, 10, 1)})
	dst := m.Views(nil, 0, 5, 10)
	dst = m.Views(dst, 5, 10, 20)
	if got, want := render(dst), "a[0,5)@0 a[5,10)@5 hole[10,15)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestChunkDescriptor(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	c := &filerpb.FileChunk{
		Fid:          &filerpb.FileId{VolumeId: 7, FileKey: 0x123, Cookie: 0xdeadbeef},
		Offset:       100,
		Size:         50,
		ModifiedTsNs: 1,
		ETag:         "etag",
		CipherKey:    key,
		IsCompressed: true,
	}
	m := mustBuild(t, []*filerpb.FileChunk{c})
	vs := m.Views(nil, 110, 10, 150)
	if len(vs) != 1 {
		t.Fatalf("got %d views, want 1", len(vs))
	}
	got := vs[0].Chunk
	if got.FileID != "7,0123deadbeef" || got.Size != 50 || string(got.CipherKey) != string(key) || !got.Compressed || got.ETag != "etag" {
		t.Errorf("got %+v, want file id 7,0123deadbeef, size 50, the cipher key, compressed, etag", got)
	}
	if vs[0].ChunkOff != 10 {
		t.Errorf("ChunkOff: got %d, want 10", vs[0].ChunkOff)
	}
	if c.FileId != "" {
		t.Errorf("Build wrote FileId %q into the caller's chunk", c.FileId)
	}
}

func TestBuildRejects(t *testing.T) {
	tests := []struct {
		name  string
		chunk *filerpb.FileChunk
		want  string
	}{
		{"negative offset", ch("a", -1, 10, 1), "range offset -1 size 10"},
		{"size past int64", ch("a", 10, math.MaxInt64, 1), "outside the file"},
		{"huge size", ch("a", 0, math.MaxUint64, 1), "outside the file"},
		{"no file id", ch("", 0, 10, 1), "has no file id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(context.Background(), []*filerpb.FileChunk{ch("ok", 0, 5, 1), tt.chunk}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
	// A zero-size chunk without an id is harmless: it covers nothing.
	if _, err := Build(context.Background(), []*filerpb.FileChunk{ch("", 5, 0, 1)}, nil); err != nil {
		t.Errorf("zero-size chunk without id: got %v, want nil", err)
	}
}

func TestFileIDPrefersString(t *testing.T) {
	c := &filerpb.FileChunk{FileId: "9,01aabbccdd", Fid: &filerpb.FileId{VolumeId: 1, FileKey: 2, Cookie: 3}}
	if got, want := FileID(c), "9,01aabbccdd"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := FileID(&filerpb.FileChunk{}), ""; got != want {
		t.Errorf("no id: got %q, want %q", got, want)
	}
}

func TestNeedleKey(t *testing.T) {
	tests := []struct {
		c    *filerpb.FileChunk
		want uint64
	}{
		{&filerpb.FileChunk{FileId: "3,01637037d66b1a2c3d"}, 0x01637037d6},
		{&filerpb.FileChunk{FileId: "3,123deadbeef"}, 0x123}, // odd digit count parses too
		{&filerpb.FileChunk{FileId: "3,12345678"}, 0},        // cookie only
		{&filerpb.FileChunk{FileId: "3,ffffffffffffffffffffffff"}, math.MaxUint64},
		{&filerpb.FileChunk{FileId: "3,1ffffffffffffffffffffffff"}, 0}, // too long
		{&filerpb.FileChunk{FileId: "3,zz12345678"}, 0},
		{&filerpb.FileChunk{FileId: "nocomma"}, 0},
		{&filerpb.FileChunk{Fid: &filerpb.FileId{FileKey: 42}}, 42},
		{&filerpb.FileChunk{FileId: "3,0500000000", Fid: &filerpb.FileId{FileKey: 42}}, 5},
		{&filerpb.FileChunk{}, 0},
	}
	for _, tt := range tests {
		if got := needleKey(tt.c); got != tt.want {
			t.Errorf("needleKey(%q, %v): got %#x, want %#x", tt.c.GetFileId(), tt.c.GetFid(), got, tt.want)
		}
	}
}

// TestWhole: Whole takes a chunk for the whole file exactly when Build's map
// shows that one chunk over all of it, and gives the same descriptor.
func TestWhole(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		name   string
		chunks []*filerpb.FileChunk
		size   int64
		whole  bool
	}{
		{"one chunk", []*filerpb.FileChunk{ch("a", 0, 10, 1)}, 10, true},
		{"by Fid", []*filerpb.FileChunk{{Fid: &filerpb.FileId{VolumeId: 7, FileKey: 1, Cookie: 2}, Size: 10, CipherKey: key, IsCompressed: true, ETag: "e"}}, 10, true},
		{"file longer", []*filerpb.FileChunk{ch("a", 0, 10, 1)}, 12, false},
		{"file shorter", []*filerpb.FileChunk{ch("a", 0, 10, 1)}, 8, false},
		{"at an offset", []*filerpb.FileChunk{ch("a", 2, 10, 1)}, 12, false},
		{"two chunks", []*filerpb.FileChunk{ch("a", 0, 5, 1), ch("b", 5, 5, 1)}, 10, false},
		{"overwritten whole", []*filerpb.FileChunk{ch("a", 0, 10, 1), ch("b", 0, 10, 2)}, 10, false},
		{"no file id", []*filerpb.FileChunk{ch("", 0, 10, 1)}, 10, false},
		{"manifest", []*filerpb.FileChunk{{FileId: "m", Size: 10, IsChunkManifest: true}}, 10, false},
		{"empty", []*filerpb.FileChunk{ch("a", 0, 0, 1)}, 0, false},
		{"none", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Whole(tc.chunks, tc.size)
			if ok != tc.whole {
				t.Fatalf("Whole: got %v, want %v", ok, tc.whole)
			}
			if !ok {
				return
			}
			vs := mustBuild(t, tc.chunks).Views(nil, 0, tc.size, tc.size)
			if len(vs) != 1 || vs[0].Hole || vs[0].ChunkOff != 0 || vs[0].Len != tc.size {
				t.Fatalf("Build's views: %s", render(vs))
			}
			want := vs[0].Chunk
			if got.FileID != want.FileID || got.Size != want.Size || string(got.CipherKey) != string(want.CipherKey) || got.Compressed != want.Compressed || got.ETag != want.ETag {
				t.Errorf("got %+v, want Build's %+v", got, want)
			}
		})
	}
}
