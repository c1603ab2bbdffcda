package pagecache

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
	"golang.org/x/sys/unix"
)

// diskWrite is a needle being written: done closes when the write is
// over, committed or not; fill marks a write that Cache.FillDisk started
// ahead of the needle's readers, which an open waits for.
type diskWrite struct {
	done chan struct{}
	fill bool
}

// writer returns a sink for the whole needle of key, or nil when the tier
// will not take it: it is on disk already, being written, larger than a
// half of the tier, or writes are paused after the disk filled up. fill
// says that Cache.FillDisk asks (see fillingNamed).
func (d *disk) writer(key string, size int64, fill bool) *diskWriter {
	return d.writerNamed(key, diskName(key), size, fill)
}

// writerNamed is writer for a needle whose file name (diskName of key) the
// caller has made.
func (d *disk) writerNamed(key, name string, size int64, fill bool) *diskWriter {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byName[name]; ok && e.Value.(*diskEntry).size > 0 {
		return nil
	}
	if _, ok := d.writing[name]; ok || size > d.capacity/2 || time.Now().Before(d.pausedUntil) {
		return nil
	}
	d.writing[name] = diskWrite{done: make(chan struct{}), fill: fill}
	return &diskWriter{d: d, key: key, name: name, size: size}
}

// written returns a channel that closes when the needle being written
// under key is on disk or given up, or nil when none is being written.
func (d *disk) written(key string) <-chan struct{} { return d.writtenNamed(diskName(key)) }

// writtenNamed is written for the needle's file name (diskName).
func (d *disk) writtenNamed(name string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writing[name].done
}

// fillingNamed is written for a write of the needle named name that
// Cache.FillDisk started, and nil for any other (a reader's fetch, whose
// needle may be large and slow).
func (d *disk) fillingNamed(name string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.writing[name]; w.fill {
		return w.done
	}
	return nil
}

// diskWriter takes a needle's logical bytes during its fetch (it is a
// needle.NeedleSink) into a temporary file, summing each block, and puts
// the needle in place on commit, after the fetch verified it. Used by one
// goroutine at a time.
type diskWriter struct {
	d         *disk
	key, name string
	size      int64 // the needle's, as its chunk says
	f         *fileWriter
	n         int64    // bytes written
	crcs      []uint32 // of the blocks done
	cur       uint32   // CRC of the block in progress
	err       error    // the first write error; the needle is then not kept
	room      []byte   // what Fill last lent, until Filled
	// dropBehind writes the file past the page cache (RWF_DONTCACHE:
	// the kernel lets each page go once it is on disk), for a needle
	// fetched for a buffered reader, whose bytes the kernel keeps in its
	// page cache of the mount's file: kept here too, they would be there
	// twice. The kernel then takes its next pages from those it let go,
	// not new ones, which on this VM cost a fault on the host each: `dd`
	// of a cold GiB by hand (4 MiB chunks, page cache dropped 6 s before),
	// three alternated pairs, 301-377 -> 466-471 MB/s, and 3.4-4.6 -> 1.8-1.9
	// CPU-seconds of the mount. A re-read from the disk tier after the
	// page cache was dropped ran slower (465-763 against 571-1003 MB/s):
	// not the files, which O_DIRECT read as fast (821-928 against 866-953),
	// but the pages, which the buffered run had just freed twice as many of.
	dropBehind bool
}

// Write implements io.Writer; it never fails (see needle.NeedleSink).
func (w *diskWriter) Write(p []byte) (int, error) {
	w.take(p, false)
	return len(p), nil
}

// WriteKept implements needle.KeptWriter: p, a run of the memory tier's
// slots, stays unchanged until the fetch returns, which commits or aborts
// the writer, so it is written from where it lies.
func (w *diskWriter) WriteKept(p []byte) {
	w.take(p, true)
}

// take writes p to the file and sums its blocks.
func (w *diskWriter) take(p []byte, kept bool) {
	if w.err != nil {
		return
	}
	if w.f == nil {
		if w.err = w.open(); w.err != nil {
			return
		}
	}
	var err error
	if kept {
		err = w.f.WriteKept(p)
	} else {
		_, err = w.f.Write(p)
	}
	if err != nil {
		w.err = err
		return
	}
	w.sumBlocks(p)
}

