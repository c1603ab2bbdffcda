package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// minReply is how many entries a READDIRPLUS reply waits for before it
// ends early with what has come from the filer. Ending a reply early lets
// the kernel take in its entries (its dentries and inodes cost more than
// the mount's nodes) while the next ones stream in; the floor keeps a
// filer slower than the kernel from costing a round trip an entry.
const minReply = 128

// dirStream lists a directory: from the cached listing when it is fresh,
// otherwise from the filer as the entries stream in (listFeed). go-fuse
// serializes calls on one handle, so it needs no lock of its own; the
// feed's goroutine is stopped by Releasedir.
type dirStream struct {
	d    *dir
	page []*filerpb.Entry // entries taken, not yet handed out
	i    int              // next index in page
	// off is the offset of the next entry: entries handed out so far.
	off uint64
	cur *filerpb.Entry

	// feed streams the listing from the filer; nil once it ended, or when
	// the listing came from the cache.
	feed *listFeed
	// fed counts the entries taken from feed.
	fed int
	// end is set when feed ended with the entries now in page, and endErr
	// is how: the stream's error is handed out after its entries.
	end    bool
	endErr error
	// all collects a listing read from the filer, to be kept once complete
	// if the directory did not change meanwhile (gen: its change counter
	// when the stream began) and it is small enough to keep (all is
	// dropped past Options.MaxCachedListing).
	all    []*filerpb.Entry
	noKeep bool
	gen    uint64
	// links is the count of hard-link events when the stream began
	// (readMark); kept says the entries come from a listing kept from
	// before it (the directory's counter was gen then).
	links uint64
	kept  bool
	// err is a failed listing's errno, returned from then on: a listing
	// cut short must not pass for a complete one.
	err syscall.Errno
	// dots counts the entries "." and ".." handed out, which come first.
	dots int
	// reply is the request whose reply is being filled (go-fuse gives all
	// the Readdirent calls of one request the same context, a new one for
	// each request), and inReply how many entries it has. Holding the last
	// request's context keeps its address from being reused by a later
	// one, which would then pass for it.
	reply   context.Context
	inReply int
}

var (
	_ = (gofs.FileReaddirenter)((*dirStream)(nil))
	_ = (gofs.FileLookuper)((*dirStream)(nil))
	_ = (gofs.FileSeekdirer)((*dirStream)(nil))
	_ = (gofs.FileReleasedirer)((*dirStream)(nil))
)

func newDirStream(d *dir) *dirStream {
	s := &dirStream{d: d, links: d.fsys.linkEvents.Load()}
	if k, ok := d.cachedListing(); ok {
		s.page, s.kept, s.gen = k.entries, true, k.gen
		return s
	}
	if l, gen := d.staleListing(); l != nil && d.fsys.filerDown() {
		s.page, s.kept, s.gen = l, true, gen // see filerDown
		return s
	}
	s.gen = d.fsys.listings.gen(d.path)
	s.noKeep = !d.fsys.watched.Load() // see keepListing
	s.feed = startListFeed(d)
	return s
}

// stop ends the feed, if one is under way, and waits for it.
func (s *dirStream) stop() {
	if s.feed != nil {
		s.feed.stop()
		s.feed = nil
	}
}

// Readdirent hands out ".", "..", then the entries the mount serves (see
// FS.served), in the filer's order. It returns nil, ending the reply,
// when the listing ends, or when the reply has minReply entries and the
// next has not come yet.
func (s *dirStream) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if ctx != s.reply {
		s.reply, s.inReply = ctx, 0
	}
	if s.dots < 2 {
		s.dots++
		s.off++
		s.inReply++
		s.cur = nil
		de := &fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: s.d.StableAttr().Ino, Off: s.off}
		if s.dots == 2 {
			de.Name, de.Ino = "..", rootIno
			if _, parent := s.d.Parent(); parent != nil {
				de.Ino = parent.StableAttr().Ino
			}
		}
		return de, 0
	}
	for {
		e, errno := s.next1()
		if e == nil || errno != 0 {
			return nil, errno
		}
		if !s.d.fsys.served(s.d.path, e.Name) || entryExpired(e, time.Time{}) {
			continue
		}
		s.off++
		s.inReply++
		s.cur = e
		p := s.d.childPath(e.Name)
		ino := s.d.fsys.inodes.forListing(inodeKey(p, e))
		return &fuse.DirEntry{Name: e.Name, Mode: s.d.fsys.sysMode(e), Ino: ino, Off: s.off}, 0
	}
}

// next1 returns the next entry of the listing, served or not, or nil at
// its end or where the reply ends early (see Readdirent).
func (s *dirStream) next1() (*filerpb.Entry, syscall.Errno) {
	if s.err != 0 {
		return nil, s.err
	}
	for s.i == len(s.page) {
		if s.end {
			s.end = false
			s.finish()
			if s.err != 0 {
				return nil, s.err
			}
			continue
		}
		if s.feed == nil {
			return nil, 0
		}
		// No giving up when the request is interrupted: an error after
		// entries of the same reply makes go-fuse (v2.12.1) hold it as the
		// reply's overflow, and the errno it keeps then drops one entry
		// of every later reply, silently (a stress test lost 18 of 2000).
		// The page's own timeout bounds the wait.
		got, end, err := s.feed.take(s.inReply < minReply)
		if len(got) == 0 && !end {
			return nil, 0 // the reply ends early; the listing goes on
		}
		s.page, s.i = got, 0
		s.fed += len(got)
		s.end, s.endErr = end, err
		if !s.noKeep {
			if s.all = append(s.all, got...); len(s.all) > s.d.fsys.opts.MaxCachedListing {
				s.all, s.noKeep = nil, true
			}
		}
	}
	e := s.page[s.i]
	s.i++
	return e, 0
}

// finish ends the feed once its last entries are handed out: it keeps the
// listing, or stands the last one in for a filer that cannot be reached,
// or sets err.
func (s *dirStream) finish() {
	s.feed.stop()
	s.feed = nil
	err := s.endErr
	switch {
	case err == nil:
		if !s.noKeep {
			s.d.keepListing(s.all, s.gen)
		}
		s.all = nil
	case s.fed == 0 && unavailable(err):
		if l, _ := s.d.staleListing(); l != nil {
			// No entry of the filer's handed out yet: the last listing
			// stands in for it whole.
			s.page, s.i = l, 0
			return
		}
		fallthrough
	default:
		s.err = toErrno("readdir "+s.d.path, err)
	}
}

// Lookup serves READDIRPLUS from the entry just listed, with no RPC, but
// for a hard link's entry from a kept listing while the filer answers:
// that may predate an event that changed the link under another of its
// names (see keptListing.find).
func (s *dirStream) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if s.cur == nil || s.cur.Name != name || s.kept && len(s.cur.GetHardLinkId()) > 0 && !s.d.fsys.filerDown() {
		return s.d.Lookup(ctx, name, out)
	}
	return s.d.child(ctx, name, s.cur, out, readMark{s.gen, s.links}), 0
}

// Seekdir restarts the listing and skips to off; the kernel only seeks
// back when a reply was cut short or the directory is rewound.
func (s *dirStream) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	s.stop()
	*s = *newDirStream(s.d)
	for s.off < off {
		// Skipped entries go in no reply: none may end one early.
		s.reply = nil
		e, errno := s.Readdirent(ctx)
		if errno != 0 {
			return errno
		}
		if e == nil {
			break
		}
	}
	s.reply = nil
	return 0
}

func (s *dirStream) Releasedir(ctx context.Context, flags uint32) { s.stop() }
