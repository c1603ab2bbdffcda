package pagecache

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fileWriter writes a disk-tier file from its start, in the background: a
// write of writeBufSize bytes runs in a goroutine the writer owns and waits
// for, while the fetch that tees its needle here streams on. Bytes handed
// to WriteKept (the memory tier's slots, which stay put until the fetch
// returns) are written where they lie, with no copy; the rest is copied
// into one of two buffers, which fill in turn.
//
// Measured against the writer before it (a bufio.Writer, written in line
// with the fetch), three runs each of the bench's sequential workloads in
// one session: the mount's CPU for a cold GiB fell from 2.01 to 1.77
// seconds (buffered) and 1.85 to 1.66 (O_DIRECT reader), and a warm
// O_DIRECT re-read rose from 1.17x to 1.32x weed mount. Writing with
// O_DIRECT was tried and dropped: it saved the kernel's page-cache work
// (dd here: 2.9 CPU-seconds a GiB buffered, 0.24 direct), but a cold read
// then competed for the disk with the volume server's reads, and the files
// came back from disk rather than from the page cache when read again
// (cold 0.66x and warm 0.67x weed mount, against 0.95x and 1.17x).
// Against RWF_DONTCACHE, O_DIRECT lost again (a cold GiB of 4 MiB
// needles by hand, three alternated pairs: 320-434 against 496-546 MB/s,
// with up to twice the mount's CPU). Writing a shuffled scan's small files with
// O_DIRECT was dropped too: its loader then read each file cold from disk
// (the README's epoch 1).
// RWF_DONTCACHE (dontCache) is the middle way, for needles whose reader
// the kernel's page cache serves anyway (diskWriter.dropBehind): written
// through the page cache as any file, each page let go once on disk.
// Used by one goroutine at a time.
type fileWriter struct {
	f  *os.File
	fd int
	// dontCache writes with RWF_DONTCACHE (passPageCache).
	dontCache bool
	// buf fills while spare (when not nil) may be being written; both
	// nil until needed.
	buf, spare []byte
	n          int   // bytes in buf
	off        int64 // bytes handed to writes
	// kept lists the slices given to WriteKept to be written where they
	// lie, at off, once they add up to writeBufSize; keptLen is their sum.
	// While it holds any, buf is empty.
	kept    [][]byte
	keptLen int
	// pending, when not nil, answers the write under way.
	pending chan error
}

const (
	writeBufSize = 256 << 10
	// writeBufsKept bounds the idle buffers kept for reuse: a shuffled
	// loader's first epoch writes 16 to 24 needles at once (the scan's
	// workers and the loader's opens), and with 4 kept it mapped a buffer
	// anew for one needle in 16, each page of it a fault and a clearing.
	writeBufsKept = 16
)

// writeBufs holds idle buffers. They are mmapped, outside the Go heap (one
// per needle written was, in a shuffled loader's first epoch, nine tenths
// of what the mount allocated); at most writeBufsKept are kept, the rest
// unmapped.
var writeBufs = struct {
	sync.Mutex
	free [][]byte
}{}

