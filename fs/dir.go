package fs

import (
	"context"
	"path"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// dir is a directory node.
type dir struct {
	node
	ds dataset
}

var (
	_ = (gofs.NodeLookuper)((*dir)(nil))
	_ = (gofs.NodeGetattrer)((*dir)(nil))
	_ = (gofs.NodeOpendirHandler)((*dir)(nil))
	_ = (gofs.NodeStatfser)((*dir)(nil))
	_ = (gofs.NodeGetxattrer)((*dir)(nil))
	_ = (gofs.NodeListxattrer)((*dir)(nil))
)

func (d *dir) childPath(name string) string { return path.Join(d.path, name) }

// Lookup asks the filer for dir/name, or reuses a child the kernel already
// knows whose entry is still fresh.
func (d *dir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	p := d.childPath(name)
	if ch := d.GetChild(name); ch != nil {
		if n, ok := ch.Operations().(interface {
			cached() (*filerpb.Entry, bool)
		}); ok {
			if e, fresh := n.cached(); fresh && e != nil {
				d.fsys.fillAttr(p, e, &out.Attr)
				d.fsys.entryTimeouts(out)
				return ch, 0
			}
		}
	}
	e, err := d.fsys.meta.LookupEntry(ctx, d.path, name)
	if err != nil {
		return nil, toErrno("lookup "+p, err)
	}
	return d.child(ctx, name, e, out), 0
}

// child returns the inode for entry e named name, reusing the existing one
// when its type is unchanged, and fills out.
func (d *dir) child(ctx context.Context, name string, e *filerpb.Entry, out *fuse.EntryOut) *gofs.Inode {
	p := d.childPath(name)
	d.fsys.fillAttr(p, e, &out.Attr)
	d.fsys.entryTimeouts(out)
	if ch := d.GetChild(name); ch != nil && ch.StableAttr().Mode == out.Attr.Mode&syscall.S_IFMT && refresh(ch, e) {
		return ch
	}
	return d.fsys.newChild(ctx, d.EmbeddedInode(), p, e)
}

func (d *dir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e, err := d.current(ctx)
	if err != nil {
		return toErrno("getattr "+d.path, err)
	}
	d.fsys.fillAttr(d.path, e, &out.Attr)
	out.SetTimeout(d.fsys.metaTTL())
	return 0
}

func (d *dir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirStream{d: d}, 0, 0
}

// dirPage is how many entries a listing fetches at a time: a directory of
// any size streams through without being held in memory whole.
const dirPage = 1024

// dirStream lists a directory a page at a time. go-fuse serializes calls on
// one handle, so it needs no lock of its own.
type dirStream struct {
	d    *dir
	page []*filerpb.Entry
	i    int // next index in page
	// off is the offset of the next entry: entries handed out so far.
	off  uint64
	done bool // the filer has no entries after page
	cur  *filerpb.Entry
}

var (
	_ = (gofs.FileReaddirenter)((*dirStream)(nil))
	_ = (gofs.FileLookuper)((*dirStream)(nil))
	_ = (gofs.FileSeekdirer)((*dirStream)(nil))
)

func (s *dirStream) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if s.i == len(s.page) {
		if s.done {
			return nil, 0
		}
		last := ""
		if len(s.page) > 0 {
			last = s.page[len(s.page)-1].Name
		}
		page, err := s.d.fsys.meta.ListPage(ctx, s.d.path, last, dirPage)
		if err != nil {
			return nil, toErrno("readdir "+s.d.path, err)
		}
		s.page, s.i, s.done = page, 0, len(page) < dirPage
		if len(page) == 0 {
			return nil, 0
		}
	}
	e := s.page[s.i]
	s.i++
	s.off++
	s.cur = e
	p := s.d.childPath(e.Name)
	return &fuse.DirEntry{Name: e.Name, Mode: s.d.fsys.sysMode(e), Ino: inodeNumber(p), Off: s.off}, 0
}

// Lookup serves READDIRPLUS from the entry just listed, with no RPC.
func (s *dirStream) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if s.cur == nil || s.cur.Name != name {
		return s.d.Lookup(ctx, name, out)
	}
	return s.d.child(ctx, name, s.cur, out), 0
}

// Seekdir restarts the listing and skips to off; the kernel only seeks
// back when a reply was cut short or the directory is rewound.
func (s *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	*s = dirStream{d: s.d}
	for s.off < off {
		e, errno := s.Readdirent(ctx)
		if errno != 0 {
			return errno
		}
		if e == nil {
			break
		}
	}
	return 0
}

func (d *dir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return d.fsys.statfs(ctx, out)
}

func (d *dir) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return d.getxattr(ctx, attr, dest)
}

func (d *dir) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return d.listxattr(ctx, dest)
}
