package fs

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"path"
	"sync"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/errgroup"

	"github.com/weedfuse/weedfuse/chunkmap"
	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/pagecache"
)

// file is a regular file node. The kernel opens files without asking (see
// Open), so reads carry no handle: each uses the node's current entry.
type file struct {
	node
	// parent is the directory the file was found in, told of each read
	// from the file's start, so that it can fetch the next files of a
	// dataset ahead.
	parent *dir
	// ra detects sequential streams among the file's reads; the readers
	// of one file share it. It is made at the first read (see readahead):
	// most of a listed directory's files are never read through the mount.
	ra atomic.Pointer[pagecache.Readahead]

	// buildMu is held while a map is built, which may fetch manifests
	// (each fetch bounded by the volume reader's stall rule, the whole by
	// nothing but their number): a lock that a reader whose request ends
	// (interrupted) stops waiting for. Lock order: buildMu, then mapMu.
	buildMu ctxMutex
	// mapMu guards the map fields below; it is held only to read or set
	// them (every read takes it: a channel lock here cost random 4 KiB
	// reads of one file by 4 jobs a fifth more CPU, in scheduler wake-ups).
	mapMu sync.Mutex
	// cmap is the chunk map built for the chunk list whose fingerprint is
	// mapKey; it serves every read until the list changes. mapEntry is the
	// entry it was last checked against: entries are never changed in
	// place (a refresh replaces the pointer), so the same pointer needs no
	// fingerprint, which hashes every chunk (a fifth of the CPU of random
	// 4 KiB reads of a 2 GiB file when it was made per read).
	cmap     *chunkmap.Map
	mapKey   uint64
	mapEntry *filerpb.Entry
	// mapSize is mapEntry's fileSize, which also walks every chunk (a
	// twentieth of the same reads' CPU when it was made per read).
	mapSize int64

	// pt tracks the file's passthrough opens (see passthrough.go).
	pt passthrough
}

// readahead returns the file's stream detector, made at the first call.
func (f *file) readahead() *pagecache.Readahead {
	if r := f.ra.Load(); r != nil {
		return r
	}
	o := f.fsys.opts
	f.ra.CompareAndSwap(nil, pagecache.NewReadahead(o.ReadaheadMin, o.ReadaheadMax))
	return f.ra.Load()
}

var (
	_ = (gofs.NodeOpener)((*file)(nil))
	_ = (gofs.NodeReader)((*file)(nil))
	_ = (gofs.NodeGetattrer)((*file)(nil))
	_ = (gofs.NodeGetxattrer)((*file)(nil))
	_ = (gofs.NodeListxattrer)((*file)(nil))
	_ = (gofs.NodeFlusher)((*file)(nil))
	_ = (gofs.NodeOnForgetter)((*file)(nil))
)

func (f *file) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return f.getattr(ctx, out)
}

// Flush answers ENOSYS, which the kernel remembers: it then sends no FLUSH
// at any close. A read-only mount has nothing to flush, and nothing to
// report at close. (With no_open the kernel sends none anyway.)
func (f *file) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// read fills dest from the chunks that cover [off, off+len(dest)), holes as
// zeros, from one version of the file: the entry current when it starts. It
// returns the full length unless end of file comes first.
func (f *file) read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	e, err := f.current(ctx)
	if err != nil {
		return nil, toErrno("read "+f.filerPath(), err)
	}
	if len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	v := version{f: f, entry: e, ahead: aheadFor(fh)}
	if v.cmap, v.size, err = f.chunkMap(ctx, e); err != nil {
		if off >= int64(fileSize(e)) {
			return fuse.ReadResultData(nil), 0 // end of file needs no map
		}
		return nil, toErrno("read "+f.filerPath(), err)
	}
	if off >= v.size {
		return fuse.ReadResultData(nil), 0
	}
	if off == 0 && f.parent != nil && f.notesOpenOnRead() {
		f.parent.noteOpen(path.Base(f.filerPath()))
	}
	buf := dest[:min(int64(len(dest)), v.size-off)]
	v.readahead(off, int64(len(buf)))
	v.access = f.readahead().Access(off, v.aheadAt(off))
	if err := v.readAt(ctx, buf, off); err != nil {
		return nil, toErrno(fmt.Sprintf("read %s [%d,+%d)", f.filerPath(), off, len(buf)), err)
	}
	return fuse.ReadResultData(buf), 0
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
// e's size.
func (f *file) chunkMap(ctx context.Context, e *filerpb.Entry) (*chunkmap.Map, int64, error) {
	var key uint64 // e's fingerprint, made only when the entry is new
	if m, size, ok := f.builtMap(e, &key); ok {
		return m, size, nil
	}
	if err := f.buildMu.lock(ctx); err != nil {
		return nil, 0, fmt.Errorf("chunk map of %s: %w", f.filerPath(), err)
	}
	defer f.buildMu.unlock()
	if m, size, ok := f.builtMap(e, &key); ok { // built while this waited
		return m, size, nil
	}
	m, err := chunkmap.Build(ctx, e.GetChunks(), f.fsys.manifests)
	if err != nil {
		return nil, 0, fmt.Errorf("chunk map of %s: %w", f.filerPath(), err)
	}
	size := int64(fileSize(e))
	f.mapMu.Lock()
	f.cmap, f.mapKey, f.mapEntry, f.mapSize = m, key, e, size
	f.mapMu.Unlock()
	return m, size, nil
}