func getWriteBuf() ([]byte, error) {
	writeBufs.Lock()
	if n := len(writeBufs.free); n > 0 {
		b := writeBufs.free[n-1]
		writeBufs.free = writeBufs.free[:n-1]
		writeBufs.Unlock()
		return b, nil
	}
	writeBufs.Unlock()
	return unix.Mmap(-1, 0, writeBufSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
}

func putWriteBuf(b []byte) {
	writeBufs.Lock()
	if len(writeBufs.free) < writeBufsKept {
		writeBufs.free = append(writeBufs.free, b)
		b = nil
	}
	writeBufs.Unlock()
	if b != nil {
		unix.Munmap(b)
	}
}

// createFile creates the file at path (O_EXCL) for a fileWriter.
func createFile(path string) (*fileWriter, error) {
	f, err := openFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &fileWriter{f: f, fd: int(f.Fd())}, nil
}

// openFile is os.OpenFile for the cache's regular files, in one system
// call and a fcntl. os.OpenFile makes every descriptor non-blocking, offers
// it to the network poller, which refuses a regular file, and makes it
// blocking again: four fcntl and an epoll_ctl more for each file, which a
// shuffled loader pays for every file it reads (strace of its second
// epoch: 14 system calls per file besides the runtime's futex and
// nanosleep, 10 with this). Its errors are *fs.PathError, as
// os.OpenFile's are.
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	fd, err := unix.Open(path, flag|unix.O_CLOEXEC, perm)
	for err == unix.EINTR {
		fd, err = unix.Open(path, flag|unix.O_CLOEXEC, perm)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// renameFile is os.Rename without the lstat of the new name that
// os.Rename makes first (to refuse a directory there, which the cache never
// has). Its errors are *os.LinkError, as os.Rename's are.
func renameFile(from, to string) error {
	if err := unix.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// Write implements io.Writer.
func (w *fileWriter) Write(p []byte) (int, error) {
	if err := w.submitKept(); err != nil {
		return 0, err
	}
	if w.buf == nil {
		b, err := getWriteBuf()
		if err != nil {
			return 0, err
		}
		w.buf = b
	}
	done := 0
	for len(p) > 0 {
		k := copy(w.buf[w.n:], p)
		w.n += k
		done += k
		p = p[k:]
		if w.n == len(w.buf) {
			if err := w.submit(w.n); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// Fill returns the room left in the buffer being filled, never empty, for
// the caller to read the next bytes into: Write without its copy. Filled
// then takes the first n bytes of it as written.
func (w *fileWriter) Fill() ([]byte, error) {
	if err := w.submitKept(); err != nil {
		return nil, err
	}
	if w.buf == nil {
		b, err := getWriteBuf()
		if err != nil {
			return nil, err
		}
		w.buf = b
	}
	// Write and Filled submit a full buffer at once.
	return w.buf[w.n:], nil
}

// Filled takes n bytes of the room Fill returned as written.
func (w *fileWriter) Filled(n int) error {
	w.n += n
	if w.n == len(w.buf) {
		return w.submit(w.n)
	}
	return nil
}

// WriteKept writes p, which stays unchanged until Flush or Close returns.
// Where nothing is buffered before it, it is written from where it lies,
// gathered with the slices after it into one pwritev of about
// writeBufSize, which saves the copy into buf (a third of a cold
// sequential read's copying); otherwise it is copied as Write does.
func (w *fileWriter) WriteKept(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if w.n != 0 {
		_, err := w.Write(p)
		return err
	}
	w.kept = append(w.kept, p)
	w.keptLen += len(p)
	if w.keptLen >= writeBufSize {
		return w.submitKept()
	}
	return nil
}

// submitKept starts writing the kept slices, once the write under way is
// done.
func (w *fileWriter) submitKept() error {
	if w.keptLen == 0 {
		return nil
	}
	if err := w.wait(); err != nil {
		return err
	}
	iovs, off := w.kept, w.off
	w.pending = make(chan error, 1)
	go func(done chan<- error) { done <- w.writevAt(iovs, off) }(w.pending)
	w.off += int64(w.keptLen)
	w.kept, w.keptLen = nil, 0
	return nil
}

// submit starts writing the first n bytes of buf once the write under way
// is done, and swaps in the spare buffer to fill.
func (w *fileWriter) submit(n int) error {
	if err := w.wait(); err != nil {
		return err
	}
	if w.spare == nil {
		b, err := getWriteBuf()
		if err != nil {
			return err
		}
		w.spare = b
	}
	buf, off := w.buf[:n], w.off
	w.pending = make(chan error, 1)
	go func(done chan<- error) { done <- w.writevAt([][]byte{buf}, off) }(w.pending)
	w.off += int64(n)
	w.buf, w.spare, w.n = w.spare, w.buf, 0
	return nil
}

// wait waits for the write under way, if any, and returns its error.
func (w *fileWriter) wait() error {
	if w.pending == nil {
		return nil
	}
	err := <-w.pending
	w.pending = nil
	return err
}

// noDontCache is set once a write with RWF_DONTCACHE was refused: the
// kernel (before 6.14) or the cache's file system does not have it.
var noDontCache atomic.Bool

// writePiece bounds the bytes of one write system call. On a file system
// with large folios (ext4 since Linux 6.16), a buffered write allocates
// page-cache folios sized by its length, within the offset's alignment:
// from 128 KiB on (order 5), they are split from large free blocks. On a
// virtual machine whose host backs guest memory lazily, or takes back the
// free blocks the guest reports (virtio-balloon free page reporting; on
// this project's VM, kernel 6.18, for blocks of order 5 and up), the first
// touch of such memory can cost a fault in the host; that is the likely
// reason for what was measured here. 2000 files of 128 KiB, each written
// by one pwrite right after the caches were dropped, took 1.9–2.5 s of
// system time, 97 % of it the copy into the new folios; written by pieces
// of 64 KiB they took 0.12–0.14 s, and by 16 KiB 0.15–0.18 s; 16,384 such
// files took 5.7–6.0 s and 1.4–1.5 s. A piece of 64 KiB costs a 4 MiB
// needle 64 system calls instead of 16, a few microseconds each, where its
// copy takes hundreds. (Through RWF_DONTCACHE, the needles of a buffered
// reader, each piece also starts its own writeback; that path was not
// measured apart.)
const writePiece = 64 << 10

// writevAt writes iovs, in order, at off, in writes of at most writePiece
// bytes. A short write is continued, so that a full disk answers ENOSPC.
func (w *fileWriter) writevAt(iovs [][]byte, off int64) error {
	iovs = slices.Clone(iovs)
	var piece [][]byte
	for {
		// An empty slice at the front would make a write of no bytes,
		// which reads as a short one.
		for len(iovs) > 0 && len(iovs[0]) == 0 {
			iovs = iovs[1:]
		}
		if len(iovs) == 0 {
			return nil
		}
		piece = firstBytes(piece[:0], iovs, writePiece)
		var n int
		var err error
		dontCache := w.dontCache && !noDontCache.Load()
		if dontCache {
			n, err = unix.Pwritev2(w.fd, piece, off, unix.RWF_DONTCACHE)
		} else {
			n, err = unix.Pwritev(w.fd, piece, off)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EOPNOTSUPP && dontCache:
			// Written as any other file is, from now on.
			noDontCache.Store(true)
			continue
		case err != nil:
			return fmt.Errorf("write %s: %w", w.f.Name(), err)
		case n == 0:
			return fmt.Errorf("write %s: %w", w.f.Name(), io.ErrShortWrite)
		}
		off += int64(n)
		for n > 0 {
			k := min(n, len(iovs[0]))
			iovs[0] = iovs[0][k:]
			n -= k
			if len(iovs[0]) == 0 {
				iovs = iovs[1:]
			}
		}
	}
}

// firstBytes appends to dst the slices that hold the first n bytes of iovs
// (all of them when they hold fewer), the last one cut where n ends.
func firstBytes(dst, iovs [][]byte, n int) [][]byte {
	for i := 0; i < len(iovs) && n > 0; i++ {
		b := iovs[i][:min(len(iovs[i]), n)]
		dst = append(dst, b)
		n -= len(b)
	}
	return dst
}

// Flush writes what is buffered and waits for every write; the file is
// then exactly the bytes written.
func (w *fileWriter) Flush() error {
	if err := w.submitKept(); err != nil {
		return err
	}
	if err := w.wait(); err != nil {
		return err
	}
	if w.n == 0 {
		return nil
	}
	if err := w.writevAt([][]byte{w.buf[:w.n]}, w.off); err != nil {
		return err
	}
	w.off += int64(w.n)
	w.n = 0
	return nil
}

// passPageCache makes the writes go past the page cache (RWF_DONTCACHE,
// see diskWriter.dropBehind) for a file of size bytes, whose blocks it
// asks for first: its pages then go to disk as they are written, a few at
// a time, where the page cache would have handed ext4 the whole file at
// once, and a 4 MiB file came out in 2.2 extents on average, against 1.
// A failed fallocate only costs that.
func (w *fileWriter) passPageCache(size int64) {
	w.dontCache = true
	unix.Fallocate(w.fd, unix.FALLOC_FL_KEEP_SIZE, 0, size)
}

// Name is the file's path.
func (w *fileWriter) Name() string { return w.f.Name() }

// Stat returns the file's information.
func (w *fileWriter) Stat() (fs.FileInfo, error) { return w.f.Stat() }

// ReadAt reads the file at off; call it after Flush.
func (w *fileWriter) ReadAt(p []byte, off int64) (int, error) { return w.f.ReadAt(p, off) }

// SetXattr sets the file's extended attribute name to value.
func (w *fileWriter) SetXattr(name string, value []byte) error {
	return unix.Fsetxattr(w.fd, name, value, 0)
}

// Close waits for the write under way, closes the file and gives the
// buffers back; what was not flushed is lost.
func (w *fileWriter) Close() error {
	w.wait()
	for _, b := range [][]byte{w.buf, w.spare} {
		if b != nil {
			putWriteBuf(b)
		}
	}
	w.buf, w.spare, w.n, w.kept, w.keptLen = nil, nil, 0, nil, 0
	return w.f.Close()
}
