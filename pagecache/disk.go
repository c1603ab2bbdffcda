package pagecache

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// disk is the cache's second tier: whole needles, decoded and verified
// before they were written, in files under one directory, with a table of
// CRC32C checksums of their blocks. It is weed mount's -cacheDir and
// -cacheCapacityMB. Safe for concurrent use.
//
// Layout: for a needle key K (needle.Chunk.Key) and N = hex(sha256(K))[:32],
// the directory holds N[:2]/N.dat, the needle's logical bytes, and its
// table: in N[:2]/N.sum, or, for a needle of smallNeedle bytes or less, in
// the .dat's extended attribute xattrTable. The .dat is written (in the
// background, see fileWriter) to a temporary name and renamed into place
// once whole, after its table, so a .dat never stands without it. The .sum
// is written in place: it ends with its own CRC32C, so a torn one reads as
// no table. A .sum outlives its needle's bytes: eviction removes a .dat
// and keeps the .sum (one small file) until it too is the least recently
// used, and a ranged fetch of a needle whose bytes are gone is still
// verified against it. A small needle has no use for that (it is always
// fetched whole), and a .sum was a second file created per needle: with
// 128 KiB needles, creating it cost a shuffled loader's first epoch a tenth
// of the mount's CPU, and a table small enough to sit in the .dat's inode
// costs far less. Its table goes with its .dat. A file system without user
// extended attributes gets .sum files for every needle.
//
// Invariants:
//   - Bytes under one key never change (a needle is immutable and the key
//     holds all that changes its decoding), so files need no invalidation,
//     and two mounts sharing a directory can only ever write the same bytes
//     under one name: renames make each .dat whole, and the last rename
//     wins with equal content; a .sum is created once (O_EXCL) and kept by
//     a second writer that finds it equal. Eviction by one mount is a miss
//     to the other.
//   - Every block read from a .dat is checked against its table before it
//     is used. A .dat handed to the kernel to read (openWholeNamed) is checked
//     whole when opened, unless it is unchanged, by its inode, size and
//     ctime (fileStamp), since it last passed: at an open, or when read
//     back right after this process wrote it. A file that fails (flipped
//     bytes, a truncated or vanished file, a wiped directory) is a miss:
//     it is removed, counted, and the needle fetched again. Nothing read
//     from disk is trusted otherwise.
//   - Used bytes are what this process knows of: what it found at start and
//     what it wrote. Each .sum counts as sumCost.
//   - A .dat found at start without a .sum is taken to carry its table;
//     the first use reads it, and a .dat without one is removed then. A
//     table is looked for where its entry says and then in the other
//     place: a mount sharing the directory may have written it there.
//
// Lock order: Cache.mu before disk.mu; disk.mu is never held across I/O
// except a directory scan's bookkeeping.
type disk struct {
	root     string
	capacity int64
	bs       int64 // table block size: the cache's BlockSize

	mu sync.Mutex
	// lru holds *diskEntry, most recently used at the front.
	lru    *list.List
	byName map[string]*list.Element
	used   int64
	// writing holds the names being written by this process, so that two
	// fetches of one needle write it once.
	writing map[string]diskWrite
	// pausedUntil stops writes for a while after the disk filled up.
	pausedUntil time.Time

	hits, hitBytes, misses     atomic.Uint64
	writes, writtenBytes       atomic.Uint64
	writeErrs, corrupt, evicts atomic.Uint64
	// checkedBytes counts what checkWhole read to check files.
	checkedBytes atomic.Uint64
	// fineCtime says the file system gives a change after a stat a ctime
	// of its own (see fineCtimes): a stamp taken right after a write is
	// then good at once.
	fineCtime bool
	// checkBufs holds *[]byte of a block each, through which checkWhole
	// reads a file.
	checkBufs sync.Pool
	// noXattr is set once the file system refused an extended attribute:
	// every table then goes to a .sum.
	noXattr atomic.Bool
}

