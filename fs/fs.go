// Package fs is the FUSE adapter: go-fuse nodes for a read-only tree of
// SeaweedFS filer entries. It is the only importer of go-fuse. Entries come
// from a Meta, bytes from a ChunkReader, the byte-to-chunk mapping from
// chunkmap. Errors become errnos in one place (errno.go). What it decides
// itself is what only the kernel's requests show: a directory's listing
// kept across the kernel's forgetting of its node (listings.go,
// listfeed.go), and a loader walking or shuffling a directory's files,
// whose next files it fetches ahead (prefetch.go, scanlog.go).
//
// Invariant: a read returns exactly the requested length unless it reaches
// end of file; a chunk that delivers fewer bytes than the map says it holds
// is an error (EIO), never zero-filled, because the kernel would silently
// zero-fill a short reply.
//
// Locks: a file's buildMu is taken before its mapMu (a chunk map's build,
// then its publication); no other lock of this package is held while
// another is taken.
package fs

import (
	"context"
	"errors"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weedfuse/weedfuse/chunkmap"
	"github.com/weedfuse/weedfuse/internal/filer"
	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/pagecache"
)

// Meta is what the tree needs of the filer. Calls must be safe for
// concurrent use. A missing entry is an error wrapping io/fs.ErrNotExist;
// a filer that cannot be reached, one wrapping filer.ErrUnavailable. A
// Meta may also tell that no filer is reachable (see filerDown).
type Meta interface {
	LookupEntry(ctx context.Context, dir, name string) (*filerpb.Entry, error)
	// List calls fn, from the calling goroutine, with each of up to limit
	// entries of dir after startFrom (from the first when empty), in name
	// order, as they come; each entry once, however the call ends.
	List(ctx context.Context, dir, startFrom string, limit int, fn func(*filerpb.Entry)) error
	Statistics(ctx context.Context) (*filerpb.StatisticsResponse, error)
}

// ChunkReader reads the logical bytes [off, off+len(dst)) of a chunk; it
// returns fewer only when the chunk ends first. access says how the file
// is being read, which decides how a miss is fetched. Prefetch starts
// fetching a range ahead of a reader without waiting. Safe for concurrent
// use.
type ChunkReader interface {
	ReadChunkAt(ctx context.Context, c needle.Chunk, off int64, dst []byte, access pagecache.Access) (int, error)
	// Prefetch returns the offset in the chunk up to which it started
	// fetches; it stops early when it is out of prefetchers or budget.
	// ahead says where readahead of a chunk held on disk goes.
	Prefetch(c needle.Chunk, off, n int64, ahead pagecache.Ahead) int64
	// KeepsStream reports whether the disk cache keeps what a stream
	// reads at off of a file of size bytes.
	KeepsStream(size, off int64) bool
	// Forget drops the cached bytes of a chunk no file uses any more.
	Forget(c needle.Chunk)
	// FillDisk fetches a chunk whole into the disk cache and waits,
	// evicting the least recently used chunks for room when evict is set;
	// wrote says that this call fetched it, and so that its pages are in
	// the kernel's page cache (false when it was on disk already, or
	// another fill wrote it meanwhile). An error wrapping
	// pagecache.ErrNoRoom means the disk cache has no room without
	// evicting (or there is none), any other that the chunk is not on
	// disk.
	FillDisk(ctx context.Context, c needle.Chunk, evict bool) (wrote bool, err error)
	// OpenWhole opens the disk cache's file of a chunk's logical bytes,
	// exactly c.Size long and checked, for FUSE passthrough, once a write
	// of it under way ends (up to ctx); a small chunk that no cache holds
	// is fetched into the disk cache first. False when the chunk is not
	// held whole on disk. The caller closes the file.
	OpenWhole(ctx context.Context, c needle.Chunk) (*os.File, bool)
}

