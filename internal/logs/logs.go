// Package logs holds what weedfuse's and weedrdma's logging share: the
// handler both commands install as slog's default, the mapping of weed's
// glog verbosity (-v=N) to slog levels, and a limiter that keeps a storm of
// per-read errors from flooding the log.
//
// Packages below cmd log through slog.Default() (or the standard log
// package, which slog.SetDefault routes through the same handler at INFO),
// so that they need no logger passed in.
package logs

import (
	"io"
	"log/slog"
)

// Level maps weed's glog verbosity to a slog level, so that a weed mount
// command line's -v=N means the same thing here:
//
//	-v=0, -v=1  INFO: start, mount, unmount, warnings, errors (weed mount's default is 0)
//	-v=2 and up DEBUG: also the debug lines, and every per-read error line
//	            (the Limiter passes them all)
//
// glog's V(1) in weed mount logs about as much as INFO does here, and V(2)
// and up are its debugging levels.
func Level(v int) slog.Level {
	if v >= 2 {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// New returns a logger writing logfmt lines (time=… level=… msg=… k=v) to w
// at the level -v=v asks for.
func New(w io.Writer, v int) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: Level(v)}))
}
