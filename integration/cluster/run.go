package cluster

import (
	"context"
	"fmt"
	"time"
)

// Run runs cmdline with sh -c, its output going to ours, until it exits or
// ctx is done; then it stops it: SIGTERM, grace, SIGKILL to its process
// group. Stopping it because ctx ended is not an error.
func Run(ctx context.Context, cmdline string, grace time.Duration) error {
	p := &proc{name: fmt.Sprintf("sh -c %q", cmdline), path: "/bin/sh", args: []string{"-c", cmdline}}
	if err := p.start(); err != nil {
		return err
	}
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s: %w", p.name, p.err)
		}
		return nil
	case <-ctx.Done():
		return p.stop(grace)
	}
}
