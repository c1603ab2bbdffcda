package main

import (
	"os"
	"runtime"
	"runtime/debug"
)

// goMemoryLimit is the soft limit on the Go runtime's own memory (heap,
// stacks): the mount's RSS is the memory tier (-readerCacheSizeMB, mapped
// outside the Go heap) plus this, plus a few MiB of binary. Without it the
// collector lets the heap grow to twice what is live: 32,768 files' entries,
// nodes and chunk maps are about 60-100 MiB live, and the dataset benchmark
// peaked at 490 MiB RSS with the default 256 MiB tier.
const goMemoryLimit = 128 << 20

// heapWarm is how much of the Go heap is touched at start, as the memory
// tier is mapped populated: a new mount's heap otherwise grows a page
// fault at a time while it serves its first requests. In a cold `ls -l` of
// 2000 entries, faults were 27 % of the mount's CPU (Go's spans, stacks and
// maps growing); on this project's VM, a Firecracker guest, each first
// touch of a page also costs a fault on the host. Touching 32 MiB takes
// 16-26 ms there.
const heapWarm = 32 << 20

// goMemory is how the mount sets up the Go runtime's memory: the soft limit
// (0: the one GOMEMLIMIT gave), the collector's percentage (a negative one:
// collect only at the limit; 0: the one GOGC gave, or Go's default), and
// how many bytes of heap to touch at start.
type goMemory struct {
	limit   int64
	percent int
	warm    int
}

// goMemoryFor chooses the settings from the environment (getenv).
//
// Unless GOGC or GOMEMLIMIT says otherwise, the collector runs only when the
// Go runtime's memory reaches goMemoryLimit (GOGC off, under the limit).
// The limit bounds the mount's memory either way, and a collector that
// kept the heap at twice its live size let Go's background scavenger hand
// the warmed pages back (to fault them in again) and collected a small
// heap many times over: a cold `ls -l` of 2000 entries, 15 alternated runs
// by hand, took 38.7 ms (median) as before, 38.6 with GOGC off alone, and
// 32.4 with GOGC off and the heap warmed (GOGC=400 and warmed: 33.2 in
// 12). A mount whose live heap outgrows the limit collects as often as
// with any GOGC, since the limit rules then. Where the user set either
// variable, the runtime's own reading of it stands, and the heap is still
// warmed (it is kept as long as their settings keep it).
func goMemoryFor(getenv func(string) string) goMemory {
	m := goMemory{warm: heapWarm}
	if getenv("GOMEMLIMIT") == "" {
		m.limit = goMemoryLimit
		if getenv("GOGC") == "" {
			m.percent = -1
		}
	}
	return m
}

// tuneGoMemory applies goMemoryFor's settings. The warm-up allocates and
// touches warm bytes and frees them with a collection, so that their pages
// go back to the heap, resident, for the spans, stacks and maps that come
// next.
func tuneGoMemory() {
	m := goMemoryFor(os.Getenv)
	if m.limit > 0 {
		debug.SetMemoryLimit(m.limit)
	}
	if m.percent != 0 {
		debug.SetGCPercent(m.percent)
	}
	if m.warm > 0 {
		b := make([]byte, m.warm)
		for i := 0; i < len(b); i += os.Getpagesize() {
			b[i] = 1
		}
		runtime.KeepAlive(b)
		runtime.GC()
	}
}
