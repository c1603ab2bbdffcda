package fs

import (
	"context"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weedfuse/weedfuse/chunkmap"
	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/pagecache"
)

// FUSE passthrough (Linux 6.9 and later): a file that is one chunk held
// whole in the disk cache (or one small chunk, which its open fetches into
// it) is opened with the cache's file as its backing
// file, and the kernel then reads it as it reads a local file, with no
// READ request to the mount. The disk tier checks every block of the file
// when it is opened, unless the file is unchanged since it last passed or
// was written (pagecache.Cache.OpenWhole): that is the one check the bytes
// get, since the kernel's reads bypass the mount.
//
// Two rules of the kernel and of go-fuse shape the open path:
//   - An inode is in one I/O mode at a time: while one open of it is
//     cached (page cache, reads to the mount), an open with passthrough
//     fails with EIO, and the other way round (fs/fuse/iomode.c). Opens
//     with FOPEN_DIRECT_IO and no passthrough are in neither mode.
//   - go-fuse registers one backing file per inode and hands it to every
//     open with a passthrough-capable handle while any such open lasts,
//     whatever the later handles offer.
//
// So each file counts its open handles of each mode (passthrough.cached,
// .through). A file with cached opens is opened cached. A file with
// passthrough opens is opened through the same backing file, even if its
// chunk changed meanwhile: the kernel allows nothing else (an open
// without passthrough fails), so such opens read the bytes the file had
// when its first open found it, whole and verified, until the last of
// them closes (the README says so). To keep that rare, only files that
// have not changed for passthroughMinAge get a backing file: dataset
// files, written once, qualify; a file being written does not. Counts
// rise in open and fall in the handles' Release. go-fuse drops a backing
// reference at every release, of any handle; a cached handle released
// while a backing file is registered can only unregister it early, which
// costs the next passthrough open a new registration and nothing else.

// passthroughMinAge is how long a file must have been unchanged (by its
// mtime) before it is opened with passthrough.
const passthroughMinAge = 10 * time.Second

// passthrough is a file's open handles: how many are cached and how many
// read through a backing file, and the chunk key of the latter.
type passthrough struct {
	mu      sync.Mutex
	cached  int
	through int
	// backing is a descriptor of the backing file of the open
	// passthrough handles, which they share; closed when the last of
	// them is released. Not nil while through > 0.
	backing *os.File
}

// ptHandle is an open file read by the kernel from a backing file. fd is
// its file's passthrough.backing, which it does not own: it stays open
// while the handle is counted in passthrough.through, so one descriptor
// serves every open, with no dup and close for each (a shuffled epoch
// opens each file once, and they were 7 % of the mount's CPU there).
type ptHandle struct {
	f  *file
	fd *os.File
}

// cachedHandle is an open file read through the mount and the kernel's
// page cache, or with O_DIRECT around it. It exists to be counted, and to
// tell file.read how its reads arrive.
type cachedHandle struct {
	f *file
	// direct: opened with O_DIRECT, so its reader sends one request at a
	// time and waits for it (see pagecache.MemoryAhead).
	direct bool
}

// aheadFor says where readahead for reads through fh goes. Without
// passthrough (no_open) fh is nil and O_DIRECT cannot be told: the
// kernel's own readahead is assumed.
func aheadFor(fh gofs.FileHandle) pagecache.Ahead {
	if h, ok := fh.(*cachedHandle); ok && h.direct {
		return pagecache.MemoryAhead
	}
	return pagecache.KernelAhead
}

var (
	_ = (gofs.FilePassthroughFder)((*ptHandle)(nil))
	_ = (gofs.FileReleaser)((*ptHandle)(nil))
	_ = (gofs.FileReleaser)((*cachedHandle)(nil))
)

// PassthroughFd gives go-fuse the backing file; the kernel takes its own
// reference to it, so the disk tier may evict (unlink) it meanwhile.
func (h *ptHandle) PassthroughFd() (int, bool) { return int(h.fd.Fd()), true }

// Release counts the handle out, and the last one closes the backing
// file; the kernel has let go of it, or never took it (passthrough was
// refused, and reads came to the node instead).
func (h *ptHandle) Release(ctx context.Context) syscall.Errno {
	pt := &h.f.pt
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.through--; pt.through == 0 {
		pt.backing.Close()
		pt.backing = nil
	}
	return 0
}