// diskEntry is one needle known on disk. size is its .dat's length, or 0
// when only its .sum is left. t is its table once written or read from
// its .sum or attribute, nil before: kept with the entry, it costs 4 bytes per block
// (a 16,384th of the bytes the tier holds, at 64 KiB blocks), and reading
// it from its file again was a third of the mount's time opening files
// held on disk, once a bounded table cache had let it go.
type diskEntry struct {
	name string
	size int64
	t    *diskTable
	// inDat says the table is the .dat's extended attribute, with no .sum:
	// the entry ends with its .dat.
	inDat bool
	// checked is the state of the .dat when it was last read whole and
	// found good, by openWholeNamed or by the read-back after its write (zero:
	// never, or its bytes are gone).
	checked fileStamp
}

// cost is what the entry's files are charged.
func (e *diskEntry) cost() int64 {
	if e.inDat {
		return e.size
	}
	return e.size + sumCost
}

// holds reports whether a file of size bytes fits in the tier with what
// its needles' tables are charged (cost): a .sum for each needle over
// smallNeedle, as a stream's are, at most 1/tableShare of its bytes. The
// bench's 1 GiB file of 4 MiB needles in a tier of 1024 MiB fitted without
// them, evicted its own first needle as its last landed, and a second read
// of it after the caches were dropped fetched about a third of it again,
// each miss written anew evicting a needle the read had yet to reach
// (LRU's flood).
func (d *disk) holds(size int64) bool { return size+size/tableShare <= d.capacity }

const (
	// sumCost is what a .sum file is charged: a file system block.
	sumCost = 4096
	// tableShare bounds the share of a file's bytes that its tables are
	// charged, for needles over smallNeedle (holds).
	tableShare = smallNeedle / sumCost
	// diskPause is how long writes stop after the disk filled up.
	diskPause = 10 * time.Second
)

// DiskStats are the disk tier's counters.
type DiskStats struct {
	Capacity, Used, Entries int64
	// Hits and HitBytes count blocks served from disk; Misses count reads
	// that found the needle's file gone.
	Hits, HitBytes, Misses uint64
	// Writes and WrittenBytes count needles written whole.
	Writes, WrittenBytes uint64
	// WriteErrors count needles that could not be written (a full disk,
	// a vanished directory); Corrupt, files that failed their checksums
	// and were removed; Evictions, files removed to stay in capacity.
	WriteErrors, Corrupt, Evictions uint64
	// CheckedBytes counts bytes read to check files before the kernel
	// reads them itself (FUSE passthrough, Cache.OpenWhole).
	CheckedBytes uint64
}

// newDisk opens the tier in dir, creating it, and indexes what an earlier
// mount left there (a directory walk: about 50 ms for 10,000 needles).
// A capacity larger than the file system's free space (plus what the
// directory already holds) is clamped, with warn called once; warn is
// also called when the file system's ctimes are coarse (fineCtimes).
func newDisk(dir string, capacity, bs int64, warn func(string)) (*disk, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("disk cache %s: %w", dir, err)
	}
	// Every block read back is checked, but against a table that lies in
	// the same directory: whoever else may write there can plant a needle
	// with a table of their own bytes, which the mount would then serve
	// to every reader as the filer's.
	if err := CheckPrivateDir(dir); err != nil && !claimEmptyDir(dir) {
		return nil, err
	}
	d := &disk{
		root: filepath.Clean(dir), capacity: capacity, bs: bs, lru: list.New(),
		byName: map[string]*list.Element{}, writing: map[string]diskWrite{},
	}
	d.checkBufs.New = func() any {
		b := make([]byte, bs)
		return &b
	}
	d.removeTemps()
	d.fineCtime = fineCtimes(dir)
	if !d.fineCtime && warn != nil {
		// Said once, since it costs reads: no small needle is read
		// back when written, and a passthrough open of a file checks
		// it again unless it changed more than 1 s before its last
		// check (see disk.settled).
		warn(fmt.Sprintf("disk cache %s: the file system's ctimes could not be shown finer than the kernel's tick (Linux 6.13 multigrain timestamps), so each cache file is read and checked at its first open, and again at later opens if it changed within a second of that check", dir))
	}
	held := d.scan()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		if avail := int64(st.Bavail)*int64(st.Bsize) + held; capacity > avail {
			d.capacity = avail * 9 / 10
			if warn != nil {
				warn(fmt.Sprintf("disk cache %s: %d MiB asked for, but the file system has %d MiB free (counting %d MiB already cached); using %d MiB",
					dir, capacity>>20, avail>>20, held>>20, d.capacity>>20))
			}
		}
	}
	d.mu.Lock()
	d.evictLocked()
	d.mu.Unlock()
	return d, nil
}

