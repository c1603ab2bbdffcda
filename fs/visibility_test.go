package fs

import (
	"context"
	iofs "io/fs"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle"
)

// filerMap is a filer held in memory, directory by directory; onLookup,
// when set, runs inside each LookupEntry (an event arriving mid-RPC).
type filerMap struct {
	Meta
	mu       sync.Mutex
	dirs     map[string]map[string]*filerpb.Entry
	onLookup func()
}

func newFilerMap() *filerMap { return &filerMap{dirs: map[string]map[string]*filerpb.Entry{}} }

func (m *filerMap) put(dir string, e *filerpb.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dirs[dir] == nil {
		m.dirs[dir] = map[string]*filerpb.Entry{}
	}
	m.dirs[dir][e.Name] = e
}

func (m *filerMap) LookupEntry(ctx context.Context, dir, name string) (*filerpb.Entry, error) {
	m.mu.Lock()
	e, ok := m.dirs[dir][name]
	hook := m.onLookup
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
	if !ok {
		return nil, iofs.ErrNotExist
	}
	return e, nil
}

func (m *filerMap) List(ctx context.Context, dir, after string, limit int, fn func(*filerpb.Entry)) error {
	m.mu.Lock()
	var l []*filerpb.Entry
	for _, e := range m.dirs[dir] {
		if e.Name > after {
			l = append(l, e)
		}
	}
	m.mu.Unlock()
	sort.Slice(l, func(i, j int) bool { return l[i].Name < l[j].Name })
	for i, e := range l {
		if i == limit {
			break
		}
		fn(e)
	}
	return nil
}

// forgetful is a ChunkReader that only forgets.
type forgetful struct{ ChunkReader }

func (forgetful) Forget(needle.Chunk) {}

func linkEntry(name, fid string) *filerpb.Entry {
	return &filerpb.Entry{Name: name, HardLinkId: []byte("L"), HardLinkCounter: 2,
		Attributes: &filerpb.FuseAttributes{FileMode: 0o644, FileSize: 10},
		Chunks:     []*filerpb.FileChunk{{FileId: fid, Size: 10}}}
}

func dirNamed(name string) *filerpb.Entry {
	return &filerpb.Entry{Name: name, IsDirectory: true, Attributes: &filerpb.FuseAttributes{FileMode: 0o755 | uint32(goModeDir)}}
}

// mounted is a watched file system over meta with go-fuse's bridge, for
// look-ups by node id.
func mounted(t *testing.T, meta Meta) (*FS, fuse.RawFileSystem) {
	fsys := New(meta, forgetful{}, nil, Options{MetaTTL: time.Hour})
	t.Cleanup(fsys.Close)
	fsys.watched.Store(true)
	return fsys, gofs.NewNodeFS(fsys.Root(nil), &gofs.Options{})
}

func lookupID(t *testing.T, raw fuse.RawFileSystem, parent uint64, name string) uint64 {
	t.Helper()
	var out fuse.EntryOut
	require.Equal(t, fuse.OK, raw.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out), "lookup %s", name)
	return out.NodeId
}

func listAll(t *testing.T, d *dir) []string {
	t.Helper()
	s := newDirStream(d)
	defer s.Releasedir(context.Background(), 0)
	var got []string
	for {
		e, errno := s.Readdirent(context.Background())
		require.Zero(t, errno)
		if e == nil {
			return got
		}
		got = append(got, e.Name)
	}
}

func chunkOf(t *testing.T, n interface {
	cached() (*filerpb.Entry, bool)
}) string {
	e, _ := n.cached()
	require.NotNil(t, e)
	return e.GetChunks()[0].GetFileId()
}

// linkedPair is a watched file system over a filer where /a/f and /b/g
// are one hard link, with chunk 1,01.
func linkedPair(t *testing.T) (*filerMap, *FS, fuse.RawFileSystem) {
	meta := newFilerMap()
	meta.put("/", dirNamed("a"))
	meta.put("/", dirNamed("b"))
	meta.put("/a", linkEntry("f", "1,01"))
	meta.put("/b", linkEntry("g", "1,01"))
	fsys, raw := mounted(t, meta)
	return meta, fsys, raw
}

