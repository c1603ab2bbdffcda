package fs

import (
	"os"
	"runtime"
	"sync"
)

// go-fuse reads requests from /dev/fuse with blocking read(2) calls, and
// keeps up to maxReaders+1 goroutines waiting in them at once, where
// maxReaders is GOMAXPROCS when the server is made, kept between these
// two (go-fuse's minMaxReaders and maxMaxReaders).
const (
	fuseMinReaders = 2
	fuseMaxReaders = 16
)

// readerProcs raises GOMAXPROCS, once per process, by the Ps that
// go-fuse's waiting readers hold. A goroutine in a system call keeps its
// P until the runtime's sysmon takes it back, which sysmon does after
// 20 µs whenever no other P is idle. With GOMAXPROCS at the core count
// (2 here) the readers, idle in read(2) between requests, held the Ps:
// sysmon woke every 20 µs to take one back and start a thread to spin
// for work (8.6 % of the mount's CPU in a profile, 1 % after), and each
// reader came back for a P when its read returned. Measured on 2 cores,
// random 4 KiB reads beyond every cache (fio, 4 jobs, O_DIRECT), eight
// alternated pairs: 7,390 → 7,880 IOPS and 79 → 71 µs of mount CPU per
// read (medians); the shuffled loader's two epochs, small files in
// listing order and a cold sequential read were no worse. A GOMAXPROCS
// set in the environment is the user's choice and stays. Setting it
// also stops the runtime from following a change of the container's CPU
// limit while the mount runs, as it otherwise would.
//
// It runs after go-fuse has counted its readers from GOMAXPROCS as it
// stood.
var readerProcs = sync.OnceFunc(func() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(procsWithReaders(runtime.GOMAXPROCS(0)))
})

// procsWithReaders is n Ps for work and one for each reader go-fuse may
// keep waiting when made with GOMAXPROCS n.
func procsWithReaders(n int) int {
	return n + min(max(n, fuseMinReaders), fuseMaxReaders) + 1
}