// Release counts the handle out.
func (h *cachedHandle) Release(ctx context.Context) syscall.Errno {
	pt := &h.f.pt
	pt.mu.Lock()
	pt.cached--
	pt.mu.Unlock()
	return 0
}

// passthroughAvailable says whether this process can open files with
// passthrough: the kernel offered it, and registering a backing file takes
// CAP_SYS_ADMIN, which root holds. Without it the mount keeps no_open,
// which saves more than a refused passthrough would give.
func passthroughAvailable(offered bool) bool { return offered && os.Geteuid() == 0 }

// open answers an open of f. Without passthrough the mount runs with
// no_open: open answers ENOSYS, which the kernel remembers for the mount,
// and then opens and closes files without a word to us, sparing each
// open-read-close of a small file two of its three round trips. With
// passthrough, a file held whole on disk, or one small chunk (which
// OpenWhole fetches into the disk cache first), gets a backing file, and others
// a cached handle: the kernel keeps their pages across opens
// (FOPEN_KEEP_CACHE, as under no_open) until node.setEntry drops them or
// it sees mtime or size change (auto_inval_data). A write never gets this
// far: the mount is read-only.
func (f *file) open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if !f.fsys.passthrough.Load() {
		return nil, 0, syscall.ENOSYS
	}
	if f.parent != nil {
		// The open is the reader's first word; a passthrough file sends
		// no read from its start to note it by (see file.read).
		f.parent.noteOpen(path.Base(f.filerPath()))
	}
	pt := &f.pt
	// The entry (perhaps from the filer) and the check of the cache's
	// file (a read of it) come outside the lock; the counts are checked
	// again under it.
	pt.mu.Lock()
	idle := pt.through == 0 && pt.cached == 0
	pt.mu.Unlock()
	var fd *os.File
	if idle {
		if ch, ok := f.wholeChunk(ctx); ok {
			fd, _ = f.fsys.chunks.OpenWhole(ctx, ch)
		}
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	switch {
	case pt.through > 0:
		if fd != nil {
			fd.Close()
		}
		// go-fuse hands this open the registered backing file whatever
		// the handle offers; the descriptor serves only if it has to
		// register it again.
		pt.through++
		return &ptHandle{f: f, fd: pt.backing}, 0, 0
	case pt.cached == 0 && fd != nil:
		pt.through++
		pt.backing = fd
		return &ptHandle{f: f, fd: fd}, 0, 0
	}
	if fd != nil {
		fd.Close()
	}
	pt.cached++
	return &cachedHandle{f: f, direct: flags&syscall.O_DIRECT != 0}, fuse.FOPEN_KEEP_CACHE, 0
}

// wholeChunk returns the chunk that is all of f, when f is one chunk that
// starts at 0 and ends at the file's end, and has not changed for
// passthroughMinAge. Errors are not the opener's: its reads will meet
// them.
func (f *file) wholeChunk(ctx context.Context) (needle.Chunk, bool) {
	e, err := f.current(ctx)
	if err != nil || len(e.GetContent()) > 0 {
		return needle.Chunk{}, false
	}
	if time.Since(time.Unix(e.GetAttributes().GetMtime(), 0)) < passthroughMinAge {
		return needle.Chunk{}, false
	}
	if ch, ok := chunkmap.Whole(e.GetChunks(), int64(fileSize(e))); ok {
		return ch, true // no map to build
	}
	m, size, err := f.chunkMap(ctx, e)
	if err != nil || size == 0 {
		return needle.Chunk{}, false
	}
	var buf [2]chunkmap.View
	views := m.Views(buf[:0], 0, size, size)
	if len(views) != 1 {
		return needle.Chunk{}, false
	}
	v := views[0]
	if v.Hole || v.ChunkOff != 0 || v.Len != size || v.Chunk.Size != size {
		return needle.Chunk{}, false
	}
	return v.Chunk, true
}

// notesOpenOnRead says whether file.read notes a read from the file's
// start as an open: without passthrough, no OPEN arrives to note.
func (f *file) notesOpenOnRead() bool { return !f.fsys.passthrough.Load() }