// CheckPrivateDir returns an error, naming dir, its owner and mode and what
// to do, unless dir is a directory (not a symlink to one) that this
// process's effective user owns and that neither its group nor others may
// write: one where no one else can plant, replace or remove a file, so
// that what the disk tier reads there is what it wrote.
func CheckPrivateDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("disk cache %s: %w", dir, err)
	}
	euid := os.Geteuid()
	if st.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(dir)
		return fmt.Errorf("disk cache %s is a symlink (to %s): the mount keeps cached bytes only in a directory of its own, since whoever can point the link elsewhere chooses what it serves; remove the link, or give -cacheDir the real directory", dir, target)
	}
	if !st.IsDir() {
		return fmt.Errorf("disk cache %s is not a directory (mode %s); remove it or give another -cacheDir", dir, st.Mode())
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("disk cache %s: no owner to check", dir)
	}
	perm := sys.Mode & 0o7777
	if int(sys.Uid) != euid {
		return fmt.Errorf("disk cache %s is owned by uid %d (mode %04o), not by uid %d, which runs the mount: its owner could plant bytes that the mount would serve as files'. Remove it if no one uses it (another user's cache lives under a name of its own), or give -cacheDir a directory of your own", dir, sys.Uid, perm, euid)
	}
	if perm&0o022 != 0 {
		return fmt.Errorf("disk cache %s is writable by group or others (mode %04o): they could plant bytes that the mount would serve as files'. Remove it (its files may have been planted already) or chmod go-w it, then mount again", dir, perm)
	}
	return nil
}

// claimEmptyDir makes dir, this user's but open to others (a tmpfs's root
// is 1777), private, and reports whether it then passes CheckPrivateDir
// with nothing in it: nothing planted before, and no one but this user
// can add anything after. A directory with something in it stays refused:
// no one can tell what was planted.
func claimEmptyDir(dir string) bool {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR || int(st.Uid) != os.Geteuid() {
		return false
	}
	if err := syscall.Chmod(dir, 0o700); err != nil {
		return false
	}
	// Listed after the chmod: what is not there now cannot come later.
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	names, err := f.Readdirnames(1)
	f.Close()
	if len(names) > 0 || err != io.EOF {
		return false
	}
	return CheckPrivateDir(dir) == nil
}

// paths are the .sum and .dat paths of a name.
func (d *disk) paths(name string) (sum, dat string) {
	return d.path(name, ".sum"), d.datPath(name)
}

// datPath is the .dat path of a name alone: a passthrough open asks for it
// every time.
func (d *disk) datPath(name string) string { return d.path(name, ".dat") }

// path is the path of a name's file with extension ext, made in one
// allocation: root is clean, and name is hex.
func (d *disk) path(name, ext string) string {
	return d.root + string(filepath.Separator) + name[:2] + string(filepath.Separator) + name + ext
}

// diskName is the file name of a needle key.
func diskName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

