package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestParseFuseArgs(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantDir  string
		wantOpts []string
		wantErr  string
	}{
		{"mount.fuse3's form", []string{"/mnt/data", "-o", "rw,nosuid,filer=127.0.0.1:8888,filer.path=/data"},
			"/mnt/data", []string{"rw", "nosuid", "filer=127.0.0.1:8888", "filer.path=/data"}, ""},
		{"options first, attached", []string{"-oro", "/mnt", "-o", "allow_other"}, "/mnt", []string{"ro", "allow_other"}, ""},
		{"no dir", []string{"-o", "ro"}, "", nil, "no mount point"},
		{"dangling -o", []string{"/mnt", "-o"}, "", nil, "-o needs options"},
		{"two dirs", []string{"/a", "/b"}, "", nil, "unexpected argument"},
		{"a flag", []string{"/a", "-filer=x"}, "", nil, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, opts, err := parseFuseArgs(tt.args)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantDir, dir)
			assert.Equal(t, tt.wantOpts, opts)
		})
	}
}

func TestFuseOptionsToFlags(t *testing.T) {
	tests := []struct {
		name       string
		opts       []string
		want       []string
		foreground bool
		wantErr    string
	}{
		{"weedfuse flags", []string{"filer=127.0.0.1:8888", "filer.path=/data", "cacheDir=/var/cache/w", "nonempty"},
			[]string{"-filer=127.0.0.1:8888", "-filer.path=/data", "-cacheDir=/var/cache/w", "-nonempty=true"}, false, ""},
		{"generic options ignored", []string{"rw", "ro", "_netdev", "nofail", "noauto", "auto", "user", "nosuid", "nodev", "noexec",
			"dev", "suid", "exec", "defaults", "x-systemd.automount", "x-systemd.requires=network-online.target", "comment=x"}, nil, false, ""},
		{"fuse spellings", []string{"allow_other", "default_permissions", "fsname=weed"},
			[]string{"-allowOthers=true", "-defaultPermissions=true", "-volumeName=weed"}, false, ""},
		{"foreground", []string{"foreground", "filer=f:1"}, []string{"-filer=f:1"}, true, ""},
		{"unknown", []string{"filer=f:1", "bogus=1"}, nil, false, `unknown mount option "bogus=1"`},
		{"generic with a value is not generic", []string{"rw=1"}, nil, false, "unknown mount option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flags, fg, err := fuseOptionsToFlags(tt.opts)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, flags)
			assert.Equal(t, tt.foreground, fg)
			// What it produces must parse.
			_, err = parseFlags(flags, io.Discard)
			assert.NoError(t, err)
		})
	}
}

// listenNotify is a fake systemd notification socket.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func readDatagram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := conn.Read(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

// TestAnnounceMounted checks what a mount says once it is up: READY=1 to
// systemd (path and abstract sockets), "ready" to a daemonizing parent,
// /metrics on its control socket; and what it undoes at unmount.
func TestAnnounceMounted(t *testing.T) {
	tests := []struct {
		name   string
		notify func(dir string) (env, listen string)
	}{
		{"path socket", func(dir string) (string, string) { p := filepath.Join(dir, "notify"); return p, p }},
		{"abstract socket", func(dir string) (string, string) {
			n := "weedfuse-test-" + filepath.Base(dir)
			return "@" + n, "\x00" + n
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			env, listen := tt.notify(tmp)
			notify := listenNotify(t, listen)
			t.Setenv("NOTIFY_SOCKET", env)
			t.Setenv("WEEDFUSE_RUN_DIR", filepath.Join(tmp, "run"))
			r, w, err := os.Pipe()
			require.NoError(t, err)
			defer r.Close()
			// signalParent closes the descriptor it is given, as a child
			// does its inherited one: hand it a duplicate that no *os.File owns.
			fd, err := unix.Dup(int(w.Fd()))
			require.NoError(t, err)
			w.Close()
			t.Setenv(readyFDEnv, strconv.Itoa(fd))

			mnt := "/mnt/some dir/data"
			metrics := http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "weedfuse_up 1\n") })
			undo := announceMounted(mnt, metrics)

			assert.Equal(t, "READY=1\nSTATUS=mounted "+mnt, readDatagram(t, notify))
			line, err := io.ReadAll(r)
			require.NoError(t, err)
			assert.Equal(t, "ready\n", string(line))
			assert.Empty(t, os.Getenv(readyFDEnv), "the ready descriptor is used once")

			sock := controlSocketPath(mnt)
			assert.True(t, strings.HasPrefix(sock, filepath.Join(tmp, "run")+"/"), sock)
			body, err := getMetrics(context.Background(), sock)
			require.NoError(t, err)
			assert.Equal(t, "weedfuse_up 1\n", string(body))

			undo()
			assert.Equal(t, "STOPPING=1", readDatagram(t, notify))
			_, err = os.Stat(sock)
			assert.ErrorIs(t, err, os.ErrNotExist, "control socket left behind")
		})
	}
}

func TestControlSocketPathLong(t *testing.T) {
	t.Setenv("WEEDFUSE_RUN_DIR", "/run/weedfuse")
	long := "/" + strings.Repeat("d", 300)
	p := controlSocketPath(long)
	assert.Less(t, len(p), 108)
	assert.NotEqual(t, p, controlSocketPath(long+"x"))
	assert.Equal(t, "/run/weedfuse/%2Fmnt%2Fdata.sock", controlSocketPath("/mnt/data"))
}
