package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc's CPU times: 100 on every Linux this runs on.
const userHZ = 100

// cpuSample is a reading of CPU time: the machine's busy and total time,
// and each watched process's (user and system), in clock ticks.
type cpuSample struct {
	at          time.Time
	busy, total uint64
	procs       []uint64
}

// sampleCPU reads the machine's and pids' CPU time; an unreadable process
// (0, or gone) counts as none.
func sampleCPU(pids []int) cpuSample {
	s := cpuSample{at: time.Now(), procs: make([]uint64, len(pids))}
	if stat, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(stat), "\n")
		// cpu user nice system idle iowait irq softirq steal ...
		for i, f := range strings.Fields(line)[1:] {
			v, _ := strconv.ParseUint(f, 10, 64)
			s.total += v
			if i != 3 && i != 4 { // idle and iowait are not busy
				s.busy += v
			}
		}
	}
	for i, pid := range pids {
		if pid > 0 {
			s.procs[i] = procTicks(pid)
		}
	}
	return s
}

// procTicks is a process's user plus system time, all its threads.
func procTicks(pid int) uint64 {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	return statTicks(string(stat))
}

// statTicks is utime + stime from a /proc/<pid>/stat line. The command
// name, in parentheses, may hold spaces and parentheses: fields are
// counted after its last closing parenthesis. utime and stime are fields
// 14 and 15.
func statTicks(stat string) uint64 {
	i := strings.LastIndex(stat, ") ")
	if i < 0 {
		return 0
	}
	if f := strings.Fields(stat[i+2:]); len(f) > 12 {
		u, _ := strconv.ParseUint(f[11], 10, 64)
		s, _ := strconv.ParseUint(f[12], 10, 64)
		return u + s
	}
	return 0
}

// cpuUse is the CPU spent between two samples.
type cpuUse struct {
	wall  float64   // seconds
	cores float64   // the machine's busy time over wall: cores kept busy
	procs []float64 // CPU seconds of each watched process
}

func (s cpuSample) until(t cpuSample) cpuUse {
	u := cpuUse{wall: t.at.Sub(s.at).Seconds(), procs: make([]float64, len(s.procs))}
	if t.total > s.total {
		// /proc/stat sums every CPU's ticks: busy over total is the busy
		// share of the machine, times the cores.
		u.cores = float64(t.busy-s.busy) / float64(t.total-s.total) * float64(runtime.NumCPU())
	}
	for i := range s.procs {
		u.procs[i] = float64(t.procs[i]-min(s.procs[i], t.procs[i])) / userHZ
	}
	return u
}

// cpuMeter measures the CPU a workload spends. runStep starts it right
// before the workload; a workload with a warm-up-free part worth its own
// figure (a sequential step's cold read) stops it after that part, and
// otherwise runStep stops it at the end.
type cpuMeter struct {
	pids []int
	from cpuSample
	use  *cpuUse
}

func newCPUMeter(pids ...int) *cpuMeter { return &cpuMeter{pids: pids, from: sampleCPU(pids)} }

// stop records the use since the start; only the first call counts.
func (m *cpuMeter) stop() {
	if m.use == nil {
		u := m.from.until(sampleCPU(m.pids))
		m.use = &u
	}
}

// medianUse is the median of each figure over uses, taken separately.
func medianUse(uses []cpuUse) cpuUse {
	if len(uses) == 0 {
		return cpuUse{}
	}
	pick := func(f func(cpuUse) float64) float64 {
		vs := make([]float64, len(uses))
		for i, u := range uses {
			vs[i] = f(u)
		}
		return median(vs)
	}
	m := cpuUse{wall: pick(func(u cpuUse) float64 { return u.wall }), cores: pick(func(u cpuUse) float64 { return u.cores })}
	for i := range uses[0].procs {
		m.procs = append(m.procs, pick(func(u cpuUse) float64 { return u.procs[i] }))
	}
	return m
}
