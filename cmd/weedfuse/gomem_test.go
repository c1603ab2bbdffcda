package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGoMemoryFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limitMB int
		env     map[string]string
		want    goMemory
	}{
		{"defaults", 0, nil, goMemory{limit: goMemoryLimit, percent: -1, warm: heapWarm}},
		{"GOGC set", 0, map[string]string{"GOGC": "200"}, goMemory{limit: goMemoryLimit}},
		{"GOMEMLIMIT set", 0, map[string]string{"GOMEMLIMIT": "1GiB"}, goMemory{}},
		{"both set", 0, map[string]string{"GOGC": "off", "GOMEMLIMIT": "1GiB"}, goMemory{}},
		{"-memoryLimitMB", 512, nil, goMemory{limit: 512 << 20, user: true}},
		{"-memoryLimitMB over GOMEMLIMIT", 512, map[string]string{"GOMEMLIMIT": "1GiB"}, goMemory{limit: 512 << 20, user: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := goMemoryFor(tc.limitMB, func(k string) string { return tc.env[k] })
			if got != tc.want {
				t.Errorf("goMemoryFor(%v) = %+v, want %+v", tc.env, got, tc.want)
			}
		})
	}
}

func TestLimitFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name              string
		live, inUse, meta int64
		percent           int
		want              int64
	}{
		{"small heap: the floor", 20 * mib, 8 * mib, 0, -1, goMemoryLimit},
		{"a live heap within the floor keeps it", 120 * mib, 30 * mib, 0, -1, goMemoryLimit},
		{"metadata within the floor: a quarter of it above", 113 * mib, 10 * mib, 136 * mib, -1, goMemoryLimit + 34*mib},
		{"request buffers, with few nodes, earn next to nothing", 110 * mib, 10 * mib, 8 * 1400, -1, goMemoryLimit + 2800},
		{"just past the floor: a quarter", 132 * mib, 10 * mib, 0, -1, 175 * mib},
		{"past the floor, metadata as the rest", 132 * mib, 10 * mib, 100 * mib, -1, 175 * mib},
		{"a quarter of a large heap", 300 * mib, 12 * mib, 0, -1, 387 * mib},
		{"the user's GOGC", 300 * mib, 12 * mib, 0, 200, 912 * mib},
		{"GOGC=25 as off", 300 * mib, 12 * mib, 0, 25, 387 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := limitFor(goMemoryLimit, tc.live, tc.inUse, tc.meta, tc.percent); got != tc.want {
				t.Errorf("limitFor(%d MiB, %d MiB, %d MiB, %d) = %d MiB, want %d MiB", tc.live/mib, tc.inUse/mib, tc.meta/mib, tc.percent, got/mib, tc.want/mib)
			}
		})
	}
}

// TestLimitFollower checks that a follower raises the limit above a live
// heap larger than its floor, after a collection.
func TestLimitFollower(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	const floor = 8 << 20
	debug.SetMemoryLimit(floor)
	l := newLimitFollower(floor)
	defer l.stop()
	l.arm()
	keep := make([][]byte, 64)
	for i := range keep {
		keep[i] = make([]byte, 1<<20) // 64 MiB live, over the floor
	}
	const want = 64<<20 + 64<<18 // the live heap and a quarter of it
	deadline := time.Now().Add(10 * time.Second)
	for debug.SetMemoryLimit(-1) < want && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	got := debug.SetMemoryLimit(-1)
	runtime.KeepAlive(keep)
	if got < want {
		t.Fatalf("limit %d MiB after collections with 64 MiB live, want at least 80", got>>20)
	}
}
