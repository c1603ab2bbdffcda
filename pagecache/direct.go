package pagecache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directWriter writes a file from its start with O_DIRECT, through two
// page-aligned buffers of directBufSize bytes: while one is being written
// (by a goroutine the writer owns and waits for), the other fills.
// Buffered writes were the largest cost of a cold sequential read: on the
// machines we measure, a GiB written through the page cache cost 2.9
// CPU-seconds of the kernel's time (page allocation, copies, ext4's
// delayed allocation, writeback throttling), where O_DIRECT in 256 KiB
// writes cost 0.35 and ran at 1.0 GB/s (1 MiB writes: 0.24 and 1.4 GB/s,
// but two such buffers per needle being written took 64 concurrent
// readers 30 MiB over the mount's memory bound). Writing in the background keeps the
// fetch that tees its needle here from waiting on the disk: written in
// line, a 4 MiB needle's fetch took twice as long. The tier reads its
// files back rarely and soon enough that the page cache has nothing to
// offer them; where it does (a warm re-read), the kernel's cache of the
// mounted file serves it. A file system that refuses O_DIRECT (tmpfs
// before Linux 6.6, some FUSE and network file systems) is written through
// the page cache instead. Used by one goroutine at a time.
type directWriter struct {
	f  *os.File
	fd int
	// buf fills while spare (when not nil) may be being written;
	// both page-aligned, nil until needed.
	buf, spare []byte
	n          int   // bytes in buf
	off        int64 // bytes handed to writes
	// kept lists the slices given to WriteKept to be written where they
	// lie, at off, once they add up to directBufSize; keptLen is their sum.
	// While it holds any, buf is empty.
	kept    [][]byte
	keptLen int
	// pending, when not nil, answers the write under way.
	pending chan error
	// direct is cleared by a write that finds O_DIRECT refused.
	direct atomic.Bool
}

const (
	directBufSize = 256 << 10
	// directAlign is what O_DIRECT asks of offsets, lengths and memory:
	// the page size covers every logical block size in use.
	directAlign = 4096
	// directBufsKept bounds the idle buffers kept for reuse: about the
	// number of needles fetched into the tier at once.
	directBufsKept = 4
)

// directBufs holds idle buffers. They are mmapped, so aligned and outside
// the Go heap; at most directBufsKept are kept, the rest unmapped.
var directBufs = struct {
	sync.Mutex
	free [][]byte
}{}

