// Package integration holds the end-to-end tests: a real SeaweedFS cluster
// (package cluster) read through a real FUSE mount of the weedfuse binary
// (package mount). They need root, /dev/fuse and the weed binary; .ci/install
// provides them. A missing prerequisite fails the tests rather than skipping
// them, because a skipped test is not a pass.
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/integration/mount"
)

// weedfuseBin is built once for all tests.
var weedfuseBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration tests mount FUSE file systems: run them as root")
		os.Exit(1)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		fmt.Fprintln(os.Stderr, "integration tests need /dev/fuse:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "weedfuse-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weedfuseBin, err = mount.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startMount mounts c's filer with weedfuse at a fresh directory, with extra
// flags, and unmounts it when the test ends; a mount that does not unmount
// cleanly on SIGTERM fails the test.
func startMount(t *testing.T, c *cluster.Cluster, args ...string) *mount.Mount {
	t.Helper()
	return startMountAt(t, c, filepath.Join(t.TempDir(), "mnt"), args...)
}

// startMountAt is startMount at mount point dir, created if missing.
func startMountAt(t *testing.T, c *cluster.Cluster, dir string, args ...string) *mount.Mount {
	t.Helper()
	// Each mount gets a disk cache of its own, unless the test names one:
	// a test's cached bytes must not answer another test's reads.
	all := []string{"-filer=" + c.FilerMountSpec(), "-cacheDir=" + t.TempDir()}
	all = append(all, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := mount.Start(ctx, weedfuseBin, dir, 20*time.Second, all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Errorf("stop weedfuse: %v\n%s", err, m.Log())
		} else if t.Failed() {
			t.Logf("weedfuse's log:\n%s", m.Log())
		}
	})
	return m
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
