package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/internal/metrics"
	"github.com/weedfuse/weedfuse/internal/volume"
	"github.com/weedfuse/weedfuse/pagecache"
)

// counting is a Stats source whose counters grow by a step per call.
type counting struct {
	mu sync.Mutex
	n  uint64
}

func (c *counting) Stats() pagecache.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return pagecache.Stats{Hits: 90 * c.n, Misses: 10 * c.n}
}

type httpCounting struct{ c *counting }

func (h httpCounting) Stats() volume.Stats {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return volume.Stats{Bytes: int64(h.c.n) << 20}
}

// fakeMount serves a live metrics registry on the control socket of mnt,
// with reads going on while it runs.
func fakeMount(t *testing.T, mnt string) {
	t.Helper()
	t.Setenv("WEEDFUSE_RUN_DIR", t.TempDir())
	mx := metrics.NewMount()
	c := &counting{}
	require.NoError(t, mx.AddCache(c))
	require.NoError(t, mx.AddHTTP(httpCounting{c}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			mx.ObserveOp("read", 300*time.Microsecond, 128<<10, 0)
			time.Sleep(time.Millisecond)
		}
	}()
	ctl, err := serveControl(mnt, mx.Handler())
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		<-done
		ctl.close()
	})
}

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile("/dev/pts/"+itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestStatsTerminal runs `weedfuse stats` on a pseudo-terminal against a
// live registry: it must redraw in place and show rates.
func TestStatsTerminal(t *testing.T) {
	mnt := "/mnt/stats-test"
	fakeMount(t, mnt)
	master, slave := openPTY(t)
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	var stderr bytes.Buffer
	code := statsCommand([]string{mnt, "-interval=200ms", "-count=2"}, slave, &stderr)
	require.Equal(t, 0, code, stderr.String())
	slave.Close()
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
		master.Close()
		<-copied
	}
	text := out.String()
	assert.Equal(t, 2, strings.Count(text, "\x1b[H\x1b[2J"), "one redraw per interval:\n%q", text)
	assert.Contains(t, text, "weedfuse stats "+mnt)
	assert.Contains(t, text, "cache hits        90.0")
	assert.Regexp(t, `reads +[1-9][0-9]* /s`, text)
	// Every read took 300µs: in the (250µs, 500µs] bucket.
	assert.Regexp(t, `reads .* latency p50 [2-4][0-9][0-9]µs  p99 [2-5][0-9][0-9]µs`, text)
}

// TestStatsRows checks the output to a pipe: a header, then a row per
// interval.
func TestStatsRows(t *testing.T) {
	mnt := "/mnt/stats-rows"
	fakeMount(t, mnt)
	var stdout, stderr bytes.Buffer
	code := statsCommand([]string{"-count=3", "-interval=100ms", mnt}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	require.Len(t, lines, 4, stdout.String())
	assert.Equal(t, rowHeader, lines[0])
	assert.NotContains(t, stdout.String(), "\x1b[")
}

func TestStatsNoMount(t *testing.T) {
	t.Setenv("WEEDFUSE_RUN_DIR", t.TempDir())
	var stdout, stderr bytes.Buffer
	code := statsCommand([]string{filepath.Join(t.TempDir(), "nothing")}, &stdout, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "no weedfuse mount at")
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	prev := map[float64]float64{0.001: 10, 0.01: 10, inf: 10}
	tests := []struct {
		name string
		cur  map[float64]float64
		q    float64
		want float64
	}{
		{"all in the first bucket", map[float64]float64{0.001: 110, 0.01: 110, inf: 110}, 0.5, 0.0005},
		{"all in the second", map[float64]float64{0.001: 10, 0.01: 110, inf: 110}, 0.5, 0.0055},
		{"over the last bound", map[float64]float64{0.001: 10, 0.01: 10, inf: 20}, 0.99, 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.InDelta(t, tt.want, quantile(tt.q, prev, tt.cur), 1e-9)
		})
	}
	assert.True(t, math.IsNaN(quantile(0.5, prev, prev)))
}