// Options configure the tree.
type Options struct {
	// Root is the filer directory mounted as the root (weed's -filer.path).
	Root string
	// MetaTTL is how long a node trusts its cached entry before asking the
	// filer again (weed's -cacheMetaTtlSec).
	MetaTTL time.Duration
	// Umask clears permission bits of the root's mode, 0777 &^ Umask, as
	// weed mount's -umask does. Entries show the modes the filer stores:
	// weed mount applies its umask to nothing else it shows (only to what
	// it creates, and a read-only mount creates nothing).
	Umask uint32
	// RootUID and RootGID own the root, as the mount point's owner owns
	// weed mount's root.
	RootUID, RootGID uint32
	// MountTime is the root's mtime, ctime and atime, as weed mount shows
	// its mount time there. Default: when New is called.
	MountTime time.Time
	// IncludeSystemEntries shows the filer's /topics and /etc, which are
	// hidden by default (see systemDirs).
	IncludeSystemEntries bool
	// UIDMap and GIDMap map filer owners to local ones in the attributes
	// shown (weed mount's -map.uid and -map.gid); ids not in a map show
	// as stored.
	UIDMap, GIDMap map[uint32]uint32
	// DisableXAttr answers the first xattr call with ENOSYS, after which
	// the kernel sends none: no FUSE round trips for the security.* and
	// ACL look-ups `ls -l` makes of every file.
	DisableXAttr bool
	// ReadConcurrency bounds the chunk fetches one read request runs in
	// parallel. Default 8.
	ReadConcurrency int
	// ReadaheadMin and ReadaheadMax bound the readahead window of a
	// sequentially read file. Defaults 1 MiB and pagecache.MaxReadahead.
	ReadaheadMin, ReadaheadMax int64
	// Passthrough opens files that are one chunk held whole in the disk
	// cache with FUSE passthrough (see passthrough.go), and so answers
	// every OPEN; without it the mount runs with no_open.
	Passthrough bool
	// Ops, when set, is told of every FUSE operation the tree answers
	// (see observe.go).
	Ops OpObserver
	// MaxCachedListing is weed mount's -cacheDirMaxEntries: a directory
	// with more entries than this keeps no listing (each listing streams
	// from the filer, and each name is looked up there); it also bounds
	// the entries of all listings kept for forgotten directories
	// (listingStore). Default 100,000, weed mount's (math.MaxInt keeps
	// every listing, as -cacheDirMaxEntries=0 does).
	MaxCachedListing int
	// ForgottenListingTTL is how long the listing of a directory the
	// kernel forgot is kept for its next node (weed mount's
	// -dirIdleEvictSec bounds how long it keeps idle directories); at
	// most, and by default, MetaTTL, after which it could serve nothing.
	ForgottenListingTTL time.Duration
	// Quota caps the size df shows, in bytes, as weed mount's
	// -collectionQuotaMB does (0: the cluster's size).
	Quota uint64
	// LogicalSizes has df show data sizes, without replicas and EC parity,
	// as weed mount's -df.logical does (where the filer sends them).
	LogicalSizes bool
}

// FS holds what all nodes share.
type FS struct {
	meta      Meta
	chunks    ChunkReader
	manifests chunkmap.Fetcher
	opts      Options
	root      *dir
	inodes    *inodeTable
	listings  *listingStore
	// nodes counts the nodes made that the kernel has not forgotten.
	nodes atomic.Int64
	// watched is true while a metadata subscription keeps caches fresh;
	// watchLagNs is how old the last event was when it arrived.
	watched atomic.Bool
	// passthrough is set while files are opened with FUSE passthrough
	// (Options.Passthrough, where the kernel and our privileges allow);
	// see passthrough.go.
	passthrough atomic.Bool
	watchLagNs  atomic.Int64
	// linkEvents counts metadata events about hard links, which change a
	// link's node whichever directory they name (see dir.child).
	linkEvents atomic.Uint64

	// bg is the context of background work (metadata events, dataset
	// prefetch); Close cancels it and waits on bgWG.
	bg       context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
	// scans remembers the directories scanned whole (prefetch.go).
	scans scanLog

	statMu sync.Mutex
	// stat caches the filer's statistics for statfs, which df calls often.
	stat     *filerpb.StatisticsResponse
	statTime time.Time
}

// New returns the file system; mount its Root. Chunk bytes come from
// chunks; manifest blobs, read whole, from manifests.
func New(meta Meta, chunks ChunkReader, manifests chunkmap.Fetcher, opts Options) *FS {
	if opts.Root == "" {
		opts.Root = "/"
	}
	opts.Root = path.Clean("/" + opts.Root)
	if opts.ReadConcurrency <= 0 {
		opts.ReadConcurrency = 8
	}
	if opts.ReadaheadMin <= 0 {
		opts.ReadaheadMin = 1 << 20
	}
	if opts.ReadaheadMax <= 0 {
		opts.ReadaheadMax = pagecache.MaxReadahead
	}
	if opts.MountTime.IsZero() {
		opts.MountTime = time.Now()
	}
	if opts.MaxCachedListing <= 0 {
		opts.MaxCachedListing = defaultMaxCachedListing
	}
	if opts.ForgottenListingTTL <= 0 || opts.ForgottenListingTTL > opts.MetaTTL {
		opts.ForgottenListingTTL = opts.MetaTTL
	}
	f := &FS{meta: meta, chunks: chunks, manifests: manifests, opts: opts, inodes: newInodeTable(opts.Root), listings: newListingStore(opts.MaxCachedListing, opts.ForgottenListingTTL)}
	f.bg, f.bgCancel = context.WithCancel(context.Background())
	return f
}

