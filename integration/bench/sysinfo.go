package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// sysInfo describes the machine and the software, for the report: absolute
// numbers mean little without them.
type sysInfo struct {
	date       time.Time
	cpu        string
	cores      int
	memGiB     float64
	kernel     string
	goVersion  string
	weed       string
	commit     string
	loadBefore string
	loadAfter  string
	elapsed    time.Duration
}

// collectInfo gathers what can be known before the run; weed and loadAfter
// are set later.
func collectInfo() *sysInfo {
	return &sysInfo{
		date:       time.Now(),
		cpu:        cpuModel(),
		cores:      runtime.NumCPU(),
		memGiB:     memTotalGiB(),
		kernel:     firstLine(os.ReadFile("/proc/sys/kernel/osrelease")),
		goVersion:  runtime.Version(),
		commit:     gitCommit(),
		loadBefore: loadAvg(),
	}
}

// firstLine is the first line of a file or a command's output, or "unknown".
func firstLine(b []byte, err error) string {
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotalGiB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / (1 << 20)
		}
	}
	return 0
}

// loadAvg is the 1-, 5- and 15-minute load average: other work on the
// machine shows in it.
func loadAvg() string {
	f := strings.Fields(firstLine(os.ReadFile("/proc/loadavg")))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// gitCommit names the weedfuse source measured, marked +dirty when the
// working tree has changes.
func gitCommit() string {
	commit := firstLine(exec.Command("git", "rev-parse", "--short", "HEAD").Output())
	if commit == "unknown" {
		return commit
	}
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(out) > 0 {
		commit += "+dirty"
	}
	return commit
}

// weedVersion is `weed version`'s first line, e.g. "version 8000GB 4.48 pypi linux amd64".
func weedVersion(weed string) string {
	v := firstLine(exec.Command(weed, "version").Output())
	return strings.TrimSpace(strings.TrimPrefix(v, "version"))
}

func (s *sysInfo) machine() string {
	return fmt.Sprintf("%s, %d cores, %.1f GiB, Linux %s", s.cpu, s.cores, s.memGiB, s.kernel)
}
