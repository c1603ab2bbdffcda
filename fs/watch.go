package fs

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/weedfuse/weedfuse/chunkmap"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// Subscriber streams the filer's metadata events under prefix from sinceNs
// on, calling fn for each, until ctx ends or the stream breaks. It calls
// opened (when not nil) once the call is made on a live connection,
// before any event. Safe for concurrent use.
type Subscriber interface {
	Subscribe(ctx context.Context, prefix string, sinceNs int64, opened func(), fn func(*filerpb.SubscribeMetadataResponse) error) error
}

// unwatchedTTL is how long metadata is trusted while no subscription keeps
// it fresh: changes on the filer then show within a second.
const unwatchedTTL = time.Second

// streamUp is how long a subscription call, once made on a live
// connection, must stand before it counts as keeping metadata fresh: a
// filer that refuses the call fails it within a round trip. Until then the
// kernel gets entries for unwatchedTTL,
// and a loader that lists its dataset right after the mount looks each file
// up again at its open: with 1 s, 15,578-15,974 LOOKUPs in a shuffled
// epoch 1 over 16,384 files started just after mounting, and 2 with 200 ms.
const streamUp = 200 * time.Millisecond

// metaTTL is how long a cached entry may be served, by us and by the kernel.
func (f *FS) metaTTL() time.Duration {
	if f.watched.Load() {
		return f.opts.MetaTTL
	}
	return min(f.opts.MetaTTL, unwatchedTTL)
}

// Watch keeps cached metadata fresh from the filer's metadata events: a
// changed entry replaces the cached one, a changed file's old blocks are
// dropped and the kernel is told to forget its pages and dentries. Kernel
// notifications run on a worker goroutine, never inside a FUSE handler,
// since the kernel may wait on the handler that would be notifying it.
// Both goroutines belong to the file system; Close stops them.
func (f *FS) Watch(sub Subscriber) {
	notes := make(chan func(), 4096)
	f.bgWG.Add(2)
	go func() {
		defer f.bgWG.Done()
		defer close(notes)
		f.subscribeLoop(f.bg, sub, notes)
	}()
	go func() {
		defer f.bgWG.Done()
		for note := range notes {
			note()
		}
	}()
}

// subscribeLoop follows the event stream, reconnecting with backoff from
// the last event seen, so that no event is lost across a broken stream.
func (f *FS) subscribeLoop(ctx context.Context, sub Subscriber, notes chan<- func()) {
	since := time.Now().Add(-time.Second).UnixNano()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// The stream counts as up once it has stood for a moment after
		// the call was made, or delivered an event; until then (and
		// while the call waits for a filer to connect to) metadata is
		// trusted only briefly. ended keeps a timer that fires as the
		// call returns from marking it up afterwards.
		var (
			mu    sync.Mutex
			ended bool
			up    *time.Timer
		)
		opened := func() {
			mu.Lock()
			defer mu.Unlock()
			up = time.AfterFunc(streamUp, func() {
				mu.Lock()
				defer mu.Unlock()
				if !ended {
					f.watched.Store(true)
				}
			})
		}
		err := sub.Subscribe(ctx, f.opts.Root, since, opened, func(ev *filerpb.SubscribeMetadataResponse) error {
			f.watched.Store(true)
			since = max(since, ev.GetTsNs())
			f.watchLagNs.Store(time.Now().UnixNano() - ev.GetTsNs())
			backoff = 100 * time.Millisecond
			return f.apply(ctx, ev, notes)
		})
		mu.Lock()
		ended = true
		if up != nil {
			up.Stop()
		}
		mu.Unlock()
		f.watched.Store(false)
		f.listings.broke()
		if ctx.Err() != nil {
			return
		}
		slog.Warn("metadata subscription lost; cached metadata is trusted for a shorter while until it is back", "err", err, "ttl", unwatchedTTL)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		// At most 2 s: a restarted filer is followed again within
		// about that (the client's connection comes back as fast).
		backoff = min(2*backoff, 2*time.Second)
	}
}