// Fill implements needle.FillWriter: the room left in the file's buffer,
// none once a write failed.
func (w *diskWriter) Fill() []byte {
	if w.err != nil {
		return nil
	}
	if w.f == nil {
		if w.err = w.open(); w.err != nil {
			return nil
		}
	}
	room, err := w.f.Fill()
	if err != nil {
		w.err = err
		return nil
	}
	w.room = room
	return room
}

// Filled implements needle.FillWriter.
func (w *diskWriter) Filled(n int) {
	if w.err != nil {
		return
	}
	// Summed before Filled, which may hand the buffer to a write.
	w.sumBlocks(w.room[:n])
	w.room = nil
	if err := w.f.Filled(n); err != nil {
		w.err = err
	}
}

// sumBlocks adds p, the next bytes of the needle, to the block checksums.
func (w *diskWriter) sumBlocks(p []byte) {
	bs := w.d.bs
	for q := p; len(q) > 0; {
		in := bs - w.n%bs // room left in the current block
		k := min(int64(len(q)), in)
		w.cur = needle.CRC32C(w.cur, q[:k])
		w.n += k
		q = q[k:]
		if w.n%bs == 0 {
			w.crcs = append(w.crcs, w.cur)
			w.cur = 0
		}
	}
}

func (w *diskWriter) open() error {
	dir := filepath.Join(w.d.root, w.name[:2])
	f, err := createFile(tempName(dir, w.name+".dat"))
	if errors.Is(err, fs.ErrNotExist) { // the directory was wiped: again
		if err = os.MkdirAll(dir, 0o700); err == nil {
			f, err = createFile(tempName(dir, w.name+".dat"))
		}
	}
	if err != nil {
		return err
	}
	if w.dropBehind {
		f.passPageCache(w.size)
	}
	w.f = f
	return nil
}

// tempName is a new name in dir for a temporary file of base, unique to
// this writer.
func tempName(dir, base string) string {
	var r [8]byte
	rand.Read(r[:])
	return filepath.Join(dir, base+".tmp"+hex.EncodeToString(r[:]))
}

