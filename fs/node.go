package fs

import (
	"context"
	"errors"
	iofs "io/fs"
	"path"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// node is what files, directories and symlinks share: the filer path and
// the last entry seen for it.
type node struct {
	gofs.Inode
	fsys *FS
	// key is the node's key in the inode table (see inodeTable).
	key string

	mu sync.Mutex
	// path is the filer path the node was last found at. Only a hard
	// link's changes (it is one node under several names); read it with
	// filerPath.
	path string
	// entry is the last entry seen; fetched is when. entry may be nil for
	// the filer's root directory.
	entry   *filerpb.Entry
	fetched time.Time
}

func (n *node) init(f *FS, p, key string, e *filerpb.Entry) {
	n.fsys, n.path, n.key, n.entry, n.fetched = f, p, key, e, time.Now()
}

// filerPath is the filer path the node was last found at.
func (n *node) filerPath() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.path
}

// foundAt records that a hard link's node was found at filer path p, which
// its next refresh asks for: the name it was first found by may be gone.
func (n *node) foundAt(p string) {
	n.mu.Lock()
	n.path = p
	n.mu.Unlock()
}

func (n *node) inodeKey() string { return n.key }

// OnForget gives the node's inode number back once the kernel forgot it.
func (n *node) OnForget() {
	n.fsys.nodes.Add(-1)
	n.fsys.inodes.forget(n.key, n.StableAttr().Ino)
}

// nodeCost is about what the mount holds for each node the kernel holds:
// the filer's entry decoded (about 665 B), the node (320 B) and go-fuse's
// tables (210 B), and its share of a listing; 1.4 KiB each in all, as a
// directory of 200,000 entries showed.
const nodeCost = 1400

// cached returns the node's entry and whether it is still fresh; no entry
// once it is past its TTL (entryExpired), which not even a filer that went
// away stands in for.
func (n *node) cached() (*filerpb.Entry, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if entryExpired(n.entry, now) {
		return nil, false
	}
	return n.entry, now.Sub(n.fetched) < n.fsys.metaTTL()
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

// current returns the node's entry, asking the filer when the cached one
// is no longer fresh.
func (n *node) current(ctx context.Context) (*filerpb.Entry, error) {
	p := n.filerPath()
	stale, fresh := n.cached()
	if fresh || p == n.fsys.opts.Root {
		return stale, nil
	}
	if stale != nil && n.fsys.filerDown() {
		return stale, nil // see filerDown
	}
	dir, name := path.Split(p)
	e, err := n.fsys.meta.LookupEntry(ctx, path.Clean(dir), name)
	if stale != nil && unavailable(err) {
		return stale, nil
	}
	if errors.Is(err, iofs.ErrNotExist) && n.key != p {
		// A hard link whose name p is gone may live on under another:
		// ask for the one the tree still holds (the watch takes deleted
		// names of hard links out of it).
		if other := n.otherName(p); other != "" {
			dir, name = path.Split(other)
			if e, err = n.fsys.meta.LookupEntry(ctx, path.Clean(dir), name); err == nil {
				n.foundAt(other)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	n.setEntry(e)
	return e, nil
}

// otherName returns a filer path of the node's other than p that the tree
// holds, or "".
func (n *node) otherName(p string) string {
	name, parent := n.Parent()
	if parent == nil {
		return ""
	}
	d, ok := parent.Operations().(*dir)
	if !ok || d.childPath(name) == p {
		return ""
	}
	return d.childPath(name)
}

// getattrEntry answers from the node's entry, asking the filer when it is stale.
func (n *node) getattrEntry(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	e, err := n.current(ctx)
	if err != nil {
		return toErrno("getattr "+n.filerPath(), err)
	}
	n.fsys.fillAttr(n.StableAttr().Ino, n.filerPath(), e, &out.Attr)
	out.SetTimeout(n.fsys.metaTTL())
	return 0
}
