package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/weedfuse/weedfuse/chunkmap"
	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/pagecache"
)

const (
	// datasetStreak is how many files of one directory must be opened in
	// ascending name order before the next ones are fetched ahead.
	datasetStreak = 3
	// datasetAhead is how many files one prefetch round covers, and
	// datasetAheadBytes how many bytes at most. A round fills its files
	// into the disk cache, scanFills at a time, and the reader's opens
	// then pass them through. 2000 files of 128 KiB read one at a time
	// in listing order, alternated runs: 32 files a round, 1,402-1,704
	// files/s; 128, 1,828-1,953.
	datasetAhead      = 128
	datasetAheadBytes = 64 << 20
	// datasetMaxFile skips files too large to be worth fetching whole
	// ahead of their reader; sequential readahead serves those.
	datasetMaxFile = 16 << 20
	// scanAfter is how many files of one directory, opened out of name
	// order, make a shuffled scan: a data loader with shuffle=True reads
	// every file of the directory once per epoch, in no order, and the
	// whole directory is worth filling into the disk cache.
	scanAfter = 16
	// scanFills is how many files a scan, or a round, fetches at once.
	// The scan reads needles in listing order, which is mostly their
	// order in the volume server's files, and a file it filled is opened
	// with passthrough, with no READ to the mount; a reader that gets
	// there first fetches its file alone, at random (into the disk cache
	// at its open, when it is small: pagecache.Cache.OpenWhole). Shuffled epoch 1
	// over 16,384 files of 128 KiB, alternated same-session runs: 4
	// fills, 1,385-1,514 files/s (the scan filled 8,100 files); 8,
	// 1,460-1,764 (10,800); 16, 1,654-1,892 (12,800); 32 no better.
	scanFills = 16
)

// dataset notices a reader walking a directory's files in listing order,
// as a PyTorch DataLoader does over a sorted file list, and fetches the
// next files ahead. Its methods are safe for concurrent use.
type dataset struct {
	mu sync.Mutex
	// last is the last file name opened; streak rises with each open in
	// ascending name order and halves with each open out of order, so the
	// interleaved opens of several DataLoader workers still count as a
	// walk, while a shuffled order rarely does.
	last   string
	streak int
	// from is the open that started the last prefetch round, ahead is
	// the name whose open starts the next one, end the last name the
	// last round fetched ahead ("" when it may have left files behind),
	// and tail the bytes of its files from ahead on, which its reader
	// has yet to reach when the next round is due; busy is set while a
	// round runs.
	from, ahead, end string
	tail             uint64
	busy             bool
	// shuffled counts opens out of name order; scanned is set once a
	// shuffled scan of the directory is due (one per dir node; scan skips
	// a directory scanned whole lately), and covering while it runs or
	// after it reached the end of the listing.
	shuffled int
	scanned  bool
	covering bool
}

// opened records that name was opened and says, if a prefetch round is
// due, after which name it lists its files and how many bytes of them it
// fetches at most.
func (d *dataset) opened(name string) (from string, budget uint64, due bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name > d.last {
		d.streak++
	} else {
		d.streak /= 2
		d.shuffled++
	}
	d.last = name
	// A scan fills the whole directory in listing order, which is what
	// a round would do for a part of it. Without this, a shuffled order
	// starts a round whenever three opens happen to ascend: a tenth of
	// the opens of a shuffled epoch, each listing 32 entries from the
	// filer to find them on disk already. Stopping them: 4,096 files,
	// three same-session runs each, epoch 1 1,256 -> 1,430 files/s and
	// epoch 2 3,654 -> 4,238 (medians).
	if d.streak < datasetStreak || d.busy || d.covering {
		return "", 0, false
	}
	// A round is due when the reader reaches the middle of the last one,
	// or starts over before it (the next epoch).
	if d.ahead != "" && name < d.ahead && name >= d.from {
		return "", 0, false
	}
	// A reader between the open that started the last round and that
	// round's end gets the files after its end: a round from the
	// reader's own name covered the last round's second half again, and
	// each file of it cost a second look on disk and a second request
	// for its pages. The new round's bytes and the last one's unread
	// tail together stay within datasetAheadBytes, as one round from
	// the reader's name did: more would push out of a small disk cache
	// the files the reader is about to open. Names compare as the filer
	// lists them, in byte order (as its default store does).
	from, budget = name, datasetAheadBytes
	if name >= d.from && name < d.end {
		from, budget = d.end, datasetAheadBytes-min(d.tail, datasetAheadBytes/2)
	}
	d.busy, d.from = true, name
	return from, budget, true
}

// scanDue reports, once, that the directory is being read in a shuffled
// order.
func (d *dataset) scanDue() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.scanned || d.shuffled < scanAfter {
		return false
	}
	d.scanned, d.covering = true, true
	return true
}

// shuffledScan reports whether the directory was found read in a shuffled
// order, and scanned.
func (d *dataset) shuffledScan() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.scanned
}