// Stats are what the tree tells of its metadata subscription.
type Stats struct {
	// Watched is true while the subscription keeps caches fresh.
	Watched bool
	// LagSeconds is how old the last event was when it arrived.
	LagSeconds float64
}

// Stats returns the subscription's state. Safe for concurrent use.
func (f *FS) Stats() Stats {
	return Stats{Watched: f.watched.Load(), LagSeconds: float64(f.watchLagNs.Load()) / 1e9}
}

// Close stops the background work (Watch, dataset prefetch) and waits for it.
func (f *FS) Close() {
	f.bgCancel()
	f.bgWG.Wait()
	errLog.Flush()
}

// Root returns the root directory node. rootEntry may be nil when the root
// is the filer's "/", which has no entry of its own.
func (f *FS) Root(rootEntry *filerpb.Entry) gofs.InodeEmbedder {
	d := &dir{}
	d.init(f, f.opts.Root, f.opts.Root, rootEntry)
	f.root = d
	return d
}

// MetadataBytes is about how much of the Go heap the nodes the kernel
// holds take: metadata, which grows with what the kernel holds, where
// request buffers come and go. Safe for concurrent use.
func (f *FS) MetadataBytes() int64 { return f.nodes.Load() * nodeCost }

// dropPages tells the kernel to forget a file's cached pages, from a
// goroutine of the background group: a handler must never wait on a kernel
// notification, since the kernel may hold pages locked until that very
// handler answers.
func (f *FS) dropPages(ino *gofs.Inode) {
	f.bgWG.Add(1)
	go func() {
		defer f.bgWG.Done()
		ino.NotifyContent(0, 0)
	}()
}

// filerDown tells whether the filer is known to be unreachable. Cached
// entries and listings are then served however old, without waiting for
// the filer: reads of what the mount has seen go on through an outage.
func (f *FS) filerDown() bool {
	m, ok := f.meta.(interface{ Up() bool })
	return ok && !m.Up()
}

// unavailable tells whether err says that no filer could be reached.
func unavailable(err error) bool { return errors.Is(err, filer.ErrUnavailable) }

// The filer stores modes as Go's os.FileMode bits.
const (
	goModeDir        = uint32(os.ModeDir)
	goModeSymlink    = uint32(os.ModeSymlink)
	goModeDevice     = uint32(os.ModeDevice)
	goModeNamedPipe  = uint32(os.ModeNamedPipe)
	goModeSocket     = uint32(os.ModeSocket)
	goModeCharDevice = uint32(os.ModeCharDevice)
)

// sysMode converts an entry's mode to a syscall mode (type and permissions).
// The permission and special bits are the stored mode's low 12 bits, as
// weed mount shows them: its chmod stores S_ISUID, S_ISGID and S_ISVTX
// there. Go's os.ModeSetuid, ModeSetgid and ModeSticky bits, which other
// writers may store, show as nothing, as on weed mount: a read-only mount
// must not make a binary setuid that weed mount serves plain.
func (f *FS) sysMode(e *filerpb.Entry) uint32 {
	m := e.GetAttributes().GetFileMode()
	perm := m & 0o7777
	switch {
	case e.GetIsDirectory() || m&goModeDir != 0:
		return syscall.S_IFDIR | perm
	case m&goModeSymlink != 0:
		return syscall.S_IFLNK | perm
	case m&goModeNamedPipe != 0:
		return syscall.S_IFIFO | perm
	case m&goModeSocket != 0:
		return syscall.S_IFSOCK | perm
	case m&goModeDevice != 0 && m&goModeCharDevice != 0:
		return syscall.S_IFCHR | perm
	case m&goModeDevice != 0:
		return syscall.S_IFBLK | perm
	}
	return syscall.S_IFREG | perm
}

// entryExpired reports whether e's TTL (-ttl of its writer) has passed
// at now: the filer then answers for it as for a deleted entry, and
// removes it, with no metadata event, so a cached entry or listing must
// stop serving it by itself, as weed mount's metadata cache does. The TTL
// counts in seconds from the entry's creation, as the filer counts it
// (weed mount's cache adds it as nanoseconds, which hides such an entry
// as soon as it is made). An object that an S3 lifecycle rule expires
// (s3ExpiresKey) is left to the filer, whose rule for it also depends on
// the bucket's versioning: it is never hidden here. A zero now stands for
// the time now, read only for an entry with a TTL (a listing asks for
// every entry).
func entryExpired(e *filerpb.Entry, now time.Time) bool {
	a := e.GetAttributes()
	ttl := a.GetTtlSec()
	if ttl <= 0 {
		return false
	}
	if _, s3 := e.GetExtended()[s3ExpiresKey]; s3 {
		return false
	}
	if now.IsZero() {
		now = time.Now()
	}
	return !now.Before(time.Unix(a.GetCrtime()+int64(ttl), 0))
}

