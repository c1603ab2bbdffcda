package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// symlink is a symbolic link node; its target is in the entry's attributes.
type symlink struct{ node }

var (
	_ = (gofs.NodeReadlinker)((*symlink)(nil))
	_ = (gofs.NodeGetattrer)((*symlink)(nil))
	_ = (gofs.NodeGetxattrer)((*symlink)(nil))
	_ = (gofs.NodeListxattrer)((*symlink)(nil))
	_ = (gofs.NodeOnForgetter)((*symlink)(nil))
)

func (l *symlink) readlink(ctx context.Context) ([]byte, syscall.Errno) {
	e, err := l.current(ctx)
	if err != nil {
		return nil, toErrno("readlink "+l.filerPath(), err)
	}
	return []byte(e.GetAttributes().GetSymlinkTarget()), 0
}

func (l *symlink) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return l.getattr(ctx, out)
}
