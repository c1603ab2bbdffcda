// Package fs is the FUSE adapter: go-fuse nodes for a read-only tree of
// SeaweedFS filer entries. It is the only importer of go-fuse. It keeps no
// policy of its own: entries come from a Meta, bytes from a ChunkReader, the
// byte-to-chunk mapping from chunkmap. Errors become errnos in one place
// (errno.go).
//
// Invariant: a read returns exactly the requested length unless it reaches
// end of file; a chunk that delivers fewer bytes than the map says it holds
// is an error (EIO), never zero-filled, because the kernel would silently
// zero-fill a short reply.
package fs

import (
	"context"
	"hash/fnv"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weedfuse/weedfuse/chunkmap"
	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/volume"
	"github.com/weedfuse/weedfuse/pagecache"
)

// Meta is what the tree needs of the filer. Calls must be safe for
// concurrent use. A missing entry is an error wrapping io/fs.ErrNotExist.
type Meta interface {
	LookupEntry(ctx context.Context, dir, name string) (*filerpb.Entry, error)
	ListPage(ctx context.Context, dir, startFrom string, limit int) ([]*filerpb.Entry, error)
	Statistics(ctx context.Context) (*filerpb.StatisticsResponse, error)
}

// ChunkReader reads the logical bytes [off, off+len(dst)) of a chunk; it
// returns fewer only when the chunk ends first. access says how the file
// is being read, which decides how a miss is fetched. Prefetch starts
// fetching a range ahead of a reader without waiting. Safe for concurrent
// use.
type ChunkReader interface {
	ReadChunkAt(ctx context.Context, c volume.Chunk, off int64, dst []byte, access pagecache.Access) (int, error)
	// Prefetch returns the offset in the chunk up to which it started
	// fetches; it stops early when it is out of prefetchers or budget.
	Prefetch(c volume.Chunk, off, n int64) int64
	// Forget drops the cached bytes of a chunk no file uses any more.
	Forget(c volume.Chunk)
	// FillDisk fetches a chunk whole into the disk cache and waits; false
	// means the disk cache has no room (or there is none).
	FillDisk(ctx context.Context, c volume.Chunk) bool
}

// Options configure the tree.
type Options struct {
	// Root is the filer directory mounted as the root (weed's -filer.path).
	Root string
	// MetaTTL is how long a node trusts its cached entry before asking the
	// filer again (weed's -cacheMetaTtlSec).
	MetaTTL time.Duration
	// Umask clears permission bits of every reported mode.
	Umask uint32
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
	// Ops, when set, is told of every FUSE operation the tree answers
	// (see observe.go).
	Ops OpObserver
}

// FS holds what all nodes share.
type FS struct {
	meta      Meta
	chunks    ChunkReader
	manifests chunkmap.Fetcher
	opts      Options
	root      *dir
	// watched is true while a metadata subscription keeps caches fresh.
	watched atomic.Bool

	// bg is the context of background work (metadata events, dataset
	// prefetch); Close cancels it and waits on bgWG.
	bg       context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup

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
	f := &FS{meta: meta, chunks: chunks, manifests: manifests, opts: opts}
	f.bg, f.bgCancel = context.WithCancel(context.Background())
	return f
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
	d.init(f, f.opts.Root, rootEntry)
	f.root = d
	return d
}

// node is what files, directories and symlinks share: the filer path and
// the last entry seen for it.
type node struct {
	gofs.Inode
	fsys *FS
	path string

	mu sync.Mutex
	// entry is the last entry seen; fetched is when. entry may be nil for
	// the filer's root directory.
	entry   *filerpb.Entry
	fetched time.Time
}

func (n *node) init(f *FS, p string, e *filerpb.Entry) {
	n.fsys, n.path, n.entry, n.fetched = f, p, e, time.Now()
}

// cached returns the node's entry and whether it is still fresh.
func (n *node) cached() (*filerpb.Entry, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.entry, time.Since(n.fetched) < n.fsys.metaTTL()
}

// expire makes the next use of the node ask the filer again: its entry was
// deleted or renamed away, and the inode may linger in the tree.
func (n *node) expire() {
	n.mu.Lock()
	n.fetched = time.Time{}
	n.mu.Unlock()
}

// setEntry replaces the node's entry. A file whose bytes changed has its
// pages dropped from the kernel, which keeps them across opens (see
// file.Open), and the entry it replaced is returned; otherwise nil.
func (n *node) setEntry(e *filerpb.Entry) (changed *filerpb.Entry) {
	n.mu.Lock()
	prev := n.entry
	n.entry, n.fetched = e, time.Now()
	n.mu.Unlock()
	if _, ok := n.Operations().(*file); ok && prev != nil && prev != e && fingerprint(prev) != fingerprint(e) {
		n.fsys.dropPages(&n.Inode)
		return prev
	}
	return nil
}

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