// scan indexes the files under root, oldest first by modification time,
// and returns the bytes they hold. A .dat without its .sum that cannot
// carry its table in an attribute (empty, or larger than smallNeedle) is
// removed.
func (d *disk) scan() int64 {
	type found struct {
		name  string
		size  int64
		mtime time.Time
	}
	var all []found
	// sums holds the names with a .sum; a .dat without one carries its
	// table in an extended attribute, or is removed when first used.
	sums := map[string]bool{}
	dats := map[string]found{}
	filepath.WalkDir(d.root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		if de.Type()&fs.ModeSymlink != 0 {
			// Not the tier's: it writes regular files and directories.
			// A link in place of a needle's directory would lead its
			// writes and reads elsewhere (opens follow all but the
			// last component), so it goes; removing a link leaves its
			// target alone.
			os.Remove(p)
			return nil
		}
		base := de.Name()
		name, ext, _ := strings.Cut(base, ".")
		if len(name) != 32 {
			return nil
		}
		info, err := de.Info()
		if err != nil {
			return nil
		}
		switch ext {
		case "sum":
			sums[name] = true
			if _, ok := dats[name]; !ok {
				dats[name] = found{name, 0, info.ModTime()}
			}
		case "dat":
			dats[name] = found{name, info.Size(), info.ModTime()}
		}
		return nil
	})
	for name, f := range dats {
		if !sums[name] && (f.size == 0 || f.size > smallNeedle) {
			_, dat := d.paths(name)
			os.Remove(dat)
			continue
		}
		all = append(all, f)
	}
	// Oldest first, so that pushing each to the front leaves the newest
	// there.
	slices.SortFunc(all, func(a, b found) int { return a.mtime.Compare(b.mtime) })
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range all {
		e := &diskEntry{name: f.name, size: f.size, inDat: !sums[f.name]}
		d.byName[f.name] = d.lru.PushFront(e)
		d.used += e.cost()
	}
	return d.used
}

// removeTemps removes temporary files left by a mount that died mid-write.
// Another live mount's temporaries are younger than a minute; they stay.
func (d *disk) removeTemps() {
	filepath.WalkDir(d.root, func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() && strings.Contains(de.Name(), ".tmp") {
			if info, err := de.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				os.Remove(p)
			}
		}
		return nil
	})
}

// hasData reports whether the needle's bytes are known to be on disk.
func (d *disk) hasData(key string) bool { return d.hasDataNamed(diskName(key)) }

// hasDataNamed is hasData for the needle's file name (diskName), which
// costs a hash of the key to make.
func (d *disk) hasDataNamed(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byName[name]
	return ok && e.Value.(*diskEntry).size > 0
}

// usedData is hasData for a read of the needle, which makes it the most
// recently used: a read that memory answers whole never reaches the disk
// tier's read (which would), and a needle read only from memory would
// otherwise age on disk as if unread, and be the first evicted by the
// next write (a warmup's own needles among them).
func (d *disk) usedData(key string) bool {
	name := diskName(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byName[name]
	if !ok || e.Value.(*diskEntry).size <= 0 {
		return false
	}
	d.lru.MoveToFront(e)
	return true
}

// roomFor reports whether n more bytes fit without evicting anything: a
// background fill that would push out other needles is not worth its
// bandwidth (a working set larger than the tier would churn it).
func (d *disk) roomFor(n int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used+n+sumCost <= d.capacity && time.Now().After(d.pausedUntil)
}

// table returns the needle's table, from memory, its .sum file or its
// .dat's extended attribute, or nil when there is none (or it is bad,
// which removes it).
func (d *disk) table(key string) *diskTable { return d.tableNamed(diskName(key), key) }

// tableNamed is table for a key whose file name (diskName) is name.
func (d *disk) tableNamed(name, key string) *diskTable {
	d.mu.Lock()
	e, known := d.byName[name]
	var t *diskTable
	var inDat bool
	if known {
		t, inDat = e.Value.(*diskEntry).t, e.Value.(*diskEntry).inDat
	}
	d.mu.Unlock()
	if t != nil {
		return t
	}
	if !known {
		// Not found at start nor written since: no file to read (a
		// random read of data larger than the caches asks this of
		// every miss). Another mount's tables are not seen until a
		// remount: a miss, not an error.
		return nil
	}
	sum, dat := d.paths(name)
	t, inDat, err := d.readTable(sum, dat, key, inDat)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.corrupt.Add(1)
		}
		d.drop(name) // so that the needle is written again
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byName[name]; ok {
		de := e.Value.(*diskEntry)
		if de.inDat != inDat {
			// Another mount sharing the directory replaced the
			// one place with the other; the entry follows.
			d.used -= de.cost()
			de.inDat = inDat
			if inDat {
				de.size = t.length // the .dat that carries it is there
			}
			d.used += de.cost()
		}
		de.t = t
	}
	return t
}

