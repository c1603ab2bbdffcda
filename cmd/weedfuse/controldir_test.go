package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestServeControlRefusesDirItDoesNotControl: a mount's control socket
// goes only in a directory of the mount's user's own. A user without
// $XDG_RUNTIME_DIR has it in /tmp/weedfuse-UID, which any local user may
// create first: in one of theirs, they could remove the socket and serve
// their own in its place, which `weedfuse stats` and `weedfuse warmup`
// then believe, or (with a lax umask) read the mount's metrics.
func TestServeControlRefusesDirItDoesNotControl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	tests := []struct {
		name string
		// setup returns the run directory to use, made in base.
		setup func(t *testing.T, base string) string
		want  string // part of the error; "" wants the socket served
	}{
		{"another user's", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "run"), 0o777, nobody)
			return filepath.Join(base, "run")
		}, "owned by uid 65534"},
		{"another user's, private", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "run"), 0o700, nobody)
			return filepath.Join(base, "run")
		}, "owned by uid 65534"},
		{"writable by others", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "run"), 0o777, 0)
			return filepath.Join(base, "run")
		}, "writable by group or others"},
		{"a symlink", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "theirs"), 0o777, nobody)
			symlink(t, filepath.Join(base, "theirs"), filepath.Join(base, "run"), nobody)
			return filepath.Join(base, "run")
		}, "symlink"},
		{"its own", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "run"), 0o700, 0)
			return filepath.Join(base, "run")
		}, ""},
		{"new", func(t *testing.T, base string) string { return filepath.Join(base, "a", "run") }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := shortTempDir(t)
			run := tc.setup(t, base)
			t.Setenv("WEEDFUSE_RUN_DIR", run)
			ctl, err := serveControl("/mnt/x", http.NotFoundHandler())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("serveControl: %v", err)
				}
				defer ctl.close()
				st, err := os.Lstat(ctl.path)
				if err != nil {
					t.Fatal(err)
				}
				if perm := st.Mode().Perm(); perm&0o077 != 0 {
					t.Errorf("socket %s has mode %o: others may connect", ctl.path, perm)
				}
				return
			}
			if err == nil {
				ctl.close()
				t.Fatalf("serveControl served in %s, want an error saying %q", run, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), run) {
				t.Errorf("serveControl: %v, want an error naming %s and saying %q", err, run, tc.want)
			}
		})
	}
}

// TestControlDirsSkipsOthers: a command looking for a mount's socket skips
// run directories another user controls (root's `weedfuse stats` looks in
// /tmp/weedfuse-0 too, which anyone may create), so that it never takes a
// planted socket's answers for the mount's.
func TestControlDirsSkipsOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	tmp := shortTempDir(t)
	t.Setenv("TMPDIR", tmp)
	t.Setenv("WEEDFUSE_RUN_DIR", filepath.Join(tmp, "run"))
	t.Setenv("XDG_RUNTIME_DIR", "")
	mkdir(t, filepath.Join(tmp, "run"), 0o700, 0)
	planted := tempControlDir(0)
	mkdir(t, planted, 0o777, nobody)
	// A mount of uid 1000's: its own directory is trusted for it.
	users := tempControlDir(1000)
	mkdir(t, users, 0o700, 1000)
	dirs := controlDirs(1000)
	if slices.Contains(dirs, planted) {
		t.Errorf("controlDirs(1000) = %v: has %s, which uid %d owns", dirs, planted, nobody)
	}
	if !slices.Contains(dirs, users) || !slices.Contains(dirs, filepath.Join(tmp, "run")) {
		t.Errorf("controlDirs(1000) = %v: want %s and %s", dirs, users, filepath.Join(tmp, "run"))
	}
	// A planted socket there is not asked.
	sock := controlSocketIn(planted, "/mnt/x")
	ln, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := findMount(context.Background(), "/mnt/x"); err == nil {
		t.Errorf("findMount took the socket planted at %s", sock)
	}
}

// listenUnix serves at path the metrics a planted socket would.
func listenUnix(path string) (*http.Server, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("weedfuse_cache_capacity_bytes{tier=\"disk\"} 1048576\n"))
	})}
	go srv.Serve(ln)
	return srv, nil
}

// shortTempDir is a temporary directory with a name short enough that a
// socket's path in it fits a socket address (t.TempDir's are named for the
// test).
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "wfctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
