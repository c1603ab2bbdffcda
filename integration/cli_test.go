package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
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
	code, out, took := runWeedfuse(t, 30*time.Second, "-filer=127.0.0.1:1", "-dir="+dir, "-dirAutoCreate")
	if code == 0 {
		t.Fatalf("exit code 0, want non-zero; output:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "filer") {
		t.Errorf("want one line naming the filer, got:\n%s", out)
	}
	t.Logf("exited %d after %v: %s", code, took, out)
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
		{"ignored weed mount flags warn", []string{"-filer=127.0.0.1:1", "-dir=" + dir, "-dirAutoCreate", "-concurrentWriters=4", "-writebackCache", "-chunkSizeLimitMB=8"},
			1, []string{"-concurrentWriters is a weed mount flag", "-writebackCache is a weed mount flag", "no filer reachable"}},
		{"double dash", []string{"--filer=127.0.0.1:1", "--dir=" + dir, "--dirAutoCreate"}, 1, []string{"127.0.0.1:1"}},
		{"grpc port form", []string{"-filer=127.0.0.1:1.2", "-dir=" + dir, "-dirAutoCreate"}, 1, []string{"127.0.0.1:2"}},
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
