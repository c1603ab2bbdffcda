package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
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
	// user: the limit is the user's (-memoryLimitMB), which the mount
	// applies as it is, not the mount's own, which follows metadata.
	user bool
}

// goMemoryFor chooses the settings from weed mount's -memoryLimitMB
// (limitMB) and the environment (getenv).
//
// A -memoryLimitMB above 0 is weed mount's soft limit on the Go runtime:
// it is taken as a GOMEMLIMIT the user set (below), at GOGC's pace.
//
// Unless GOGC or GOMEMLIMIT is set, the collector runs only when the Go
// runtime's memory reaches goMemoryLimit (GOGC off, under the limit), and
// the heap is warmed. The limit bounds the mount's garbage either way. A
// collector that kept the heap at twice its live size collected a small
// heap over and over, and let Go's background scavenger hand the warmed
// pages back, to be faulted in again. A cold `ls -l` of 2000 entries by
// hand: 12 alternated runs of the final code, 32.8 -> 29.3 ms (medians);
// in 15 runs of the variants, 38.7 ms before, 38.6 with GOGC off alone and
// 32.4 with it and the warm-up (GOGC=400 and the warm-up: 33.2 in 12).
// Go's collection every two minutes is off with GOGC off, so an idle
// mount keeps its garbage, up to the limit.
//
// Where the mount sets the limit, it follows a live heap that outgrows it
// (see limitFor): the nodes of the files the kernel holds are live however
// many there are.
//
// Where the user set either variable, the runtime's own reading of it
// stands and nothing is warmed, since a collector at GOGC's pace would
// hand the pages back. GOMEMLIMIT alone keeps GOGC's default: with a
// large limit, or none, a collector that ran only at the limit would let
// the heap grow without bound.
func goMemoryFor(limitMB int, getenv func(string) string) goMemory {
	if limitMB > 0 {
		return goMemory{limit: int64(limitMB) << 20, user: true}
	}
	if getenv("GOMEMLIMIT") != "" || getenv("GOGC") != "" {
		m := goMemory{}
		if getenv("GOMEMLIMIT") == "" {
			m.limit = goMemoryLimit
		}
		return m
	}
	return goMemory{limit: goMemoryLimit, percent: -1, warm: heapWarm}
}

// tuneGoMemory applies goMemoryFor's settings for -memoryLimitMB=limitMB.
// It returns the follower of the mount's own limit, or nil where there is
// none (the limit is the user's, or there is no limit).
func tuneGoMemory(limitMB int) *limitFollower {
	m := goMemoryFor(limitMB, os.Getenv)
	var l *limitFollower
	if m.user {
		debug.SetMemoryLimit(m.limit)
	} else if m.limit > 0 {
		// The limit is the mount's own: it follows a live heap past it.
		debug.SetMemoryLimit(m.limit)
		l = newLimitFollower(m.limit)
		l.arm()
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
	return l
}

// countMetadata has the follower give room for the bytes fn reports as
// metadata (see limitFor); l may be nil.
func (l *limitFollower) countMetadata(fn func() int64) {
	if l != nil {
		l.metadata.Store(&fn)
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

// limitHeadroom is the least room for garbage that limitFor leaves above
// a live heap past the floor.
const limitHeadroom = 16 << 20

// followPercent is the room for garbage above a live heap past the floor,
// in percent of it, that limitFor leaves when the collector runs only at
// the limit (GOGC off, the mount's default).
const followPercent = 25

// limitFor is the soft limit after a collection that found live bytes of
// heap and inUse bytes of the runtime's other memory in use (stacks,
// metadata, the free room in spans of live objects), meta of the heap being
// the nodes of what the kernel holds: while the live heap is within the
// floor, the floor plus percent of meta; past it, inUse and the live heap
// plus room for garbage, percent of the live heap (at least limitHeadroom).
// percent is GOGC where the user set it, followPercent with GOGC off.
//
// The mount keeps a node, its entry and its chunk map for each file the
// kernel holds, about 1.4 KiB each: a listing of 200,000 entries holds
// about 300 MiB live. Under a fixed limit of 128 MiB the collector then
// ran back to back, as much as Go lets a collector at its limit run: 114
// collections in two passes of `ls -l`. A cold `ls -l` of 100,000 entries
// holds about 113 MiB live, just under the floor, where the collector ran
// 10-14 times back to back, half the mount's CPU: metadata's room is for
// that. Other memory within the floor earns none, since the floor is the
// bound the README gives: 64 concurrent readers hold about 100 MiB of FUSE
// request buffers while they read, and with room above them (a quarter of
// the live heap, then 16 MiB) their peak RSS went from 393-394 to 410-414
// MiB, over the memory tier's bound of 406.
func limitFor(floor, live, inUse, meta int64, percent int) int64 {
	if percent <= 0 {
		percent = followPercent
	}
	if live <= floor {
		return floor + meta*int64(percent)/100
	}
	return live + inUse + max(limitHeadroom, live*int64(percent)/100)
}

// limitFollower sets the soft limit from limitFor after each collection.
// One hook is pending at a time, since each hook arms the next as it ends;
// mu makes stop final (a hook running then sets no limit after it).
type limitFollower struct {
	floor int64
	// metadata tells how many bytes of the heap are metadata (see
	// limitFor); nil until the file system is made.
	metadata atomic.Pointer[func() int64]

	mu      sync.Mutex
	stopped bool
	samples []metrics.Sample
}

// collected marks a collection: a new one is made for each, and its
// cleanup runs once a collection found it unreachable. It holds a pointer
// so that it is never a tiny allocation (pointer-free and under 16 bytes),
// whose cleanup may never run.
type collected struct{ _ *collected }

// newLimitFollower returns a follower whose limit never goes below floor;
// arm starts it.
func newLimitFollower(floor int64) *limitFollower {
	l := &limitFollower{floor: floor}
	for _, name := range followed {
		l.samples = append(l.samples, metrics.Sample{Name: name})
	}
	return l
}

// arm sets the hook for the next collection.
func (l *limitFollower) arm() {
	runtime.AddCleanup(new(collected), func(l *limitFollower) {
		if l.adjust() {
			l.arm()
		}
	}, l)
}

// stop ends the hook: tests start followers of their own.
func (l *limitFollower) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// followed are the runtime metrics adjust reads, in the order it reads them.
var followed = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/objects:bytes",
	"/gc/gogc:percent",
}

// adjust sets the limit from the last collection's live heap; false once
// the follower is stopped.
func (l *limitFollower) adjust() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	metrics.Read(l.samples)
	var v [6]int64
	for i, s := range l.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return true // not in this Go: the floor stands
		}
		v[i] = int64(s.Value.Uint64())
	}
	live, total, released, free, objects, gogc := v[0], v[1], v[2], v[3], v[4], v[5]
	// objects counts garbage not yet swept; live is what the collection
	// marked. What is left is in use whatever the garbage.
	inUse := max(total-released-free-objects, 0)
	var meta int64
	if fn := l.metadata.Load(); fn != nil {
		meta = (*fn)()
	}
	debug.SetMemoryLimit(limitFor(l.floor, live, inUse, meta, int(gogc)))
	return true
}
