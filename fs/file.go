package fs

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"path"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/errgroup"

	"github.com/weedfuse/weedfuse/chunkmap"
	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/pagecache"
)

// file is a regular file node.
type file struct {
	node
	// parent is the directory the file was found in, told of each open so
	// that it can fetch the next files of a dataset ahead.
	parent *dir

	mapMu sync.Mutex
	// cmap is the chunk map built for the chunk list whose fingerprint is
	// mapKey; reopening an unchanged file reuses it and keeps the kernel's
	// page cache.
	cmap   *chunkmap.Map
	mapKey uint64
}

var (
	_ = (gofs.NodeOpener)((*file)(nil))
	_ = (gofs.NodeGetattrer)((*file)(nil))
	_ = (gofs.NodeGetxattrer)((*file)(nil))
	_ = (gofs.NodeListxattrer)((*file)(nil))
	_ = (gofs.NodeFlusher)((*file)(nil))
)

// Flush answers ENOSYS, which the kernel remembers: it then sends no FLUSH
// at any close, sparing every open-read-close a round trip. A read-only
// mount has nothing to flush, and errors at close have nothing to report.
func (f *file) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

func (f *file) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		// An open file answers with the entry it was opened with, so that
		// size and content agree while it stays open. Once the file has
		// changed, that answer is for this handle only: the kernel must
		// not keep it, or the old size would clip every later open's
		// reads until the timeout.
		f.fsys.fillAttr(f.path, h.entry, &out.Attr)
		ttl := f.fsys.metaTTL()
		if cur, _ := f.cached(); cur != h.entry {
			ttl = time.Nanosecond // zero would mean the default
		}
		out.SetTimeout(ttl)
		return 0
	}
	return f.getattr(ctx, out)
}

const writeFlags = syscall.O_WRONLY | syscall.O_RDWR | syscall.O_TRUNC | syscall.O_APPEND | syscall.O_CREAT

// Open refuses writes (the mount is read-only) and prepares the chunk map.
func (f *file) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&writeFlags != 0 {
		return nil, 0, syscall.EROFS
	}
	e, err := f.current(ctx)
	if err != nil {
		return nil, 0, toErrno("open "+f.path, err)
	}
	m, unchanged, err := f.chunkMap(ctx, e)
	if err != nil {
		return nil, 0, toErrno("open "+f.path, err)
	}
	if f.parent != nil {
		f.parent.noteOpen(path.Base(f.path))
	}
	var fuseFlags uint32
	if unchanged {
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
	}
	return &handle{
		f: f, entry: e, cmap: m, size: int64(fileSize(e)),
		ra: pagecache.NewReadahead(f.fsys.opts.ReadaheadMin, f.fsys.opts.ReadaheadMax),
	}, fuseFlags, 0
}

// fingerprint identifies a chunk list: equal fingerprints mean equal bytes.
func fingerprint(e *filerpb.Entry) uint64 {
	h := fnv.New64a()
	var b [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	put(fileSize(e))
	h.Write(e.GetContent())
	for _, c := range e.GetChunks() {
		h.Write([]byte(chunkmap.ChunkFromFiler(c).FileID))
		put(uint64(c.GetOffset()))
		put(c.GetSize())
		put(uint64(c.GetModifiedTsNs()))
	}
	return h.Sum64()
}

// chunkMap returns the map for e's chunk list, built once per list, and
// whether it is the list this node served before.
func (f *file) chunkMap(ctx context.Context, e *filerpb.Entry) (*chunkmap.Map, bool, error) {
	key := fingerprint(e)
	f.mapMu.Lock()
	defer f.mapMu.Unlock()
	if f.cmap != nil && f.mapKey == key {
		return f.cmap, true, nil
	}
	m, err := chunkmap.Build(ctx, e.GetChunks(), f.fsys.manifests)
	if err != nil {
		return nil, false, fmt.Errorf("chunk map of %s: %w", f.path, err)
	}
	f.cmap, f.mapKey = m, key
	return m, false, nil
}

// handle is an open file: a snapshot of the entry and its chunk map, so
// that one open sees one version of the file.
type handle struct {
	f     *file
	entry *filerpb.Entry
	cmap  *chunkmap.Map
	size  int64
	ra    *pagecache.Readahead
}

var _ = (gofs.FileReader)((*handle)(nil))

// Read fills dest from the chunks that cover [off, off+len(dest)), holes as
// zeros. It returns the full length unless end of file comes first.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= h.size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	buf := dest[:min(int64(len(dest)), h.size-off)]
	h.readahead(off, int64(len(buf)))
	if err := h.readAt(ctx, buf, off); err != nil {
		return nil, toErrno(fmt.Sprintf("read %s [%d,+%d)", h.f.path, off, len(buf)), err)
	}
	return fuse.ReadResultData(buf), 0
}

// readahead tells the stream detector about a read and starts fetching
// what it asks for, before the read itself waits on its own bytes.
func (h *handle) readahead(off, n int64) {
	if len(h.entry.GetContent()) > 0 {
		return
	}
	pOff, pLen := h.ra.Observe(off, n)
	if pLen <= 0 {
		return
	}
	var viewBuf [8]chunkmap.View
	for _, v := range h.cmap.Views(viewBuf[:0], pOff, pLen, h.size) {
		if v.Hole {
			continue
		}
		if got := h.f.fsys.chunks.Prefetch(v.Chunk, v.ChunkOff, v.Len); got < v.ChunkOff+v.Len {
			h.ra.Rewind(v.FileOff + max(got-v.ChunkOff, 0))
			return
		}
	}
}

// readAt fills buf, which lies within the file, exactly.
func (h *handle) readAt(ctx context.Context, buf []byte, off int64) error {
	if content := h.entry.GetContent(); len(content) > 0 {
		n := 0
		if off < int64(len(content)) {
			n = copy(buf, content[off:])
		}
		clear(buf[n:])
		return nil
	}
	var viewBuf [4]chunkmap.View // most reads touch one or two chunks
	views := h.cmap.Views(viewBuf[:0], off, int64(len(buf)), h.size)
	if len(views) == 1 {
		return h.readView(ctx, buf, views[0])
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(h.f.fsys.opts.ReadConcurrency)
	for _, v := range views {
		part := buf[v.FileOff-off : v.FileOff-off+v.Len]
		g.Go(func() error { return h.readView(gctx, part, v) })
	}
	return g.Wait()
}

// readView fills part with the bytes of one view.
func (h *handle) readView(ctx context.Context, part []byte, v chunkmap.View) error {
	if v.Hole {
		clear(part)
		return nil
	}
	n, err := h.f.fsys.chunks.ReadChunk(ctx, v.Chunk, v.ChunkOff, part)
	if err != nil {
		return fmt.Errorf("read chunk %s at %d: %w", v.Chunk.FileID, v.ChunkOff, err)
	}
	if n != len(part) {
		return fmt.Errorf("read chunk %s at %d: got %d bytes, want %d: chunk shorter than its entry says",
			v.Chunk.FileID, v.ChunkOff, n, len(part))
	}
	return nil
}
