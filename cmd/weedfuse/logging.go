package main

import (
	"flag"
	"io"
)

// glogFlags are the logging flags of weed's glog that weed mount accepts
// besides -v. weedfuse always logs to stderr (systemd's journal or the
// caller's redirection keeps it), so they are accepted with a warning.
var glogFlags = map[string]bool{
	"logtostderr": true, "alsologtostderr": true, "log_dir": false, "logdir": false,
	"stderrthreshold": false, "vmodule": false, "log_backtrace_at": false,
}

// addLogFlags declares -v, weed's glog verbosity, mapped to slog levels by
// logs.Level: 0 and 1 log INFO and up, 2 and more DEBUG, with every per-read
// error line (otherwise one per kind per 10 s, and a count of the rest).
func addLogFlags(fs *flag.FlagSet, c *config, stderr io.Writer) {
	fs.IntVar(&c.verbosity, "v", 0, "log verbosity as weed's glog -v: 0-1 info, 2 and up debug with every error line")
	for name, isBool := range glogFlags {
		fs.Var(&ignored{name: name, isBool: isBool, warn: stderr}, name, "glog flag; weedfuse logs to stderr")
	}
}
