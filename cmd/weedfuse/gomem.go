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
// (0: leave the one GOMEMLIMIT gave), the collector's percentage (negative:
// collect only at the limit; 0: leave the one GOGC gave, or Go's default),
// and how many bytes of heap to touch at start.
type goMemory struct {
	limit   int64
	percent int
	warm    int
}

// goMemoryFor chooses the settings from the environment (getenv).
//
// Unless GOGC or GOMEMLIMIT is set, the collector runs only when the Go
// runtime's memory reaches goMemoryLimit (GOGC off, under the limit), and
// the heap is warmed. The limit bounds the mount's memory either way. A
// collector that kept the heap at twice its live size collected a small
// heap over and over, and let Go's background scavenger hand the warmed
// pages back, to be faulted in again. A cold `ls -l` of 2000 entries by
// hand: 12 alternated runs of the final code, 32.8 -> 29.3 ms (medians);
// in 15 runs of the variants, 38.7 ms before, 38.6 with GOGC off alone and
// 32.4 with it and the warm-up (GOGC=400 and the warm-up: 33.2 in 12).
// A mount whose live heap outgrows the limit collects as often as with
// any GOGC, since the limit rules then. Go's collection every two minutes
// is off with GOGC off, so an idle mount keeps its garbage, up to the
// limit.
//
// Where the user set either variable, the runtime's own reading of it
// stands and nothing is warmed, since a collector at GOGC's pace would
// hand the pages back. GOMEMLIMIT alone keeps GOGC's default: with a
// large limit, or none, a collector that ran only at the limit would let
// the heap grow without bound.
func goMemoryFor(getenv func(string) string) goMemory {
	if getenv("GOMEMLIMIT") != "" || getenv("GOGC") != "" {
		m := goMemory{}
		if getenv("GOMEMLIMIT") == "" {
			m.limit = goMemoryLimit
		}
		return m
	}
	return goMemory{limit: goMemoryLimit, percent: -1, warm: heapWarm}
}

// tuneGoMemory applies goMemoryFor's settings.
func tuneGoMemory() {
	m := goMemoryFor(os.Getenv)
	if m.limit > 0 {
		debug.SetMemoryLimit(m.limit)
	}
	if m.percent != 0 {
		debug.SetGCPercent(m.percent)
	}
	if m.warm > 0 {
		touchHeap(m.warm)
		// The buffer is garbage now: the collection returns its pages to
		// the heap, resident, for the spans, stacks and maps that come
		// next.
		runtime.GC()
	}
}

// touchHeap allocates n bytes on the heap and writes a byte of each page.
func touchHeap(n int) {
	b := make([]byte, n)
	page := os.Getpagesize()
	for i := 0; i < len(b); i += page {
		b[i] = 1
	}
}