// scanStopped records that the scan stopped before the end of the listing
// (no room on disk, or an error): rounds may help again.
func (d *dataset) scanStopped() {
	d.mu.Lock()
	d.covering = false
	d.mu.Unlock()
}

// done ends a round; ahead is the name whose open starts the next one
// ("" for the next open in listing order: the round failed), end the last
// name it fetched ahead ("" when it may have left some files unfetched:
// the next round then starts at its reader) and tail the bytes of its
// files from ahead on.
func (d *dataset) done(ahead, end string, tail uint64) {
	d.mu.Lock()
	d.busy, d.ahead, d.end, d.tail = false, ahead, end, tail
	d.mu.Unlock()
}

// noteOpen is called when a file of d is read from its start, which is
// where a reader that opens it starts; it may start a prefetch round on
// the file system's background group.
func (d *dir) noteOpen(name string) {
	from, budget, due := d.ds.opened(name)
	if d.ds.scanDue() {
		d.scan()
	}
	if !due {
		return
	}
	f := d.fsys
	f.bgWG.Add(1)
	go func() {
		defer f.bgWG.Done()
		ahead, end, tail := from, "", uint64(0)
		defer func() { d.ds.done(ahead, end, tail) }()
		page, err := f.listPage(d.path, from, datasetAhead)
		if err != nil {
			// Not a reader's error: the files' own reads will say more.
			if !errors.Is(err, context.Canceled) {
				slog.Debug("dataset prefetch failed", "dir", d.path, "err", err)
			}
			ahead = "" // the next open tries again
			return
		}
		// The round's files: those worth fetching ahead, up to budget.
		var picked []*filerpb.Entry
		var bytes uint64
		for _, e := range page {
			if aheadSized(e) && f.served(d.path, e.GetName()) {
				if bytes += fileSize(e); bytes > budget {
					break
				}
				picked = append(picked, e)
			}
			end = e.GetName()
		}
		// The next round starts once the reader opens this file.
		switch {
		case len(picked) > 0:
			ahead = picked[len(picked)/2].GetName()
			for _, e := range picked[len(picked)/2:] {
				tail += fileSize(e)
			}
		case len(page) > 0:
			ahead = page[len(page)/2].GetName()
		}
		round := make(chan *filerpb.Entry, len(picked))
		for _, e := range picked {
			round <- e
		}
		close(round)
		// A round fills what its reader is about to fetch anyway, and
		// makes room as that fetch would; but not in a directory read in
		// a shuffled order, whose scan stopped on a full disk cache and
		// whose files were filled in no order of use.
		evict := !d.ds.shuffledScan()
		// noRoom: the disk cache has no room (or there is none); the
		// rest of the round goes to memory.
		// short: a file was not filled into the disk cache (it went to
		// memory, where the readahead budget may have cut it short, or
		// its fill failed), so the next round starts at its reader.
		var noRoom, short atomic.Bool
		runFillers(min(scanFills, len(picked)), round, func(e *filerpb.Entry) {
			how := fillHow{disk: !noRoom.Load(), evict: evict, pages: true}
			err := f.fillFile(f.bg, e, how)
			if errors.Is(err, pagecache.ErrNoRoom) {
				noRoom.Store(true)
			}
			if err != nil || !how.disk {
				short.Store(true)
			}
		})
		if short.Load() {
			end = ""
		}
	}()
}

// listPage lists up to limit entries of dir after from, whole, for the
// file system's background work.
func (f *FS) listPage(dir, from string, limit int) ([]*filerpb.Entry, error) {
	var page []*filerpb.Entry
	err := f.meta.List(f.bg, dir, from, limit, func(e *filerpb.Entry) { page = append(page, e) })
	return page, err
}

// runFillers calls fill for each file from files, workers at a time, and
// returns when files is closed and drained. The workers live as long as
// the run: a goroutine per file grew its stack anew for every fetch (HTTP
// round trip, disk write), 7 % of the mount's CPU in a shuffled epoch 1.
func runFillers(workers int, files <-chan *filerpb.Entry, fill func(*filerpb.Entry)) {
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range files {
				fill(e)
			}
		}()
	}
	wg.Wait()
}

// aheadSized reports whether e is a file of chunks (not a directory, not
// inline) of a size worth fetching whole ahead of its readers: at most
// datasetMaxFile, and not empty.
func aheadSized(e *filerpb.Entry) bool {
	size := fileSize(e)
	return !e.GetIsDirectory() && len(e.GetContent()) == 0 && size > 0 && size <= datasetMaxFile
}