// changeLink replaces the link's chunk with 2,02 on the filer, and applies
// the filer's one event for it, which names /a/f.
func changeLink(t *testing.T, meta *filerMap, fsys *FS) {
	meta.put("/a", linkEntry("f", "2,02"))
	meta.put("/b", linkEntry("g", "2,02"))
	require.NoError(t, fsys.apply(context.Background(), &filerpb.SubscribeMetadataResponse{Directory: "/a",
		EventNotification: &filerpb.EventNotification{OldEntry: linkEntry("f", "1,01"), NewEntry: linkEntry("f", "2,02")}},
		make(chan func(), 16)))
}

// TestHardLinkAcrossDirectories: /a/f and /b/g are one hard link. Its
// bytes change through /a/f, and the filer's event names /a alone: the
// node the kernel knows by /b/g only takes the new entry, and a kept
// listing of /b, which still holds the old one, never hands it back.
func TestHardLinkAcrossDirectories(t *testing.T) {
	meta, fsys, raw := linkedPair(t)
	lookupID(t, raw, 1, "a")
	bID := lookupID(t, raw, 1, "b")
	listAll(t, fsys.inodeAt("/b").Operations().(*dir)) // keeps /b's listing
	lookupID(t, raw, bID, "g")
	n := fsys.inodeAt("/b/g").Operations().(*file)

	changeLink(t, meta, fsys)
	assert.Equal(t, "2,02", chunkOf(t, n), "the event reaches the node by its link")

	// The kernel forgets the name /b/g and looks it up again: the kept
	// listing of /b is current (no event named /b), but not for a link.
	fsys.inodeAt("/b").RmChild("g")
	lookupID(t, raw, bID, "g")
	assert.Equal(t, "2,02", chunkOf(t, n))
	// READDIRPLUS from that listing does not hand the node its old entry.
	d := fsys.inodeAt("/b").Operations().(*dir)
	s := newDirStream(d)
	defer s.Releasedir(context.Background(), 0)
	require.True(t, s.kept)
	for {
		e, errno := s.Readdirent(context.Background())
		require.Zero(t, errno)
		if e == nil {
			break
		}
		if e.Name == "g" {
			_, errno := s.Lookup(context.Background(), "g", &fuse.EntryOut{})
			require.Zero(t, errno)
		}
	}
	assert.Equal(t, "2,02", chunkOf(t, n))
}

// TestExpiredEntryHidden: an entry past its TTL, which the filer drops
// with no event, is neither found in a current listing nor listed, and a
// node holding it asks the filer again.
func TestExpiredEntryHidden(t *testing.T) {
	now := time.Now().Unix()
	ttl := func(name string, age int64) *filerpb.Entry {
		return &filerpb.Entry{Name: name, Attributes: &filerpb.FuseAttributes{FileMode: 0o644, Crtime: now - age, TtlSec: 5}}
	}
	meta := newFilerMap()
	meta.put("/", dirNamed("d"))
	meta.put("/d", ttl("old", 10))
	meta.put("/d", ttl("new", 1))
	fsys, raw := mounted(t, meta)
	dID := lookupID(t, raw, 1, "d")
	d := fsys.inodeAt("/d").Operations().(*dir)
	assert.Equal(t, []string{".", "..", "new"}, listAll(t, d))
	_, ok := d.cachedListing()
	require.True(t, ok)
	_, errno := d.lookup(context.Background(), "old", &fuse.EntryOut{})
	assert.Equal(t, syscall.ENOENT, errno)
	lookupID(t, raw, dID, "new")

	n := fsys.inodeAt("/d/new").Operations().(*file)
	_, fresh := n.cached()
	assert.True(t, fresh)
	n.setEntry(ttl("new", 6))
	_, fresh = n.cached()
	assert.False(t, fresh, "an expired entry is not fresh")

	assert.False(t, entryExpired(&filerpb.Entry{Attributes: &filerpb.FuseAttributes{Crtime: 1}}, time.Now()), "no TTL")
	assert.True(t, entryExpired(ttl("x", 5), time.Unix(now, 0)), "at its TTL")
	assert.False(t, entryExpired(ttl("x", 4), time.Unix(now, 0)))
}

