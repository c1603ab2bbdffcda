package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// dir is a directory node.
type dir struct {
	node
	ds dataset

	listMu sync.Mutex
	// listing is the directory's complete listing, served to readdir and
	// look-ups while it is current and fresh (cachedListing); nil when
	// there is none. It passes to the file system's listingStore when the
	// kernel forgets the node, and back to the directory's next node.
	listing *keptListing
}

// defaultMaxCachedListing is Options.MaxCachedListing's default, weed
// mount's -cacheDirMaxEntries.
const defaultMaxCachedListing = 100_000

// initDir readies a new node for directory p, taking back the listing its
// forgotten predecessor left, if there is one.
func (d *dir) initDir(f *FS, p, key string, e *filerpb.Entry) {
	d.init(f, p, key, e)
	d.listing = f.listings.take(p)
}

// cachedListing returns the directory's listing if it is current and fresh.
func (d *dir) cachedListing() (*keptListing, bool) {
	d.listMu.Lock()
	defer d.listMu.Unlock()
	k := d.listing
	if k != nil && d.fsys.watched.Load() && time.Since(k.at) < d.fsys.opts.MetaTTL && d.fsys.listings.current(d.path, k.gen) {
		return k, true
	}
	return nil, false
}

// staleListing returns the directory's last complete listing, however
// old, unless an event has changed the directory since: what there is
// while the filer is down.
func (d *dir) staleListing() ([]*filerpb.Entry, uint64) {
	d.listMu.Lock()
	defer d.listMu.Unlock()
	if d.listing == nil || !d.fsys.listings.unchanged(d.path, d.listing.gen) {
		return nil, 0
	}
	return d.listing.entries, d.listing.gen
}

// keepListing stores a complete listing asked for under change counter gen.
func (d *dir) keepListing(l []*filerpb.Entry, gen uint64) {
	if len(l) > d.fsys.opts.MaxCachedListing || !d.fsys.watched.Load() || !d.fsys.listings.current(d.path, gen) {
		return
	}
	k := newKept(d.path, l, gen)
	d.listMu.Lock()
	d.listing = k
	d.listMu.Unlock()
}

// OnForget hands the directory's listing to the file system's store, for
// its next node, and gives the inode number back.
func (d *dir) OnForget() {
	d.listMu.Lock()
	k := d.listing
	d.listing = nil
	d.listMu.Unlock()
	d.fsys.listings.retain(k)
	d.node.OnForget()
}

var (
	_ = (gofs.NodeLookuper)((*dir)(nil))
	_ = (gofs.NodeGetattrer)((*dir)(nil))
	_ = (gofs.NodeOpendirHandler)((*dir)(nil))
	_ = (gofs.NodeStatfser)((*dir)(nil))
	_ = (gofs.NodeGetxattrer)((*dir)(nil))
	_ = (gofs.NodeListxattrer)((*dir)(nil))
	_ = (gofs.NodeOnForgetter)((*dir)(nil))
)

func (d *dir) childPath(name string) string { return childPath(d.path, name) }

// Lookup reuses a child the kernel already knows whose entry is still
// fresh, or finds dir/name in the directory's current listing, or asks the
// filer. A hidden system entry is not there.
func (d *dir) lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if len(name) > maxNameLen {
		return nil, syscall.ENAMETOOLONG
	}
	if !d.fsys.served(d.path, name) {
		return nil, syscall.ENOENT
	}
	p := d.childPath(name)
	var known *gofs.Inode
	var stale *filerpb.Entry
	if ch := d.GetChild(name); ch != nil {
		if n, ok := ch.Operations().(interface {
			cached() (*filerpb.Entry, bool)
		}); ok {
			e, fresh := n.cached()
			if e != nil && (fresh || d.fsys.filerDown()) {
				d.fsys.fillAttr(ch.StableAttr().Ino, p, e, &out.Attr)
				d.fsys.entryTimeouts(out)
				return ch, 0
			}
			known, stale = ch, e
		}
	}
	if k, ok := d.cachedListing(); ok {
		// A current listing knows every name: a loader that lists its
		// dataset and opens the files costs the filer nothing more.
		if e, known := k.find(name); known {
			if e == nil {
				return nil, syscall.ENOENT
			}
			return d.child(ctx, name, e, out, readMark{k.gen, d.fsys.linkEvents.Load()}), 0
		}
	}
	mark := d.mark()
	e, err := d.fsys.meta.LookupEntry(ctx, d.path, name)
	if stale != nil && unavailable(err) {
		d.fsys.fillAttr(known.StableAttr().Ino, p, stale, &out.Attr)
		d.fsys.entryTimeouts(out)
		return known, 0
	}
	if err != nil {
		return nil, toErrno("lookup "+p, err)
	}
	return d.child(ctx, name, e, out, mark), 0
}

// readMark is what an entry read from the filer or a listing is checked
// against once it is in hand: the directory's change counter and the
// count of hard-link events, from before the read.
type readMark struct{ gen, links uint64 }

// mark is d's readMark now.
func (d *dir) mark() readMark {
	return readMark{d.fsys.listings.gen(d.path), d.fsys.linkEvents.Load()}
}

// child returns the inode for entry e named name and fills out. If an
// event that could concern e came after mark (one in the directory, or,
// for a hard link, one about any link), e may be older than what the event
// gave the node: the node then asks the filer at its next use rather than
// keep e as fresh, and the kernel is told to ask again.
func (d *dir) child(ctx context.Context, name string, e *filerpb.Entry, out *fuse.EntryOut, mark readMark) *gofs.Inode {
	p := d.childPath(name)
	ch := d.fsys.child(ctx, d.EmbeddedInode(), p, e)
	d.fsys.fillAttr(ch.StableAttr().Ino, p, e, &out.Attr)
	d.fsys.entryTimeouts(out)
	if !d.fsys.listings.current(d.path, mark.gen) || len(e.GetHardLinkId()) > 0 && d.fsys.linkEvents.Load() != mark.links {
		if n, ok := ch.Operations().(interface{ expire() }); ok {
			n.expire()
		}
		out.SetEntryTimeout(0)
		out.SetAttrTimeout(0)
	}
	return ch
}

func (d *dir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return d.getattr(ctx, out)
}

func (d *dir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return newDirStream(d), 0, 0
}

func (d *dir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return d.fsys.statfs(ctx, out)
}
