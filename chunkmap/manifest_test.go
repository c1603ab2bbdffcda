package chunkmap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/volume"
)

// memFetcher serves blobs from memory by file id.
type memFetcher struct {
	mu    sync.Mutex
	blobs map[string][]byte
	errs  map[string]error
	reads atomic.Int64
	seen  []needle.Chunk
}

func newMemFetcher() *memFetcher {
	return &memFetcher{blobs: map[string][]byte{}, errs: map[string]error{}}
}

// ReadNeedleChecked serves the one copy it has: check runs once.
func (f *memFetcher) ReadNeedleChecked(_ context.Context, c needle.Chunk, check func([]byte) error) ([]byte, error) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, c)
	if err := f.errs[c.FileID]; err != nil {
		return nil, err
	}
	blob, ok := f.blobs[c.FileID]
	if !ok {
		return nil, fmt.Errorf("no blob %s", c.FileID)
	}
	blob = bytes.Clone(blob)
	if err := check(blob); err != nil {
		return nil, err
	}
	return blob, nil
}

// manifest stores the children's manifest blob under fid and returns the
// manifest chunk, spanning its children the way SeaweedFS records it.
func (f *memFetcher) manifest(t testing.TB, fid string, ts int64, children ...*filerpb.FileChunk) *filerpb.FileChunk {
	t.Helper()
	blob, err := proto.Marshal(&filerpb.FileChunkManifest{Chunks: children})
	if err != nil {
		t.Fatalf("marshal manifest %s: %v", fid, err)
	}
	f.mu.Lock()
	f.blobs[fid] = blob
	f.mu.Unlock()
	lo, hi := int64(0), int64(0)
	for i, c := range children {
		if i == 0 || c.Offset < lo {
			lo = c.Offset
		}
		hi = max(hi, c.Offset+int64(c.Size))
	}
	return &filerpb.FileChunk{FileId: fid, Offset: lo, Size: uint64(hi - lo), ModifiedTsNs: ts, IsChunkManifest: true}
}

func TestManifestNested(t *testing.T) {
	f := newMemFetcher()
	// Children written the way SeaweedFS serializes them: Fid set, FileId empty.
	fidChunk := func(key uint64, off int64, size uint64, ts int64) *filerpb.FileChunk {
		return &filerpb.FileChunk{Fid: &filerpb.FileId{VolumeId: 5, FileKey: key, Cookie: 0xc0ffee}, Offset: off, Size: size, ModifiedTsNs: ts}
	}
	inner := f.manifest(t, "9,02000000aa", 1, fidChunk(0x21, 100, 100, 3), fidChunk(0x22, 200, 100, 4))
	outer := f.manifest(t, "9,01000000aa", 1, fidChunk(0x11, 0, 100, 2), inner)
	m, err := Build(context.Background(), []*filerpb.FileChunk{outer, ch("tail", 300, 50, 5)}, f)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	want := "5,1100c0ffee[0,100)@0 5,2100c0ffee[100,200)@0 5,2200c0ffee[200,300)@0 tail[300,350)@0"
	if got := render(m.Intervals()); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := f.reads.Load(); got != 2 {
		t.Errorf("fetches: got %d, want 2 (one per manifest)", got)
	}
}