// readTable reads a needle's table from where its entry says it is (the
// .dat's attribute when inDat, its .sum otherwise) or, when that is
// missing, from the other place, and reports which one held it. Neither
// there is the first place's error, wrapping fs.ErrNotExist when that
// file is gone.
func (d *disk) readTable(sum, dat, key string, inDat bool) (*diskTable, bool, error) {
	var first error
	for _, fromDat := range []bool{inDat, !inDat} {
		var t *diskTable
		var err error
		if fromDat {
			t, err = d.readXattr(dat, key)
		} else {
			t, err = d.readSum(sum, key)
		}
		switch {
		case err == nil:
			return t, fromDat, nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENODATA):
			return nil, false, err // there, and bad
		case first == nil:
			first = err
		}
	}
	return nil, false, first
}

// readSum reads the .sum at path, written for key.
func (d *disk) readSum(path, key string) (*diskTable, error) {
	raw, err := readNoFollow(path)
	if err != nil {
		return nil, err
	}
	return parseSum(raw, key, d.bs)
}

// readXattr reads the table in the extended attribute of the .dat at path,
// written for key.
func (d *disk) readXattr(path, key string) (*diskTable, error) {
	buf := make([]byte, xattrSize(int(smallNeedle/d.bs)+1))
	// Lgetxattr: a link's own attributes, never its target's.
	n, err := unix.Lgetxattr(path, xattrTable, buf)
	if err != nil {
		return nil, fmt.Errorf("disk cache table of %s: %w", path, err)
	}
	return parseXattr(buf[:n], key, d.bs)
}

