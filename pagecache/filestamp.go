package pagecache

import (
	"io/fs"
	"os"
	"syscall"
	"time"
)

// fileStamp is one state of a file's bytes: its inode, size and the time
// of its last change (ctime), which every write, truncate or rename of it
// sets to the current time and no system call sets back (only a step of
// the system's clock back could make a later change repeat a ctime). A
// file with the same stamp as when it was checked holds the bytes it held
// then, unless a change came within the same tick of the kernel's coarse
// clock as the last one (see disk.settled). The zero stamp stands for
// none.
type fileStamp struct {
	dev, ino uint64
	size     int64
	ctime    int64 // Unix ns
}

// stampOf returns info's stamp; the zero stamp when it has none.
func stampOf(info fs.FileInfo) fileStamp {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}
	}
	return stampOfStat(st)
}

// stampOfStat returns the stamp of the file st describes.
func stampOfStat(st *syscall.Stat_t) fileStamp {
	return fileStamp{dev: st.Dev, ino: st.Ino, size: st.Size, ctime: time.Unix(st.Ctim.Unix()).UnixNano()}
}

// stampSettle is how long before a check began a file's ctime must be for
// the check to be remembered, on a file system without fine ctimes: far
// more than a tick of the kernel's coarse clock.
const stampSettle = time.Second

// fineCtimes reports whether files in dir get a ctime of their own for a
// change that follows a stat of them, as Linux 6.13's multigrain
// timestamps give ext4, xfs, btrfs and tmpfs. A probe writes a file and
// stats it, four times. A coarse clock gives two writes microseconds apart
// the same ctime, or, across a tick, one a whole tick (a millisecond or
// more) later; so a step that is not positive says coarse, and steps all
// positive with one under fineStep say fine. Steps all positive and long
// say nothing: the prober was preempted or its writes waited on the disk.
// A probe that wanted every step short failed 1 time in 2,000 here when
// idle and 15 beside two busy loops and a large write; while 16,384 files
// were being removed (as a benchmark removes its last cache), 260 in
// 99,680, and 50 of 19,936 runs of five back to back all failed. So an
// inconclusive probe is made again after fineWait, up to fineProbes times,
// and then the answer is coarse, the safe one: a wrong "coarse" costs every
// small needle a second read of its file at its first open in the next
// epoch; a wrong "fine" could let a changed file pass as checked.
func fineCtimes(dir string) bool {
	for i := range fineProbes {
		if i > 0 {
			time.Sleep(fineWait)
		}
		if fine, known := fineCtimeProbe(dir); known {
			return fine
		}
	}
	return false
}

const (
	// fineProbes is how many probes fineCtimes makes at most, fineWait
	// the pause before each after the first: 50 ms of pauses at most
	// at a mount's start, plus the probes themselves.
	fineProbes = 11
	fineWait   = 5 * time.Millisecond
)

// fineCtimeProbe is one probe of fineCtimes; known is false when it
// tells nothing. A directory where no file can be made answers coarse
// at once: probing again would not help.
func fineCtimeProbe(dir string) (fine, known bool) {
	f, err := createTemp(dir, "ctime-probe")
	if err != nil {
		return false, true
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var last int64
	short := false
	for i := range 4 {
		if _, err := f.WriteAt([]byte{byte(i)}, 0); err != nil {
			return false, false
		}
		info, err := f.Stat()
		if err != nil {
			return false, false
		}
		ctime := stampOf(info).ctime
		if i > 0 {
			step := ctime - last
			if step <= 0 {
				return false, true
			}
			short = short || step < int64(fineStep)
		}
		last = ctime
	}
	return short, short
}

// fineStep bounds the ctime steps of fineCtimes' writes on a fine clock.
const fineStep = 500 * time.Microsecond