// createTemp creates a new file in dir named for base, unique to this
// writer.
func createTemp(dir, base string) (*os.File, error) {
	return openFile(tempName(dir, base), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
}

// Reset implements needle.NeedleSink: what was written is void.
func (w *diskWriter) Reset() {
	w.discard()
	w.n, w.crcs, w.cur, w.err = 0, w.crcs[:0], 0, nil
}

func (w *diskWriter) discard() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

// abort gives up on the needle: its fetch failed (or commit is done with
// the writer).
func (w *diskWriter) abort() {
	w.discard()
	w.d.mu.Lock()
	if dw, ok := w.d.writing[w.name]; ok {
		close(dw.done)
		delete(w.d.writing, w.name)
	}
	w.d.mu.Unlock()
}

// commit puts the needle in place; the fetch verified it. A needle shorter
// than minLen (the chunk's size), none at all (the fetch went through a
// fetcher that does not tee), or a write error discards it.
func (w *diskWriter) commit(minLen int64) {
	d := w.d
	defer w.abort()
	if w.err == nil && (w.f == nil || w.n < max(minLen, 1)) {
		return
	}
	if w.err == nil {
		w.err = w.f.Flush()
	}
	if w.n%d.bs != 0 {
		w.crcs = append(w.crcs, w.cur)
	}
	sumPath, datPath := d.paths(w.name)
	inDat := false
	if w.err == nil {
		inDat, w.err = w.writeTable(sumPath)
	}
	if w.err == nil {
		w.err = renameFile(w.f.Name(), datPath)
	}
	if w.err != nil {
		d.writeErrs.Add(1)
		if errors.Is(w.err, syscall.ENOSPC) || errors.Is(w.err, syscall.EDQUOT) {
			d.mu.Lock()
			d.pausedUntil = time.Now().Add(diskPause)
			d.mu.Unlock()
		}
		return
	}
	t := &diskTable{length: w.n, crcs: append([]uint32(nil), w.crcs...)}
	stamp, ok := w.readBack(t)
	w.f.Close()
	w.f = nil
	if !ok {
		os.Remove(datPath)
		d.corrupt.Add(1)
		return
	}
	d.writes.Add(1)
	d.writtenBytes.Add(uint64(w.n))
	d.mu.Lock()
	if e, ok := d.byName[w.name]; ok {
		// Its .sum was kept after its bytes were evicted (writeTable
		// then wrote a .sum, not an attribute).
		de := e.Value.(*diskEntry)
		d.used += w.n - de.size
		if de.inDat && !inDat { // not reached: a backstop for the books
			de.inDat = false
			d.used += sumCost
		}
		de.size, de.checked = w.n, stamp
		d.lru.MoveToFront(e)
	} else {
		e := &diskEntry{name: w.name, size: w.n, inDat: inDat, checked: stamp}
		d.byName[w.name] = d.lru.PushFront(e)
		d.used += e.cost()
	}
	d.cacheTableLocked(w.name, t)
	d.evictLocked()
	d.mu.Unlock()
}

// readBack reads a small needle's file, just written and renamed into
// place, and checks it against its table, where the file system stamps
// every later change apart (disk.fineCtime): its stamp then stands for a
// check, and its first passthrough open needs none. That open would read
// it from disk in a shuffled loader's next epoch, after the page cache
// let it go; read back now, it comes from the page cache, and a write
// path that wrote other bytes than it summed is caught before anyone
// reads them. Larger needles are checked at their first open, as are all
// on other file systems and those written past the page cache (which
// would be read back from disk): it returns the zero stamp then. ok is
// false when the file does not hold the needle's bytes.
func (w *diskWriter) readBack(t *diskTable) (stamp fileStamp, ok bool) {
	d := w.d
	if !d.fineCtime || w.n > smallNeedle || w.dropBehind {
		return fileStamp{}, true
	}
	info, err := w.f.Stat()
	if err != nil {
		return fileStamp{}, true
	}
	if !d.checkWhole(w.f, t, w.n) {
		return fileStamp{}, false
	}
	return stampOf(info), true
}

// writeTable writes the needle's table, as an extended attribute of its
// temporary .dat when the needle is small and this process knows no .sum
// of it (one kept after its bytes were evicted), to the .sum at path
// otherwise. It reports whether the table went into the .dat. (Another
// mount's .sum of the same needle may stand beside the attribute: both
// describe the same bytes.)
func (w *diskWriter) writeTable(path string) (inDat bool, err error) {
	d := w.d
	if w.n <= smallNeedle && xattrSize(len(w.crcs)) <= xattrMax && !d.noXattr.Load() {
		d.mu.Lock()
		_, known := d.byName[w.name]
		d.mu.Unlock()
		if !known {
			// Any error but "not supported" (ENOSPC, which ext4 also
			// answers for a value that will not fit) leaves this one
			// table to a .sum; a full disk fails that too.
			err := w.f.SetXattr(xattrTable, encodeXattr(w.key, w.n, d.bs, w.crcs))
			if err == nil {
				return true, nil
			}
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				d.noXattr.Store(true)
			}
		}
	}
	return false, w.writeSum(path)
}

// writeSum writes the table file (see encodeSum). It is written in place, not
// through a temporary name and a rename as the .dat is: that CRC makes a
// torn table (a crash mid-write) fail to parse, which counts as no table,
// and the rename cost a shuffled loader's first epoch a tenth of the
// mount's time. A table already there (a needle fetched again after its
// bytes were evicted, or another mount's) is kept when it is this one;
// one that is not is replaced through a rename.
func (w *diskWriter) writeSum(path string) error {
	b := encodeSum(w.key, w.n, w.d.bs, w.crcs)
	f, err := openFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		if old, err := readNoFollow(path); err == nil && bytes.Equal(old, b) {
			return nil
		}
		f, err = createTemp(filepath.Dir(path), filepath.Base(path))
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if f.Name() != path {
		if err := renameFile(f.Name(), path); err != nil {
			os.Remove(f.Name())
			return err
		}
	}
	return nil
}

var (
	_ needle.NeedleSink = (*diskWriter)(nil)
	_ needle.KeptWriter = (*diskWriter)(nil)
)