// s3ExpiresKey marks, in an entry's extended attributes, an object whose
// TTL an S3 lifecycle rule set (SeaweedFS's filer ages those from their
// mtime, and not at all in a versioned bucket).
const s3ExpiresKey = "X-Seaweedfs-Expires-S3"

// fileSize is the larger of the recorded size, the chunks' extent and the
// inline content, as the filer itself computes it.
func fileSize(e *filerpb.Entry) uint64 {
	size := e.GetAttributes().GetFileSize()
	for _, c := range e.GetChunks() {
		if end := uint64(c.GetOffset()) + c.GetSize(); c.GetOffset() >= 0 && end > size {
			size = end
		}
	}
	if n := uint64(len(e.GetContent())); n > size {
		size = n
	}
	return size
}

// fillAttr fills out from entry e of the node at path p, numbered ino.
func (f *FS) fillAttr(ino uint64, p string, e *filerpb.Entry, out *fuse.Attr) {
	out.Ino = ino
	if p == f.opts.Root {
		f.rootAttr(out)
		return
	}
	a := e.GetAttributes()
	out.Mode = f.sysMode(e)
	out.Size = fileSize(e)
	if out.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		out.Size = uint64(len(a.GetSymlinkTarget()))
	}
	if out.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		out.Size = 4096
	}
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 1 << 20
	out.Nlink = 1
	if out.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		out.Nlink = 2
	}
	if n := e.GetHardLinkCounter(); n > 1 {
		out.Nlink = uint32(n)
	}
	out.Uid, out.Gid = mapID(f.opts.UIDMap, a.GetUid()), mapID(f.opts.GIDMap, a.GetGid())
	out.Rdev = a.GetRdev()
	mtime := uint64(max(a.GetMtime(), 0))
	out.Mtime, out.Atime = mtime, mtime
	out.Ctime = uint64(max(a.GetCrtime(), 0))
	if out.Ctime == 0 {
		out.Ctime = mtime
	}
}

// rootAttr fills the root's attributes as weed mount shows them, whatever
// the filer holds for a -filer.path: the mount point's owner, 0777 less the
// umask, the mount time.
func (f *FS) rootAttr(out *fuse.Attr) {
	out.Ino = rootIno
	out.Mode = syscall.S_IFDIR | 0o777&^f.opts.Umask
	out.Nlink = 2
	out.Size = 4096
	out.Blocks = 8
	out.Blksize = 1 << 20
	out.Uid, out.Gid = f.opts.RootUID, f.opts.RootGID
	t := uint64(f.opts.MountTime.Unix())
	out.Mtime, out.Atime, out.Ctime = t, t, t
}

// mapID maps a filer owner to the local one, as weed mount's -map.uid and
// -map.gid do; ids not in m show as stored.
func mapID(m map[uint32]uint32, id uint32) uint32 {
	if local, ok := m[id]; ok {
		return local
	}
	return id
}

// child returns the inode for entry e at filer path p in directory parent:
// the node that holds the entry's inode number, refreshed with e, or a new
// one (see inodeTable).
func (f *FS) child(ctx context.Context, parent *gofs.Inode, p string, e *filerpb.Entry) *gofs.Inode {
	key := inodeKey(p, e)
	typ := f.sysMode(e) & syscall.S_IFMT
	emb, made := f.inodes.nodeFor(key, typ, func(ino uint64) gofs.InodeEmbedder {
		return f.newNode(ctx, parent, p, key, ino, e)
	})
	if !made {
		type refresher interface {
			setEntry(*filerpb.Entry) *filerpb.Entry
			foundAt(string)
		}
		if r, ok := emb.(refresher); ok {
			r.setEntry(e)
			if key != p { // a hard link: the name it was found by
				r.foundAt(p)
			}
		}
	}
	return emb.EmbeddedInode()
}

// newNode makes the node, numbered ino, for entry e at path p in
// directory parent.
func (f *FS) newNode(ctx context.Context, parent *gofs.Inode, p, key string, ino uint64, e *filerpb.Entry) gofs.InodeEmbedder {
	mode := f.sysMode(e)
	id := gofs.StableAttr{Mode: mode & syscall.S_IFMT, Ino: ino}
	var emb gofs.InodeEmbedder
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		d := &dir{}
		d.initDir(f, p, key, e)
		emb = d
	case syscall.S_IFLNK:
		l := &symlink{}
		l.init(f, p, key, e)
		emb = l
	default:
		fl := &file{}
		fl.init(f, p, key, e)
		fl.parent, _ = parent.Operations().(*dir)
		emb = fl
	}
	parent.NewInode(ctx, emb, id)
	f.nodes.Add(1)
	return emb
}
