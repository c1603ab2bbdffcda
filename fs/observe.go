package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// OpObserver is told of each FUSE operation the tree answered: its name (one
// of the Op* constants), how long it took here (not counting the kernel's
// queueing), the bytes of a read's reply, and the errno it answered (0 for
// success). It must be cheap and safe for concurrent use: it runs on the
// request's goroutine.
type OpObserver interface {
	ObserveOp(op string, took time.Duration, bytes int, errno syscall.Errno)
}

// The operations an OpObserver sees. Readdir is not among them: a listing is
// many READDIRPLUS requests answered from one stream, FLUSH answers ENOSYS
// once and is then never sent, and so does OPEN unless files are opened
// with passthrough.
const (
	OpLookup    = "lookup"
	OpGetattr   = "getattr"
	OpOpen      = "open"
	OpRead      = "read"
	OpReadlink  = "readlink"
	OpGetxattr  = "getxattr"
	OpListxattr = "listxattr"
	OpStatfs    = "statfs"
)

// The go-fuse node methods below only time their untimed counterparts,
// which hold the logic; keeping the timing here keeps it out of that logic.

func (f *FS) observe(op string, start time.Time, bytes int, errno syscall.Errno) {
	if f.opts.Ops != nil {
		f.opts.Ops.ObserveOp(op, time.Since(start), bytes, errno)
	}
}

func (d *dir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	start := time.Now()
	ino, errno := d.lookup(ctx, name, out)
	d.fsys.observe(OpLookup, start, 0, errno)
	return ino, errno
}

// getattr is what every node's Getattr answers.
func (n *node) getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	start := time.Now()
	errno := n.getattrEntry(ctx, out)
	n.fsys.observe(OpGetattr, start, 0, errno)
	return errno
}

func (f *file) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	start := time.Now()
	res, errno := f.read(ctx, fh, dest, off)
	n := 0
	if res != nil {
		n = res.Size()
	}
	f.fsys.observe(OpRead, start, n, errno)
	return res, errno
}

func (l *symlink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	start := time.Now()
	target, errno := l.readlink(ctx)
	l.fsys.observe(OpReadlink, start, 0, errno)
	return target, errno
}

// Getxattr and Listxattr are never called with DisableXAttr: go-fuse
// answers ENOSYS itself.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	start := time.Now()
	sz, errno := n.getxattr(ctx, attr, dest)
	n.fsys.observe(OpGetxattr, start, 0, errno)
	return sz, errno
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	start := time.Now()
	sz, errno := n.listxattr(ctx, dest)
	n.fsys.observe(OpListxattr, start, 0, errno)
	return sz, errno
}

func (f *FS) statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	start := time.Now()
	errno := f.filerStatfs(ctx, out)
	f.observe(OpStatfs, start, 0, errno)
	return errno
}

func (f *file) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	start := time.Now()
	h, fl, errno := f.open(ctx, flags)
	if errno != syscall.ENOSYS {
		f.fsys.observe(OpOpen, start, 0, errno)
	}
	return h, fl, errno
}
