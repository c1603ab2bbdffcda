package main

import (
	"context"
	"os/signal"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An interrupted warm-up exits as a shell reports a process the signal
// killed.
func TestSignalExit(t *testing.T) {
	for sig, want := range map[syscall.Signal]int{syscall.SIGTERM: 143, syscall.SIGINT: 130} {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		require.NoError(t, syscall.Kill(syscall.Getpid(), sig))
		<-ctx.Done()
		assert.Equal(t, want, signalExit(ctx), sig.String())
		stop()
	}
}
