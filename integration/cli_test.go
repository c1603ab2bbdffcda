package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWeedfuse runs the binary to completion within limit and returns its
// exit code, output and how long it took.
func runWeedfuse(t *testing.T, limit time.Duration, args ...string) (int, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, weedfuseBin, args...).CombinedOutput()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("weedfuse %v still running after %v:\n%s", args, limit, out)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out), took
}

func TestUnreachableFiler(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	// Bounded: one line naming the filer, and a failure.
	code, out, took := runWeedfuse(t, 30*time.Second, "-filer=127.0.0.1:1", "-filer.startTimeout=1ns", "-dir="+dir, "-dirAutoCreate")
	if code == 0 {
		t.Fatalf("exit code 0, want non-zero; output:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "filer") {
		t.Errorf("want one line naming the filer, got:\n%s", out)
	}
	t.Logf("exited %d after %v: %s", code, took, out)
	// By default it waits for the filer, as weed mount does, and says so
	// at each try.
	cmd := exec.Command(weedfuseBin, "-filer=127.0.0.1:1", "-dir="+dir, "-dirAutoCreate")
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("weedfuse gave up on the filer at once (%v):\n%s", err, log.String())
	case <-time.After(2500 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Errorf("weedfuse waiting for a filer did not stop on SIGTERM")
	}
	if n := strings.Count(log.String(), "waiting for a filer"); n < 2 {
		t.Errorf("want a line for each try (2 in 2.5 s), got %d:\n%s", n, log.String())
	}
}

func TestFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"unknown flag", []string{"-nosuchflag=1"}, 2, []string{"flag provided but not defined: -nosuchflag", "-filer.path"}},
		{"bad umask", []string{"-umask=999", "-dir=" + dir}, 1, []string{"-umask"}},
		{"bad map.uid", []string{"-map.uid=1000", "-dir=" + dir}, 1, []string{"-map.uid", "<local>:<filer>"}},
		{"bad map.gid", []string{"-map.gid=x:0", "-dir=" + dir}, 1, []string{"-map.gid"}},
		{"ignored weed mount flags warn", []string{"-filer=127.0.0.1:1", "-filer.startTimeout=1ns", "-dir=" + dir, "-dirAutoCreate", "-concurrentWriters=4", "-writebackCache", "-chunkSizeLimitMB=8"},
			1, []string{"-concurrentWriters is a weed mount flag", "-writebackCache is a weed mount flag", "no filer reachable"}},
		{"double dash", []string{"--filer=127.0.0.1:1", "--filer.startTimeout=1ns", "--dir=" + dir, "--dirAutoCreate"}, 1, []string{"127.0.0.1:1"}},
		{"grpc port form", []string{"-filer=127.0.0.1:1.2", "-filer.startTimeout=1ns", "-dir=" + dir, "-dirAutoCreate"}, 1, []string{"127.0.0.1:2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, _ := runWeedfuse(t, 30*time.Second, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