// TestLookupRacingEvent: an event in the directory that arrives while a
// look-up's RPC is under way may be newer than the entry the RPC returns;
// the node then asks the filer again at its next use instead of keeping
// that entry as fresh.
func TestLookupRacingEvent(t *testing.T) {
	meta := newFilerMap()
	meta.put("/", dirNamed("d"))
	meta.put("/d", &filerpb.Entry{Name: "f", Attributes: &filerpb.FuseAttributes{FileMode: 0o644}})
	fsys, raw := mounted(t, meta)
	dID := lookupID(t, raw, 1, "d")
	lookupID(t, raw, dID, "f")
	_, fresh := fsys.inodeAt("/d/f").Operations().(*file).cached()
	assert.True(t, fresh)

	meta.onLookup = func() { fsys.dirChanged("/d") }
	fsys.inodeAt("/d").RmChild("f")
	var out fuse.EntryOut
	ch, errno := fsys.inodeAt("/d").Operations().(*dir).lookup(context.Background(), "f", &out)
	require.Zero(t, errno)
	_, fresh = ch.Operations().(*file).cached()
	assert.False(t, fresh)
	assert.Zero(t, out.EntryValid, "the kernel asks again")
	_ = dID
}

// TestLinkEventDuringLookup: an event about a hard link, through the
// directory of another of its names, that arrives while a look-up of the
// link reads its entry: the node does not keep the older entry as fresh,
// and the kernel is told to ask again.
func TestLinkEventDuringLookup(t *testing.T) {
	meta, fsys, raw := linkedPair(t)
	aID := lookupID(t, raw, 1, "a")
	lookupID(t, raw, 1, "b")
	lookupID(t, raw, aID, "f")
	n := fsys.inodeAt("/a/f").Operations().(*file)
	meta.onLookup = func() {
		meta.onLookup = nil
		changeLink(t, meta, fsys)
	}
	var out fuse.EntryOut
	_, errno := fsys.inodeAt("/b").Operations().(*dir).lookup(context.Background(), "g", &out)
	require.Zero(t, errno)
	e, fresh := n.cached()
	assert.False(t, fresh && e.GetChunks()[0].GetFileId() == "1,01", "the older entry kept as fresh")
	assert.Zero(t, out.EntryValid)
	assert.Zero(t, out.AttrValid)
}

// TestS3LifecycleEntryLeftToFiler: an object whose TTL an S3 lifecycle
// rule set is aged by the filer from its mtime (and not at all in a
// versioned bucket): the mount does not hide it by its creation time.
func TestS3LifecycleEntryLeftToFiler(t *testing.T) {
	now := time.Now().Unix()
	e := &filerpb.Entry{Name: "obj", Extended: map[string][]byte{s3ExpiresKey: []byte("true")},
		Attributes: &filerpb.FuseAttributes{FileMode: 0o644, Crtime: now - 3600, Mtime: now - 10, TtlSec: 60}}
	assert.False(t, entryExpired(e, time.Now()))
	meta := newFilerMap()
	meta.put("/", dirNamed("d"))
	meta.put("/d", e)
	fsys, raw := mounted(t, meta)
	lookupID(t, raw, 1, "d")
	assert.Equal(t, []string{".", "..", "obj"}, listAll(t, fsys.inodeAt("/d").Operations().(*dir)))
}

// TestListingAfterStreamBreak: once the metadata stream broke, a listing
// from before it no longer answers look-ups (its missed events are
// replayed only after the stream is back), but still stands in for a
// filer that went away, on its node and after the node was forgotten.
func TestListingAfterStreamBreak(t *testing.T) {
	d := testDir(t, &streamMeta{}, Options{MetaTTL: time.Hour}, true)
	d.keepListing(entries("a", "b"), d.fsys.listings.gen(d.path))
	_, ok := d.cachedListing()
	require.True(t, ok)
	d.fsys.listings.broke()
	_, ok = d.cachedListing()
	assert.False(t, ok, "current after the stream broke")
	l, _ := d.staleListing()
	assert.Len(t, l, 2, "for a filer that went away")

	d.OnForget()
	next := &dir{}
	next.initDir(d.fsys, d.path, d.path, d.entry)
	_, ok = next.cachedListing()
	assert.False(t, ok)
	l, _ = next.staleListing()
	assert.Len(t, l, 2)

	// A listing asked for before the break is not kept after it.
	gen := d.fsys.listings.gen(d.path)
	d.fsys.listings.broke()
	next.keepListing(entries("c"), gen)
	l, _ = next.staleListing()
	assert.Len(t, l, 2)
}