// current returns the node's entry, asking the filer when the cached one
// is no longer fresh.
func (n *node) current(ctx context.Context) (*filerpb.Entry, error) {
	if e, fresh := n.cached(); fresh || n.path == "/" {
		return e, nil
	}
	dir, name := path.Split(n.path)
	e, err := n.fsys.meta.LookupEntry(ctx, path.Clean(dir), name)
	if err != nil {
		return nil, err
	}
	n.setEntry(e)
	return e, nil
}

// getattrEntry answers from the node's entry, asking the filer when it is stale.
func (n *node) getattrEntry(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	e, err := n.current(ctx)
	if err != nil {
		return toErrno("getattr "+n.path, err)
	}
	n.fsys.fillAttr(n.path, e, &out.Attr)
	out.SetTimeout(n.fsys.metaTTL())
	return 0
}

// inodeNumber derives a stable inode number from the path, so that a file
// keeps its number across lookups and remounts. 1 is the root's.
func inodeNumber(p string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	ino := h.Sum64()
	if ino <= 1 {
		ino += 2
	}
	return ino
}

// The filer stores modes as Go's os.FileMode bits.
const (
	goModeDir        = uint32(os.ModeDir)
	goModeSymlink    = uint32(os.ModeSymlink)
	goModeDevice     = uint32(os.ModeDevice)
	goModeNamedPipe  = uint32(os.ModeNamedPipe)
	goModeSocket     = uint32(os.ModeSocket)
	goModeSetuid     = uint32(os.ModeSetuid)
	goModeSetgid     = uint32(os.ModeSetgid)
	goModeCharDevice = uint32(os.ModeCharDevice)
	goModeSticky     = uint32(os.ModeSticky)
)

// sysMode converts an entry's mode to a syscall mode (type and permissions).
func (f *FS) sysMode(e *filerpb.Entry) uint32 {
	m := e.GetAttributes().GetFileMode()
	perm := m & 0o777 &^ f.opts.Umask
	if m&goModeSetuid != 0 {
		perm |= syscall.S_ISUID
	}
	if m&goModeSetgid != 0 {
		perm |= syscall.S_ISGID
	}
	if m&goModeSticky != 0 {
		perm |= syscall.S_ISVTX
	}
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

// fillAttr fills out from entry e of the node at path p.
func (f *FS) fillAttr(p string, e *filerpb.Entry, out *fuse.Attr) {
	out.Ino = inodeNumber(p)
	if p == f.opts.Root {
		out.Ino = 1
	}
	if e == nil { // the filer's "/" has no entry
		out.Mode = syscall.S_IFDIR | 0o755&^f.opts.Umask
		out.Nlink = 2
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
	out.Uid, out.Gid = a.GetUid(), a.GetGid()
	out.Rdev = a.GetRdev()
	mtime := uint64(max(a.GetMtime(), 0))
	out.Mtime, out.Atime = mtime, mtime
	out.Ctime = uint64(max(a.GetCrtime(), 0))
	if out.Ctime == 0 {
		out.Ctime = mtime
	}
}

// newChild makes the inode for entry e in directory parent.
func (f *FS) newChild(ctx context.Context, parent *gofs.Inode, p string, e *filerpb.Entry) *gofs.Inode {
	mode := f.sysMode(e)
	id := gofs.StableAttr{Mode: mode & syscall.S_IFMT, Ino: inodeNumber(p)}
	var emb gofs.InodeEmbedder
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		d := &dir{}
		d.init(f, p, e)
		emb = d
	case syscall.S_IFLNK:
		l := &symlink{}
		l.init(f, p, e)
		emb = l
	default:
		fl := &file{ra: pagecache.NewReadahead(f.opts.ReadaheadMin, f.opts.ReadaheadMax)}
		fl.init(f, p, e)
		fl.parent, _ = parent.Operations().(*dir)
		emb = fl
	}
	return parent.NewInode(ctx, emb, id)
}

// refresh updates an existing child inode's cached entry from a listing or
// look-up, so that getattr and xattrs answer without another RPC.
func refresh(ch *gofs.Inode, e *filerpb.Entry) bool {
	type entrySetter interface {
		setEntry(*filerpb.Entry) *filerpb.Entry
	}
	if s, ok := ch.Operations().(entrySetter); ok {
		s.setEntry(e)
		return true
	}
	return false
}
