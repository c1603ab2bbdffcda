package fs

import (
	"context"
	"math"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// xattrPrefix is how weed mount stores a user's extended attribute "name":
// as Extended["xattr-name"] on the entry.
const xattrPrefix = "xattr-"

// getxattr answers from the cached entry: weed mount's `ls -l` is slow
// because each file costs xattr RPCs; here they cost none while the entry is
// fresh. With DisableXAttr, go-fuse answers ENOSYS instead of calling it.
func (n *node) getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	e, err := n.current(ctx)
	if err != nil {
		return 0, toErrno("getxattr "+n.filerPath(), err)
	}
	v, ok := e.GetExtended()[xattrPrefix+attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// listxattr lists the names getxattr answers, from the cached entry.
func (n *node) listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	e, err := n.current(ctx)
	if err != nil {
		return 0, toErrno("listxattr "+n.filerPath(), err)
	}
	var names []byte
	for k := range e.GetExtended() {
		if name, ok := strings.CutPrefix(k, xattrPrefix); ok {
			names = append(append(names, name...), 0)
		}
	}
	if len(dest) < len(names) {
		return uint32(len(names)), syscall.ERANGE
	}
	return uint32(copy(dest, names)), 0
}

// entryTimeouts sets how long the kernel may keep a looked-up entry and its
// attributes.
func (f *FS) entryTimeouts(out *fuse.EntryOut) {
	ttl := f.metaTTL()
	out.SetEntryTimeout(ttl)
	out.SetAttrTimeout(ttl)
}

// statfsTTL keeps df from costing an RPC every call.
const statfsTTL = 10 * time.Second

func (f *FS) filerStatfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	f.statMu.Lock()
	st, at := f.stat, f.statTime
	f.statMu.Unlock()
	if st == nil || time.Since(at) > statfsTTL {
		fresh, err := f.meta.Statistics(ctx)
		switch {
		case err == nil:
			st = fresh
			f.statMu.Lock()
			f.stat, f.statTime = st, time.Now()
			f.statMu.Unlock()
		case st == nil || !unavailable(err):
			return toErrno("statfs", err)
		}
	}
	const bsize = 4096
	total, used := st.GetTotalSize(), st.GetUsedSize()
	if f.opts.LogicalSizes && st.GetLogicalTotalSize() > 0 {
		total, used = st.GetLogicalTotalSize(), st.GetLogicalUsedSize()
	}
	// As weed mount: a quota below the space caps it, but never below
	// what is used.
	if q := f.opts.Quota; q > 0 && total > q {
		total = max(q, used)
	}
	out.Bsize, out.Frsize = bsize, bsize
	out.Blocks = total / bsize
	free := out.Blocks - min(used/bsize, out.Blocks)
	out.Bfree, out.Bavail = free, free
	// weed mount's: no bound on files.
	out.Files = math.MaxInt64
	out.Ffree = math.MaxInt64 - min(st.GetFileCount(), math.MaxInt64)
	out.NameLen = 255
	return 0
}
