package logs

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// syncBuffer is a bytes.Buffer safe for the summary timer's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestLimiter(t *testing.T) {
	type event struct{ kind, msg string }
	tests := []struct {
		name   string
		v      int
		events []event
		flush  bool
		want   []string // substrings of the lines, in order
	}{
		{"one line per kind, then a count", 0,
			[]event{{"read", "a"}, {"read", "b"}, {"read", "c"}, {"lookup", "d"}}, true,
			[]string{`msg=a kind=read`, `msg=d kind=lookup`, `msg="similar lines suppressed" kind=read suppressed=2`}},
		{"nothing dropped, no summary", 0,
			[]event{{"read", "a"}, {"lookup", "b"}}, true,
			[]string{`msg=a kind=read`, `msg=b kind=lookup`}},
		{"-v=2 passes every line", 2,
			[]event{{"read", "a"}, {"read", "b"}, {"read", "c"}}, true,
			[]string{`msg=a`, `msg=b`, `msg=c`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			lg := New(&buf, tt.v)
			l := NewLimiter(time.Hour, func() *slog.Logger { return lg })
			for _, e := range tt.events {
				l.Log(slog.LevelWarn, e.kind, e.msg)
			}
			if tt.flush {
				l.Flush()
			}
			lines := buf.lines()
			if assert.Len(t, lines, len(tt.want), "%q", lines) {
				for i, w := range tt.want {
					assert.Contains(t, lines[i], w)
				}
			}
		})
	}
}

// TestLimiterSummaryTimer checks that the count comes by itself when the
// interval ends, and that the next line after it is written in full.
func TestLimiterSummaryTimer(t *testing.T) {
	var buf syncBuffer
	lg := New(&buf, 0)
	l := NewLimiter(50*time.Millisecond, func() *slog.Logger { return lg })
	for i := 0; i < 10; i++ {
		l.Log(slog.LevelWarn, "read", "boom")
	}
	assert.Eventually(t, func() bool { return len(buf.lines()) == 2 }, 2*time.Second, 10*time.Millisecond)
	assert.Contains(t, buf.lines()[1], "suppressed=9")
	l.Log(slog.LevelWarn, "read", "again")
	assert.Contains(t, buf.lines()[2], "msg=again")
}

func TestLevel(t *testing.T) {
	for v, want := range map[int]slog.Level{-1: slog.LevelInfo, 0: slog.LevelInfo, 1: slog.LevelInfo, 2: slog.LevelDebug, 4: slog.LevelDebug} {
		assert.Equal(t, want, Level(v), "-v=%d", v)
	}
}