func TestManifestChildrenKeepTheirOwnTimestamps(t *testing.T) {
	f := newMemFetcher()
	// The manifest's own timestamp is newest, but only its child's counts:
	// the top-level chunk at ts 2 beats the child at ts 1.
	man := f.manifest(t, "m", 100, ch("child", 0, 100, 1))
	m, err := Build(context.Background(), []*filerpb.FileChunk{ch("top", 50, 100, 2), man}, f)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if got, want := render(m.Intervals()), "child[0,50)@0 top[50,150)@0"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestManifestExpandsInPlace(t *testing.T) {
	f := newMemFetcher()
	// Equal timestamps and unparsable ids: list order decides, and the
	// children stand where the manifest stood, before "after".
	man := f.manifest(t, "m", 7, ch("x", 0, 100, 7))
	m, err := Build(context.Background(), []*filerpb.FileChunk{ch("before", 0, 100, 7), man, ch("after", 50, 10, 7)}, f)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if got, want := render(m.Intervals()), "x[0,50)@0 after[50,60)@0 x[60,100)@60"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestManifestErrors(t *testing.T) {
	boom := errors.New("volume server on fire")
	tests := []struct {
		name    string
		setup   func(t *testing.T, f *memFetcher) []*filerpb.FileChunk
		fetcher bool
		is      error
		msg     string
	}{
		{
			name: "malformed blob",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				f.blobs["3,0100000001"] = []byte{0xff, 0xff, 0xff}
				return []*filerpb.FileChunk{{FileId: "3,0100000001", Size: 10, IsChunkManifest: true}}
			},
			fetcher: true,
			is:      ErrMalformedManifest,
			msg:     "resolve manifest 3,0100000001: malformed manifest",
		},
		{
			name: "fetch error is wrapped with the file id",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				f.errs["3,0200000002"] = boom
				return []*filerpb.FileChunk{ch("a", 0, 10, 1), {FileId: "3,0200000002", Size: 10, IsChunkManifest: true}}
			},
			fetcher: true,
			is:      boom,
			msg:     "resolve manifest 3,0200000002: volume server on fire",
		},
		{
			name: "nested fetch error names both manifests",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				f.errs["inner"] = boom
				bad := &filerpb.FileChunk{FileId: "inner", Size: 10, IsChunkManifest: true}
				return []*filerpb.FileChunk{f.manifest(t, "outer", 1, bad)}
			},
			fetcher: true,
			is:      boom,
			msg:     "resolve manifest outer: resolve manifest inner: volume server on fire",
		},
		{
			name: "no fetcher",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				return []*filerpb.FileChunk{{FileId: "m", Size: 10, IsChunkManifest: true}}
			},
			is:  ErrNoFetcher,
			msg: "resolve manifest m:",
		},
		{
			name: "depth limit",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				c := ch("leaf", 0, 10, 1)
				for i := range maxManifestDepth + 1 {
					c = f.manifest(t, fmt.Sprintf("m%d", i), 1, c)
				}
				return []*filerpb.FileChunk{c}
			},
			fetcher: true,
			is:      ErrManifestDepth,
			msg:     "resolve manifest m0: manifests nested deeper than 8",
		},
		{
			name: "cycle",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				self := &filerpb.FileChunk{FileId: "loop", Size: 10, IsChunkManifest: true}
				f.manifest(t, "loop", 1, self)
				return []*filerpb.FileChunk{self}
			},
			fetcher: true,
			is:      ErrManifestCycle,
			msg:     "resolve manifest loop: resolve manifest loop: manifest lists itself",
		},
		{
			name: "manifest without file id",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				return []*filerpb.FileChunk{{Offset: 4, Size: 10, IsChunkManifest: true}}
			},
			fetcher: true,
			msg:     "manifest chunk at offset 4 size 10 has no file id",
		},
		{
			name: "child out of range",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				man := f.manifest(t, "m", 1, ch("huge", math.MaxInt64-5, 10, 1))
				man.Offset, man.Size = 0, 10
				return []*filerpb.FileChunk{man}
			},
			fetcher: true,
			msg:     "resolve manifest m: chunk huge: range offset 9223372036854775802 size 10 outside the file",
		},
		{
			name: "child before the manifest's offset",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				man := f.manifest(t, "m", 1, ch("early", 5, 10, 1))
				man.Offset = 6
				return []*filerpb.FileChunk{man}
			},
			fetcher: true,
			is:      ErrMalformedManifest,
			msg:     "resolve manifest m: malformed manifest: child early at offset 5 starts before the manifest's offset 6",
		},
		{
			name: "child without file id",
			setup: func(t *testing.T, f *memFetcher) []*filerpb.FileChunk {
				return []*filerpb.FileChunk{f.manifest(t, "m", 1, ch("a", 0, 10, 1), &filerpb.FileChunk{Offset: 10, Size: 10})}
			},
			fetcher: true,
			is:      ErrMalformedManifest,
			msg:     "resolve manifest m: malformed manifest: child 1 at offset 10 has no file id",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMemFetcher()
			chunks := tt.setup(t, f)
			var fetcher Fetcher
			if tt.fetcher {
				fetcher = f
			}
			m, err := Build(context.Background(), chunks, fetcher)
			if err == nil {
				t.Fatalf("got map %q, want an error", render(m.Intervals()))
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("got %v, want it to wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}

func TestManifestDepthLimitIsInclusive(t *testing.T) {
	f := newMemFetcher()
	c := ch("leaf", 0, 10, 1)
	for i := range maxManifestDepth {
		c = f.manifest(t, fmt.Sprintf("m%d", i), 1, c)
	}
	m, err := Build(context.Background(), []*filerpb.FileChunk{c}, f)
	if err != nil {
		t.Fatalf("%d levels: got %v, want them resolved", maxManifestDepth, err)
	}
	if got, want := render(m.Intervals()), "leaf[0,10)@0"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestZeroSizeManifestIsNotFetched(t *testing.T) {
	f := newMemFetcher()
	m, err := Build(context.Background(), []*filerpb.FileChunk{ch("a", 0, 10, 1), {FileId: "m", IsChunkManifest: true}}, f)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if got := f.reads.Load(); got != 0 {
		t.Errorf("fetches: got %d, want 0", got)
	}
	if got, want := render(m.Intervals()), "a[0,10)@0"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestManifestFetchGetsTheChunkDescriptor(t *testing.T) {
	f := newMemFetcher()
	man := f.manifest(t, "m", 1, ch("a", 0, 10, 1))
	man.CipherKey = []byte("k")
	man.IsCompressed = true
	man.ETag = "e"
	if _, err := Build(context.Background(), []*filerpb.FileChunk{man}, f); err != nil {
		t.Fatalf("Build: %v", err)
	}
	got := f.seen[0]
	if got.FileID != "m" || string(got.CipherKey) != "k" || !got.Compressed || got.ETag != "e" || got.Size != 10 {
		t.Errorf("fetcher got %+v, want id m, cipher key k, compressed, etag e, size 10", got)
	}
}

func TestManyManifestsConcurrently(t *testing.T) {
	f := newMemFetcher()
	var top []*filerpb.FileChunk
	var want []string
	for i := range 50 {
		var kids []*filerpb.FileChunk
		for j := range 20 {
			off := int64(i*20+j) * 10
			fid := fmt.Sprintf("c%d.%d", i, j)
			kids = append(kids, ch(fid, off, 10, 1))
			want = append(want, fmt.Sprintf("%s[%d,%d)@0", fid, off, off+10))
		}
		top = append(top, f.manifest(t, fmt.Sprintf("m%d", i), 1, kids...))
	}
	m, err := Build(context.Background(), top, f)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if got := render(m.Intervals()); got != strings.Join(want, " ") {
		t.Errorf("got %q, want %q", got, strings.Join(want, " "))
	}
}

func TestBuildHonoursCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := ctxFetcher{}
	_, err := Build(ctx, []*filerpb.FileChunk{{FileId: "m", Size: 10, IsChunkManifest: true}}, f)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

type ctxFetcher struct{}

func (ctxFetcher) ReadNeedleChecked(ctx context.Context, _ needle.Chunk, _ func([]byte) error) ([]byte, error) {
	return nil, ctx.Err()
}

// The volume Reader is the fetcher fs hands Build.
var _ Fetcher = (*volume.Reader)(nil)

// replicaFetcher serves each file id from replicas in order, as
// volume.Reader.ReadNeedleChecked does: a blob that fails the check is the
// replica's failure, and the next replica is read.
type replicaFetcher struct {
	replicas map[string][][]byte
	reads    int
}

func (f *replicaFetcher) ReadNeedleChecked(_ context.Context, c needle.Chunk, check func([]byte) error) ([]byte, error) {
	var errs []error
	for _, blob := range f.replicas[c.FileID] {
		f.reads++
		if err := check(blob); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", err, needle.ErrCorrupt))
			continue
		}
		return blob, nil
	}
	return nil, errors.Join(errs...)
}

// TestManifestBadReplica: a manifest blob that is corrupt on the first
// replica, in ways no checksum may catch, is read from the second.
func TestManifestBadReplica(t *testing.T) {
	kids := []*filerpb.FileChunk{ch("a", 100, 10, 1), ch("b", 110, 10, 1)}
	good, err := proto.Marshal(&filerpb.FileChunkManifest{Chunks: kids})
	if err != nil {
		t.Fatal(err)
	}
	noID, err := proto.Marshal(&filerpb.FileChunkManifest{Chunks: []*filerpb.FileChunk{{Offset: 100, Size: 20}}})
	if err != nil {
		t.Fatal(err)
	}
	early, err := proto.Marshal(&filerpb.FileChunkManifest{Chunks: []*filerpb.FileChunk{ch("a", 0, 120, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		bad  []byte
	}{
		{"does not parse", []byte{0xff, 0xff, 0xff}},
		{"child without file id", noID},
		{"child before the manifest", early},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &replicaFetcher{replicas: map[string][][]byte{"m": {tc.bad, good}}}
			man := &filerpb.FileChunk{FileId: "m", Offset: 100, Size: 20, ModifiedTsNs: 1, IsChunkManifest: true}
			m, err := Build(context.Background(), []*filerpb.FileChunk{man}, f)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if got, want := render(m.Intervals()), "a[100,110)@0 b[110,120)@0"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			if f.reads != 2 {
				t.Errorf("%d replica reads, want 2", f.reads)
			}

			// Bad on every replica: the open fails, saying why.
			f = &replicaFetcher{replicas: map[string][][]byte{"m": {tc.bad, tc.bad}}}
			_, err = Build(context.Background(), []*filerpb.FileChunk{man}, f)
			if !errors.Is(err, ErrMalformedManifest) || !errors.Is(err, needle.ErrCorrupt) {
				t.Errorf("err = %v, want ErrMalformedManifest and needle.ErrCorrupt", err)
			}
		})
	}
}

// TestManifestTruncatedByWeedMount: weed mount truncates by lowering the
// Size of every chunk crossing the new end, a manifest chunk included, so
// its children may reach past its Offset+Size. That is no corruption.
func TestManifestTruncatedByWeedMount(t *testing.T) {
	f := newMemFetcher()
	man := f.manifest(t, "m", 1, ch("a", 0, 100, 1), ch("b", 100, 100, 1))
	man.Size = 150
	m, err := Build(context.Background(), []*filerpb.FileChunk{man}, f)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if got, want := render(m.Intervals()), "a[0,100)@0 b[100,200)@0"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