// builtMap returns the map built for e's chunk list, if there is one. An
// entry other than the last one checked is compared by its chunk list's
// fingerprint, which it leaves in *key (0: not made yet).
func (f *file) builtMap(e *filerpb.Entry, key *uint64) (*chunkmap.Map, int64, bool) {
	f.mapMu.Lock()
	defer f.mapMu.Unlock()
	if f.cmap != nil && f.mapEntry == e {
		return f.cmap, f.mapSize, true
	}
	if *key == 0 {
		*key = fingerprint(e)
	}
	if f.cmap != nil && f.mapKey == *key {
		f.mapEntry, f.mapSize = e, int64(fileSize(e))
		return f.cmap, f.mapSize, true
	}
	return nil, 0, false
}

// version is one version of a file, as one read sees it: an entry and its
// chunk map.
type version struct {
	f     *file
	entry *filerpb.Entry
	cmap  *chunkmap.Map
	size  int64
	// access is how the file is being read, which decides how a miss is
	// fetched (pagecache's plan).
	access pagecache.Access
	// ahead is where readahead of a chunk held on disk goes.
	ahead pagecache.Ahead
}

// aheadAt is where readahead at off goes: for a buffered reader, past the
// part of the file that the disk cache keeps of a stream, to memory only.
func (fv version) aheadAt(off int64) pagecache.Ahead {
	if fv.ahead == pagecache.KernelAhead && !fv.f.fsys.chunks.KeepsStream(fv.size, off) {
		return pagecache.PassingAhead
	}
	return fv.ahead
}

// readahead tells the stream detector about a read and starts fetching
// what it asks for, before the read itself waits on its own bytes.
func (fv version) readahead(off, n int64) {
	if len(fv.entry.GetContent()) > 0 {
		return
	}
	pOff, pLen := fv.f.readahead().Observe(off, n)
	if pLen <= 0 {
		return
	}
	var viewBuf [8]chunkmap.View
	for _, v := range fv.cmap.Views(viewBuf[:0], pOff, pLen, fv.size) {
		if v.Hole {
			continue
		}
		if got := fv.f.fsys.chunks.Prefetch(v.Chunk, v.ChunkOff, v.Len, fv.aheadAt(v.FileOff)); got < v.ChunkOff+v.Len {
			fv.f.readahead().Rewind(v.FileOff + max(got-v.ChunkOff, 0))
			return
		}
	}
}

// readAt fills buf, which lies within the file, exactly.
func (fv version) readAt(ctx context.Context, buf []byte, off int64) error {
	if content := fv.entry.GetContent(); len(content) > 0 {
		n := 0
		if off < int64(len(content)) {
			n = copy(buf, content[off:])
		}
		clear(buf[n:])
		return nil
	}
	var viewBuf [4]chunkmap.View // most reads touch one or two chunks
	views := fv.cmap.Views(viewBuf[:0], off, int64(len(buf)), fv.size)
	if len(views) == 1 {
		return fv.readView(ctx, buf, views[0])
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fv.f.fsys.opts.ReadConcurrency)
	for _, v := range views {
		part := buf[v.FileOff-off : v.FileOff-off+v.Len]
		g.Go(func() error { return fv.readView(gctx, part, v) })
	}
	return g.Wait()
}

// readView fills part with the bytes of one view.
func (fv version) readView(ctx context.Context, part []byte, v chunkmap.View) error {
	if v.Hole {
		clear(part)
		return nil
	}
	n, err := fv.f.fsys.chunks.ReadChunkAt(ctx, v.Chunk, v.ChunkOff, part, fv.access)
	if err != nil {
		return fmt.Errorf("read chunk %s at %d: %w", v.Chunk.FileID, v.ChunkOff, err)
	}
	if n != len(part) {
		return fmt.Errorf("read chunk %s at %d: got %d bytes, want %d: chunk shorter than its entry says",
			v.Chunk.FileID, v.ChunkOff, n, len(part))
	}
	return nil
}
