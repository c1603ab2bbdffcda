package fs

import (
	"context"
	"sync"
	"time"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// dirPage is how many entries a listing asks the filer for at a time: a
// directory of any size streams through without being held in memory
// whole.
const dirPage = 1024

// listPageTimeout bounds the fetch of one page of a listing. Readdirent
// waits for entries whatever signals its reader gets, so this is what
// keeps a silent filer from hanging a reader forever.
const listPageTimeout = 30 * time.Second

// listFeed streams a directory's listing from the filer in the background,
// a page of dirPage entries at a time, so that readdir can hand the kernel
// the entries that have come while the rest are on their way: the kernel's
// work on one reply then overlaps the filer's on the next entries, where a
// reply made of whole pages waited for the filer first.
//
// Its goroutine asks for the next page as soon as fewer than dirPage
// entries wait to be taken, so that about two pages at most are held
// however large the directory and however slow its reader. Each page's
// fetch is bounded by listPageTimeout; the wait for the reader is not.
//
// take is for one goroutine at a time (the dirStream's); stop may be called
// from any.
type listFeed struct {
	cancel context.CancelFunc
	ended  chan struct{} // closed when the goroutine has returned
	// wake holds a token when entries came or the listing ended since the
	// reader last looked; taken, when the reader took entries.
	wake, taken chan struct{}

	mu   sync.Mutex
	got  []*filerpb.Entry // come, not yet taken
	done bool             // the listing ended; err says how
	err  error
}

// startListFeed starts listing d from its first entry, on the file
// system's background group.
func startListFeed(d *dir) *listFeed {
	fsys := d.fsys
	ctx, cancel := context.WithCancel(fsys.bg)
	f := &listFeed{
		cancel: cancel,
		ended:  make(chan struct{}),
		wake:   make(chan struct{}, 1),
		taken:  make(chan struct{}, 1),
	}
	fsys.bgWG.Add(1)
	go func() {
		defer fsys.bgWG.Done()
		defer close(f.ended)
		f.run(ctx, fsys.meta, d.path)
	}()
	return f
}

func (f *listFeed) run(ctx context.Context, meta Meta, dir string) {
	after := ""
	for {
		n := 0
		pctx, cancel := context.WithTimeout(ctx, listPageTimeout)
		err := meta.List(pctx, dir, after, dirPage, func(e *filerpb.Entry) {
			n++
			after = e.GetName()
			f.mu.Lock()
			f.got = append(f.got, e)
			f.mu.Unlock()
			signal(f.wake)
		})
		cancel()
		if err != nil || n < dirPage {
			f.finish(err)
			return
		}
		for f.waiting() >= dirPage {
			select {
			case <-f.taken:
			case <-ctx.Done():
				f.finish(ctx.Err())
				return
			}
		}
	}
}

func (f *listFeed) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func (f *listFeed) finish(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	f.mu.Unlock()
	signal(f.wake)
}

// signal leaves a token in ch, a channel of capacity one, unless one is
// there.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// take returns the entries that came since the last take. When none has
// and wait is set, it waits for some or for the end; it does not give up
// when the reader is interrupted, since the page's timeout bounds the
// wait (see dirStream.next1). end says that the listing is over and that
// nothing more will come; err, why it ended early.
func (f *listFeed) take(wait bool) (got []*filerpb.Entry, end bool, err error) {
	for {
		f.mu.Lock()
		got, f.got = f.got, nil
		end, err = f.done, f.err
		f.mu.Unlock()
		if len(got) > 0 {
			signal(f.taken)
		}
		if len(got) > 0 || end || !wait {
			return got, end, err
		}
		<-f.wake
	}
}

// stop ends the listing and waits for its goroutine.
func (f *listFeed) stop() {
	f.cancel()
	<-f.ended
}
