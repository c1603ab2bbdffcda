package logs

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter logs at most one line per kind of event per interval. A storm
// of failing reads (a volume server down under a busy mount) would
// otherwise write one line per 128 KiB read, thousands a second, and bury
// the line that says why. Lines it drops are counted, and the count is
// logged when the interval ends ("suppressed"), so that nothing goes
// unmentioned. With the logger at DEBUG (-v=2 and up) every line passes.
//
// It keeps no goroutine: a timer runs the summary once per interval in
// which something was dropped. Safe for concurrent use; the zero value is
// not usable, use NewLimiter.
type Limiter struct {
	interval time.Duration
	logger   func() *slog.Logger

	mu    sync.Mutex
	kinds map[string]*kindState
}

type kindState struct {
	last       time.Time   // when the last line of this kind was written
	suppressed int         // lines dropped since then
	summary    *time.Timer // armed while suppressed > 0
	level      slog.Level  // of the dropped lines
}

// NewLimiter limits lines to one per kind per interval, written to
// logger() (called each time, so that slog.Default() can be passed as it
// is and later replaced).
func NewLimiter(interval time.Duration, logger func() *slog.Logger) *Limiter {
	return &Limiter{interval: interval, logger: logger, kinds: map[string]*kindState{}}
}

// Log writes msg with args at level, unless a line of this kind was
// written less than an interval ago.
func (l *Limiter) Log(level slog.Level, kind, msg string, args ...any) {
	lg := l.logger()
	ctx := context.Background()
	if !lg.Enabled(ctx, level) {
		return
	}
	if lg.Enabled(ctx, slog.LevelDebug) {
		lg.Log(ctx, level, msg, append(args, "kind", kind)...)
		return
	}
	now := time.Now()
	l.mu.Lock()
	st := l.kinds[kind]
	if st == nil {
		st = &kindState{}
		l.kinds[kind] = st
	}
	if !st.last.IsZero() && now.Sub(st.last) < l.interval {
		st.suppressed++
		if st.summary == nil {
			st.level = level
			st.summary = time.AfterFunc(st.last.Add(l.interval).Sub(now), func() { l.summarize(kind) })
		}
		l.mu.Unlock()
		return
	}
	st.last = now
	l.mu.Unlock()
	lg.Log(ctx, level, msg, append(args, "kind", kind)...)
}

// summarize logs how many lines of a kind were dropped in the interval
// that just ended. The next line of the kind is written in full, so that a
// lasting storm shows one sample and one count per interval.
func (l *Limiter) summarize(kind string) {
	l.mu.Lock()
	st := l.kinds[kind]
	n, level := st.suppressed, st.level
	st.suppressed, st.summary = 0, nil
	l.mu.Unlock()
	if n > 0 {
		l.logger().Log(context.Background(), level, "similar lines suppressed", "kind", kind, "suppressed", n, "interval", l.interval)
	}
}

// Flush logs the pending summaries now, e.g. at unmount, and stops their
// timers.
func (l *Limiter) Flush() {
	l.mu.Lock()
	var due []string
	for kind, st := range l.kinds {
		if st.summary != nil && st.summary.Stop() {
			due = append(due, kind)
		}
	}
	l.mu.Unlock()
	for _, kind := range due {
		l.summarize(kind)
	}
}