func getDirectBuf() ([]byte, error) {
	directBufs.Lock()
	if n := len(directBufs.free); n > 0 {
		b := directBufs.free[n-1]
		directBufs.free = directBufs.free[:n-1]
		directBufs.Unlock()
		return b, nil
	}
	directBufs.Unlock()
	return unix.Mmap(-1, 0, directBufSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
}

func putDirectBuf(b []byte) {
	directBufs.Lock()
	if len(directBufs.free) < directBufsKept {
		directBufs.free = append(directBufs.free, b)
		b = nil
	}
	directBufs.Unlock()
	if b != nil {
		unix.Munmap(b)
	}
}

// createDirect creates the file at path (O_EXCL) for a directWriter,
// with O_DIRECT when direct is set and the file system takes it.
func createDirect(path string, direct bool) (*directWriter, error) {
	const flags = os.O_RDWR | os.O_CREATE | os.O_EXCL
	var f *os.File
	var err error = unix.EINVAL
	if direct {
		f, err = os.OpenFile(path, flags|unix.O_DIRECT, 0o600)
		direct = err == nil
	}
	if errors.Is(err, unix.EINVAL) {
		f, err = os.OpenFile(path, flags, 0o600)
	}
	if err != nil {
		return nil, err
	}
	w := &directWriter{f: f, fd: int(f.Fd())}
	w.direct.Store(direct)
	return w, nil
}

// Write implements io.Writer.
func (w *directWriter) Write(p []byte) (int, error) {
	if err := w.submitKept(); err != nil {
		return 0, err
	}
	if w.buf == nil {
		b, err := getDirectBuf()
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

// WriteKept writes p, which stays unchanged until Flush or Close returns.
// Where nothing is buffered before it and, with O_DIRECT, p lines up
// (page-aligned, whole pages), it is written from where it lies, gathered
// with the slices after it into one pwritev of about directBufSize, which
// saves the copy into buf (a third of a cold sequential read's copying);
// otherwise it is copied as Write does.
func (w *directWriter) WriteKept(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	aligned := len(p)%directAlign == 0 && uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0
	if w.n != 0 || !aligned && w.direct.Load() {
		_, err := w.Write(p)
		return err
	}
	w.kept = append(w.kept, p)
	w.keptLen += len(p)
	if w.keptLen >= directBufSize {
		return w.submitKept()
	}
	return nil
}

// submitKept starts writing the kept slices, once the write under way is
// done.
func (w *directWriter) submitKept() error {
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

// submit starts writing the first n bytes of buf (a multiple of
// directAlign where direct) once the write under way is done, and swaps
// in the spare buffer to fill.
func (w *directWriter) submit(n int) error {
	if err := w.wait(); err != nil {
		return err
	}
	if w.spare == nil {
		b, err := getDirectBuf()
		if err != nil {
			return err
		}
		w.spare = b
	}
	buf, off := w.buf[:n], w.off
	w.pending = make(chan error, 1)
	go func(done chan<- error) { done <- w.writeAt(buf, off) }(w.pending)
	w.off += int64(n)
	w.buf, w.spare, w.n = w.spare, w.buf, 0
	return nil
}

// wait waits for the write under way, if any, and returns its error.
func (w *directWriter) wait() error {
	if w.pending == nil {
		return nil
	}
	err := <-w.pending
	w.pending = nil
	return err
}

// writeAt writes b at off.
func (w *directWriter) writeAt(b []byte, off int64) error {
	return w.writevAt([][]byte{b}, off)
}

// writevAt writes iovs, in order, at off, falling back to the page cache
// when the file system took O_DIRECT at open and refuses it now. A short
// write is continued, so that a full disk answers ENOSPC.
func (w *directWriter) writevAt(iovs [][]byte, off int64) error {
	iovs = slices.Clone(iovs)
	for len(iovs) > 0 {
		n, err := unix.Pwritev(w.fd, iovs, off)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EINVAL && w.direct.Load():
			if err = w.buffered(); err != nil {
				return err
			}
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
	return nil
}

// buffered turns O_DIRECT off for the rest of the file.
func (w *directWriter) buffered() error {
	fl, err := unix.FcntlInt(uintptr(w.fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(w.fd), unix.F_SETFL, fl&^unix.O_DIRECT)
	}
	if err == nil {
		w.direct.Store(false)
	}
	return err
}

// Flush writes what is buffered and waits for every write; the file is
// then exactly the bytes written. With O_DIRECT, a tail that is not a
// whole number of directAlign blocks is written padded with zeros and the
// file truncated back.
func (w *directWriter) Flush() error {
	if err := w.submitKept(); err != nil {
		return err
	}
	if err := w.wait(); err != nil {
		return err
	}
	if w.n == 0 {
		return nil
	}
	n := w.n
	if w.direct.Load() {
		n = (w.n + directAlign - 1) / directAlign * directAlign
		clear(w.buf[w.n:n])
	}
	if err := w.writeAt(w.buf[:n], w.off); err != nil {
		return err
	}
	padded := n != w.n
	w.off += int64(w.n)
	w.n = 0
	if padded {
		return w.f.Truncate(w.off)
	}
	return nil
}

// Name is the file's path.
func (w *directWriter) Name() string { return w.f.Name() }

// Close waits for the write under way, closes the file and gives the
// buffers back; what was not flushed is lost.
func (w *directWriter) Close() error {
	w.wait()
	for _, b := range [][]byte{w.buf, w.spare} {
		if b != nil {
			putDirectBuf(b)
		}
	}
	w.buf, w.spare, w.n, w.kept, w.keptLen = nil, nil, 0, nil, 0
	return w.f.Close()
}
