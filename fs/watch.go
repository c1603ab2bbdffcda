package fs

import (
	"context"
	"log"
	"path"
	"strings"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/weedfuse/weedfuse/chunkmap"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// Subscriber streams the filer's metadata events under prefix from sinceNs
// on, calling fn for each, until ctx ends or the stream breaks. Safe for
// concurrent use.
type Subscriber interface {
	Subscribe(ctx context.Context, prefix string, sinceNs int64, fn func(*filerpb.SubscribeMetadataResponse) error) error
}

// unwatchedTTL is how long metadata is trusted while no subscription keeps
// it fresh: changes on the filer then show within a second.
const unwatchedTTL = time.Second

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
		f.watched.Store(true)
		err := sub.Subscribe(ctx, f.opts.Root, since, func(ev *filerpb.SubscribeMetadataResponse) error {
			since = max(since, ev.GetTsNs())
			backoff = 100 * time.Millisecond
			f.apply(ev, notes)
			return nil
		})
		f.watched.Store(false)
		if ctx.Err() != nil {
			return
		}
		log.Printf("weedfuse: metadata subscription: %v; metadata is trusted for %v until it is back", err, unwatchedTTL)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// apply brings cached state in line with one event.
func (f *FS) apply(ev *filerpb.SubscribeMetadataResponse, notes chan<- func()) {
	n := ev.GetEventNotification()
	oldDir := ev.GetDirectory()
	newDir := n.GetNewParentPath()
	if newDir == "" {
		newDir = oldDir
	}
	oldE, newE := n.GetOldEntry(), n.GetNewEntry()
	f.dirChanged(oldDir)
	if newDir != oldDir {
		f.dirChanged(newDir)
	}
	if oldE != nil && (newE == nil || newDir != oldDir || newE.GetName() != oldE.GetName()) {
		// Deleted, or renamed away: the old name must go from the kernel,
		// and its node, which may linger in the tree, must ask again.
		f.forgetChunks(oldE, newE) // a renamed file keeps its chunks
		if ino := f.inodeAt(path.Join(oldDir, oldE.GetName())); ino != nil {
			if n, ok := ino.Operations().(interface{ expire() }); ok {
				n.expire()
			}
		}
		f.invalidateName(oldDir, oldE.GetName(), notes)
	}
	if newE == nil {
		return
	}
	p := path.Join(newDir, newE.GetName())
	ino := f.inodeAt(p)
	if ino == nil {
		// Unknown to the kernel but for a possible negative dentry.
		f.invalidateName(newDir, newE.GetName(), notes)
		return
	}
	if ino.StableAttr().Mode != f.sysMode(newE)&syscallIFMT {
		f.invalidateName(newDir, newE.GetName(), notes)
		return
	}
	type entryNode interface {
		cached() (*filerpb.Entry, bool)
		setEntry(*filerpb.Entry)
	}
	en, ok := ino.Operations().(entryNode)
	if !ok {
		return
	}
	prev, _ := en.cached()
	en.setEntry(newE)
	if prev != nil && fingerprint(prev) != fingerprint(newE) {
		f.forgetChunks(prev, newE)
		notes <- func() { ino.NotifyContent(0, 0) }
	} else {
		notes <- func() { ino.NotifyContent(-1, 0) } // attributes only
	}
}

// syscallIFMT is S_IFMT, named here to keep the mode test above readable.
const syscallIFMT = 0o170000

// dirChanged drops the cached listing of directory p, if the kernel knows it.
func (f *FS) dirChanged(p string) {
	if ino := f.inodeAt(p); ino != nil {
		if d, ok := ino.Operations().(*dir); ok {
			d.changed()
		}
	}
}

// invalidateName tells the kernel to drop its dentry dir/name, if it knows dir.
func (f *FS) invalidateName(dir, name string, notes chan<- func()) {
	if parent := f.inodeAt(dir); parent != nil {
		notes <- func() { parent.NotifyEntry(name) }
	}
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

// inodeAt finds the inode of filer path p among those the kernel knows, or
// nil. It walks from the root, so it only finds what lookups created.
func (f *FS) inodeAt(p string) *gofs.Inode {
	rel, ok := strings.CutPrefix(path.Clean(p), f.opts.Root)
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