// readNoFollow is os.ReadFile of a cache file that must not be a symlink
// (O_NOFOLLOW: ELOOP), so that a link put in place of a table reads
// nothing from elsewhere.
func readNoFollow(path string) ([]byte, error) {
	f, err := openFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// cacheTableLocked keeps t with the needle's entry, if it is still known.
func (d *disk) cacheTableLocked(name string, t *diskTable) {
	if e, ok := d.byName[name]; ok {
		e.Value.(*diskEntry).t = t
	}
}

// read fills dsts, the blocks of the needle from off (a multiple of the
// block size) in order, from its .dat, each checked against the table.
// Each dst is a block's bytes (its last may end early, where the chunk
// ends before the needle) and has the capacity of the needle's block. The
// blocks are read with one preadv (per IOV_MAX of them). It reports false, having removed what was bad, when the file is gone,
// short or corrupt: the caller fetches the needle instead.
func (d *disk) read(key string, off int64, dsts [][]byte) bool {
	t := d.table(key)
	if t == nil {
		d.misses.Add(1)
		return false
	}
	var fullBuf [17][]byte // a 1 MiB read of 64 KiB blocks touches up to 17
	fulls := fullBuf[:0]
	o := off
	for _, dst := range dsts {
		want := min(d.bs, t.length-o)
		if want <= 0 || int64(len(dst)) > want || int64(cap(dst)) < want {
			// Not a block of this needle (a chunk that claims more than
			// its needle holds), or a broken caller.
			return false
		}
		fulls = append(fulls, dst[:want])
		o += d.bs
	}
	name := diskName(key)
	_, dat := d.paths(name)
	fd, err := unix.Open(dat, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		d.misses.Add(1)
		d.forgetData(name)
		return false
	}
	defer unix.Close(fd)
	if err := preadvFull(fd, fulls, off); err != nil {
		d.corrupt.Add(1)
		d.drop(name)
		return false
	}
	var n uint64
	o = off
	for i, full := range fulls {
		if !t.blockOK(o, d.bs, full) {
			d.corrupt.Add(1)
			d.drop(name)
			return false
		}
		o += d.bs
		n += uint64(len(dsts[i]))
	}
	d.hits.Add(uint64(len(dsts)))
	d.hitBytes.Add(n)
	d.touch(name)
	return true
}

// preadvFull fills bufs, in order, from fd at off with as few preadv calls
// as the kernel allows. A file that ends first (truncated by someone) is
// io.ErrUnexpectedEOF.
func preadvFull(fd int, bufs [][]byte, off int64) error {
	const iovMax = 1024 // Linux's UIO_MAXIOV: more is EINVAL
	cloned := false
	for len(bufs) > 0 {
		n, err := unix.Preadv(fd, bufs[:min(len(bufs), iovMax)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		off += int64(n)
		for len(bufs) > 0 && n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if n > 0 {
			if !cloned { // cut a copy: the caller's slices stay whole
				bufs, cloned = slices.Clone(bufs), true
			}
			bufs[0] = bufs[0][n:]
		}
	}
	return nil
}

// willNeedNamed asks the kernel to read [off, off+n) of a needle's .dat (by
// its disk name) into its page cache, without waiting, as its own
// readahead does ahead of a sequential reader of a local file: the reads
// that follow then find the bytes there (and still check them, see read).
// It is advice: a needle that is gone, or a kernel that declines, costs
// nothing but the miss.
func (d *disk) willNeedNamed(name string, off, n int64) {
	_, dat := d.paths(name)
	fd, err := unix.Open(dat, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return
	}
	// The kernel reads at most the file's readahead window (the
	// device's read_ahead_kb, 128 KiB by default) per call, so a longer
	// range is asked for in pieces of the smallest common window.
	const piece = 128 << 10
	for end := off + n; off < end; off += piece {
		unix.Fadvise(fd, off, min(piece, end-off), unix.FADV_WILLNEED)
	}
	unix.Close(fd)
}

// openWholeNamed opens the .dat of a needle whose logical bytes are exactly
// size long, when it is held on disk, and checks every block of it
// against its table. The caller hands the file to the kernel (FUSE
// passthrough), which then reads it without asking us, so this is the
// one check its bytes get. A file found unchanged since it last passed
// (diskEntry.checked: same inode, size and ctime) is not read again: its
// bytes are the ones checked. Reading it at every open was 41 % of the
// mount's CPU in a shuffled loader's second epoch, where every file is
// opened once per epoch. It reports false, having removed what was bad,
// when the file is not held, gone, of another length or corrupt. name is
// diskName(key), which the caller has.
func (d *disk) openWholeNamed(name, key string, size int64) (*os.File, bool) {
	if !d.hasDataNamed(name) {
		return nil, false
	}
	began := time.Now()
	f, err := openFile(d.datPath(name), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		d.misses.Add(1)
		d.forgetData(name)
		return nil, false
	}
	// The kernel reads the backing file up to its own end: a longer file
	// would show bytes past the chunk's.
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Size != size {
		f.Close()
		if t := d.tableNamed(name, key); err != nil || (t != nil && t.length == size) {
			// The needle is size long, its file is not.
			d.corrupt.Add(1)
			d.drop(name)
		}
		return nil, false
	}
	stamp := stampOfStat(&st)
	if !d.checkedAs(name, stamp) {
		// Only a file to check needs its table (read from an
		// attribute of the file for a small needle).
		t := d.tableNamed(name, key)
		if t == nil || t.length != size {
			f.Close()
			return nil, false
		}
		if !d.checkWhole(f, t, size) {
			f.Close()
			d.corrupt.Add(1)
			d.drop(name)
			return nil, false
		}
		if d.settled(stamp, began) {
			d.setChecked(name, stamp)
		}
	}
	d.hits.Add(uint64((size + d.bs - 1) / d.bs))
	d.hitBytes.Add(uint64(size))
	d.touch(name)
	return f, true
}

// checkWhole reads the first size bytes of f a block at a time and checks
// each against t, counting them in checkedBytes.
func (d *disk) checkWhole(f io.ReaderAt, t *diskTable, size int64) bool {
	bp := d.checkBufs.Get().(*[]byte)
	defer d.checkBufs.Put(bp)
	for off := int64(0); off < size; off += d.bs {
		b := (*bp)[:min(d.bs, size-off)]
		if _, err := f.ReadAt(b, off); err != nil || !t.blockOK(off, d.bs, b) {
			return false
		}
	}
	d.checkedBytes.Add(uint64(size))
	return true
}

// settled reports whether a file with stamp s, read from since on, can
// change later only under a stamp of its own: on a file system without
// fine ctimes a change in the same tick of the kernel's coarse clock as
// the last would leave its ctime as it is.
func (d *disk) settled(s fileStamp, since time.Time) bool {
	return s != fileStamp{} && (d.fineCtime || s.ctime < since.Add(-stampSettle).UnixNano())
}

// checkedAs reports whether the needle's .dat passed openWholeNamed's check
// when it had this stamp.
func (d *disk) checkedAs(name string, s fileStamp) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byName[name]
	return ok && s != fileStamp{} && e.Value.(*diskEntry).checked == s
}

// setChecked records that the needle's .dat passed openWholeNamed's check with
// this stamp.
func (d *disk) setChecked(name string, s fileStamp) {
	d.mu.Lock()
	if e, ok := d.byName[name]; ok {
		e.Value.(*diskEntry).checked = s
	}
	d.mu.Unlock()
}

// touch marks a needle as just used.
func (d *disk) touch(name string) {
	d.mu.Lock()
	if e, ok := d.byName[name]; ok {
		d.lru.MoveToFront(e)
	}
	d.mu.Unlock()
}

// forgetData notes that a needle's bytes are gone (another mount evicted
// them, or the directory was wiped); its .sum may still be there, and an
// entry whose table went with its .dat is forgotten.
func (d *disk) forgetData(name string) {
	d.mu.Lock()
	if e, ok := d.byName[name]; ok {
		de := e.Value.(*diskEntry)
		d.used -= de.size
		de.size, de.checked = 0, fileStamp{}
		if de.inDat {
			d.lru.Remove(e)
			delete(d.byName, name)
		}
	}
	d.mu.Unlock()
}

// drop removes a needle's files and entry: they failed a check.
func (d *disk) drop(name string) {
	sum, dat := d.paths(name)
	os.Remove(dat)
	os.Remove(sum)
	d.mu.Lock()
	if e, ok := d.byName[name]; ok {
		d.used -= e.Value.(*diskEntry).cost()
		d.lru.Remove(e)
		delete(d.byName, name)
	}
	d.mu.Unlock()
}

// evictLocked removes the least recently used bytes until the tier fits
// its capacity: a needle's .dat first, its table when it comes round
// again. It removes files under d.mu: eviction is rare and a remove is
// quick, and the index must not be seen ahead of the files.
func (d *disk) evictLocked() {
	for d.used > d.capacity && d.lru.Len() > 0 {
		e := d.lru.Back()
		de := e.Value.(*diskEntry)
		sum, dat := d.paths(de.name)
		switch {
		case de.inDat:
			os.Remove(dat)
			d.used -= de.size
			d.lru.Remove(e)
			delete(d.byName, de.name)
		case de.size > 0:
			os.Remove(dat)
			d.used -= de.size
			de.size, de.checked = 0, fileStamp{}
			d.lru.MoveToFront(e) // its table stays a while
		default:
			os.Remove(sum)
			d.used -= sumCost
			d.lru.Remove(e)
			delete(d.byName, de.name)
		}
		d.evicts.Add(1)
	}
}

// stats returns the counters.
func (d *disk) stats() DiskStats {
	d.mu.Lock()
	s := DiskStats{Capacity: d.capacity, Used: d.used, Entries: int64(d.lru.Len())}
	d.mu.Unlock()
	s.Hits, s.HitBytes, s.Misses = d.hits.Load(), d.hitBytes.Load(), d.misses.Load()
	s.Writes, s.WrittenBytes = d.writes.Load(), d.writtenBytes.Load()
	s.CheckedBytes = d.checkedBytes.Load()
	s.WriteErrors, s.Corrupt, s.Evictions = d.writeErrs.Load(), d.corrupt.Load(), d.evicts.Load()
	return s
}