// smallFile returns the chunk map and size of e when it is a regular file
// worth fetching whole ahead of its readers: of chunks, not inline, and
// at most datasetMaxFile long. A chunk list that does not build is left
// to the file's reader, which will meet and report the error itself.
func (f *FS) smallFile(ctx context.Context, e *filerpb.Entry) (*chunkmap.Map, int64, bool) {
	if !aheadSized(e) {
		return nil, 0, false
	}
	if f.sysMode(e)&syscall.S_IFMT != syscall.S_IFREG {
		return nil, 0, false
	}
	m, err := chunkmap.Build(ctx, e.GetChunks(), f.manifests)
	if err != nil {
		return nil, 0, false
	}
	return m, int64(fileSize(e)), true
}

// scan fills the disk cache with the directory's files, in listing order,
// scanFills at a time, until the listing ends or the disk cache has no
// room: the readers of a shuffled epoch then find their files on local
// disk. A directory this mount scanned to its end lately, every file
// filled, is not scanned again (scanLog). It runs on the file system's
// background group and ends with it.
func (d *dir) scan() {
	f := d.fsys
	if f.scans.recent(d.path) {
		return
	}
	f.bgWG.Add(1)
	go func() {
		defer f.bgWG.Done()
		// full: the disk cache has no room; missed: a file could not be
		// filled (its readers will fetch it).
		var full, missed atomic.Bool
		files := make(chan *filerpb.Entry)
		var ended bool
		go func() {
			defer close(files)
			ended = d.scanList(files, &full)
		}()
		runFillers(scanFills, files, func(e *filerpb.Entry) {
			if full.Load() {
				return
			}
			switch err := f.fillFile(f.bg, e, fillHow{disk: true}); {
			case errors.Is(err, pagecache.ErrNoRoom):
				full.Store(true)
			case err != nil:
				missed.Store(true)
				slog.Debug("dataset scan: file not filled", "dir", d.path, "err", err)
			}
		})
		switch {
		case !ended || full.Load():
			d.ds.scanStopped()
		case !missed.Load() && f.bg.Err() == nil:
			f.scans.record(d.path)
		}
	}()
}

// scanList hands the directory's files, in listing order, to the scan's
// workers until the listing ends (it then returns true), the disk cache
// has no room, or the file system stops.
func (d *dir) scanList(files chan<- *filerpb.Entry, full *atomic.Bool) bool {
	f := d.fsys
	from := ""
	for !full.Load() {
		page, err := f.listPage(d.path, from, 1024)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				slog.Debug("dataset scan failed", "dir", d.path, "err", err)
			}
			return false
		}
		for _, e := range page {
			if full.Load() {
				return false
			}
			if !f.served(d.path, e.GetName()) {
				continue
			}
			select {
			case files <- e:
			case <-f.bg.Done():
				return false
			}
		}
		if len(page) < 1024 {
			return true
		}
		from = page[len(page)-1].GetName()
	}
	return false
}

// fillHow says what fillFile does with each chunk of a file.
type fillHow struct {
	// disk fills the chunk into the disk cache, making room when evict
	// is set (see pagecache.Cache.FillDisk).
	disk, evict bool
	// pages then asks for its pages (pagecache.Cache.Prefetch): from the
	// disk cache's file into the kernel's page cache, where the reader's
	// passthrough reads find them, or into memory when the chunk is not
	// on disk. 2000 x 128 KiB read again in name order, page cache
	// dropped, alternated runs: 3,676-3,796 files/s when rounds prefetched
	// into memory, 2,346-2,876 once they filled the disk and the reader
	// waited on the disk for each file, 4,343-5,751 with its pages asked
	// for ahead. A chunk the fill just wrote is in the page cache already
	// and is not asked for again.
	pages bool
}

// fillFile fetches a small regular file's chunks ahead of its readers, as
// how says; a file that smallFile passes over is no error. An error
// wrapping pagecache.ErrNoRoom means the disk cache has no room (with
// pages, the rest of the file went to memory); any other, that the file
// is not all on disk (its reader will fetch it, and meet the error
// itself).
func (f *FS) fillFile(ctx context.Context, e *filerpb.Entry, how fillHow) error {
	m, size, ok := f.smallFile(ctx, e)
	if !ok {
		return nil
	}
	var noRoom error
	for _, v := range m.Views(nil, 0, size, size) {
		if v.Hole {
			continue
		}
		wrote := false
		if how.disk && noRoom == nil {
			var err error
			wrote, err = f.chunks.FillDisk(ctx, v.Chunk, how.evict)
			switch {
			case errors.Is(err, pagecache.ErrNoRoom) && how.pages:
				noRoom = fmt.Errorf("fill %s: %w", e.GetName(), err)
			case err != nil:
				return fmt.Errorf("fill %s: %w", e.GetName(), err)
			}
		}
		// A chunk just written is in the page cache already: asking the
		// kernel to read it again cost an open, an fadvise and a close
		// per file for nothing.
		if how.pages && !wrote {
			f.chunks.Prefetch(v.Chunk, v.ChunkOff, v.Len, pagecache.KernelAhead)
		}
	}
	return noRoom
}