// apply brings cached state in line with one event. It returns ctx's
// error if the file system closes while it waits to queue a notification.
func (f *FS) apply(ctx context.Context, ev *filerpb.SubscribeMetadataResponse, notes chan<- func()) error {
	note := func(fn func()) error {
		select {
		case notes <- fn:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n := ev.GetEventNotification()
	oldDir := ev.GetDirectory()
	newDir := n.GetNewParentPath()
	if newDir == "" {
		newDir = oldDir
	}
	oldE, newE := n.GetOldEntry(), n.GetNewEntry()
	// An event names its paths as a directory and an entry name. Both are
	// checked, never cleaned: a name such as "../etc" or a directory such
	// as "/a/../etc" would otherwise resolve to another path than the
	// event's, and a hidden or invalid entry is none of the mount's.
	if !cleanDir(oldDir) || !cleanDir(newDir) {
		return nil
	}
	if oldE != nil && !f.served(oldDir, oldE.GetName()) {
		oldE = nil
	}
	if newE != nil && !f.served(newDir, newE.GetName()) {
		newE = nil
	}
	f.dirChanged(oldDir)
	if newDir != oldDir {
		f.dirChanged(newDir)
	}
	if len(oldE.GetHardLinkId()) > 0 || len(newE.GetHardLinkId()) > 0 {
		f.linkEvents.Add(1)
	}
	// A directory deleted, made or moved takes the listings kept by its
	// path and beneath it along: they would serve a directory made again
	// there. (Its attributes changing in place change no listing.)
	moved := oldE == nil || newE == nil || newDir != oldDir || newE.GetName() != oldE.GetName()
	if moved && oldE.GetIsDirectory() {
		f.listings.treeChanged(childPath(oldDir, oldE.GetName()))
	}
	if moved && newE.GetIsDirectory() {
		f.listings.treeChanged(childPath(newDir, newE.GetName()))
	}
	if oldE != nil && (newE == nil || newDir != oldDir || newE.GetName() != oldE.GetName()) {
		// Deleted, or renamed away: the old name must go from the kernel,
		// and its node, which may linger in the tree, must ask again.
		if len(oldE.GetHardLinkId()) == 0 { // a hard link's other names keep them
			f.forgetChunks(oldE, newE) // a renamed file keeps its chunks
		}
		if ino := f.inodeAt(childPath(oldDir, oldE.GetName())); ino != nil {
			if n, ok := ino.Operations().(interface{ expire() }); ok {
				n.expire()
			}
		}
		if len(oldE.GetHardLinkId()) > 0 {
			// The node lives on under its other names: take this one out
			// of the tree, so that the node no longer answers to it.
			if parent := f.inodeAt(oldDir); parent != nil {
				parent.RmChild(oldE.GetName())
			}
		}
		if err := f.invalidateName(oldDir, oldE.GetName(), note); err != nil {
			return err
		}
	}
	if newE == nil {
		return nil
	}
	p := childPath(newDir, newE.GetName())
	ino := f.inodeAt(p)
	if ino == nil || ino.StableAttr().Mode != f.sysMode(newE)&syscall.S_IFMT || !sameKey(ino, inodeKey(p, newE)) {
		// Unknown to the kernel but for a possible negative dentry, or
		// now of another type: the kernel must look the name up again.
		if err := f.invalidateName(newDir, newE.GetName(), note); err != nil || len(newE.GetHardLinkId()) == 0 {
			return err
		}
		// A hard link: the kernel may know its node by another of its
		// names only, which the event does not name. The node is found
		// by the link, and takes the new entry.
		emb := f.inodes.nodeByKey(inodeKey(p, newE))
		if emb == nil || emb.EmbeddedInode().StableAttr().Mode != f.sysMode(newE)&syscall.S_IFMT {
			return nil
		}
		ino = emb.EmbeddedInode()
	}
	en, ok := ino.Operations().(interface {
		setEntry(*filerpb.Entry) *filerpb.Entry
	})
	if !ok {
		return nil
	}
	// setEntry drops a file's pages if its bytes changed; its old chunks
	// go from the block cache.
	if prev := en.setEntry(newE); prev != nil {
		f.forgetChunks(prev, newE)
	}
	return note(func() { ino.NotifyContent(-1, 0) }) // attributes
}

// dirChanged makes every cached listing of directory p stale.
func (f *FS) dirChanged(p string) { f.listings.changed(p) }

// invalidateName tells the kernel to drop its dentry dir/name, if it knows dir.
func (f *FS) invalidateName(dir, name string, note func(func()) error) error {
	if parent := f.inodeAt(dir); parent != nil {
		return note(func() { parent.NotifyEntry(name) })
	}
	return nil
}

// forgetChunks drops the cached blocks of old's chunks that cur (may be
// nil) no longer uses.
func (f *FS) forgetChunks(old, cur *filerpb.Entry) {
	keep := map[string]bool{}
	for _, c := range cur.GetChunks() {
		keep[chunkmap.FileID(c)] = true
	}
	for _, c := range old.GetChunks() {
		if ch := chunkmap.ChunkFromFiler(c); !keep[ch.FileID] && !c.GetIsChunkManifest() {
			f.chunks.Forget(ch)
		}
	}
}

// sameKey tells whether ino holds inode key key: an entry that became a hard
// link, or stopped being one, needs another node, found by a new look-up.
func sameKey(ino *gofs.Inode, key string) bool {
	n, ok := ino.Operations().(interface{ inodeKey() string })
	return ok && n.inodeKey() == key
}

// childPath is the path of entry name, a valid name, in clean directory dir.
func childPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// inodeAt finds the inode of clean filer path p among those the kernel
// knows, or nil. It walks from the root, so it only finds what lookups
// created.
func (f *FS) inodeAt(p string) *gofs.Inode {
	if !cleanDir(p) {
		return nil
	}
	rel, ok := strings.CutPrefix(p, f.opts.Root)
	if !ok || (rel != "" && f.opts.Root != "/" && !strings.HasPrefix(rel, "/")) {
		return nil
	}
	ino := f.root.EmbeddedInode()
	for _, name := range strings.Split(rel, "/") {
		if name == "" {
			continue
		}
		if ino = ino.GetChild(name); ino == nil {
			return nil
		}
	}
	return ino
}
