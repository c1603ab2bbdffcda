package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Once the mount is up, three parties may be waiting to hear it:
//   - systemd, for a Type=notify unit: a READY=1 datagram to $NOTIFY_SOCKET;
//   - the `weedfuse fuse` parent that daemonized this process for mount(8):
//     a line on the pipe named by $WEEDFUSE_READY_FD (fusecmd.go);
//   - `weedfuse stats DIR`, later: it finds the mount's metrics on a unix
//     socket whose path follows from the mount point (controlSocketPath), so
//     that it works whether or not -metrics.address was given, with no port
//     to choose or record.

// announceMounted tells them all, and returns what undoes it at unmount.
func announceMounted(dir string, metrics http.Handler) (undo func()) {
	ctl, err := serveControl(dir, metrics)
	if err != nil {
		slog.Warn("no control socket: weedfuse stats cannot find this mount", "err", err)
	}
	if err := sdNotify("READY=1\nSTATUS=mounted " + dir); err != nil {
		slog.Warn("systemd notification failed", "err", err)
	}
	if err := signalParent(); err != nil {
		slog.Warn("could not tell the mount command that the mount is up", "err", err)
	}
	return func() {
		if err := sdNotify("STOPPING=1"); err != nil {
			slog.Debug("systemd notification failed", "err", err)
		}
		if ctl != nil {
			ctl.close()
		}
	}
}

// sdNotify sends state to systemd's notification socket, if there is one
// ($NOTIFY_SOCKET: a path, or an abstract socket when it starts with @).
// The protocol is one datagram of newline-separated assignments.
func sdNotify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	return nil
}

// readyFDEnv names the descriptor on which a daemonized mount reports that
// it is up (fusecmd.go).
const readyFDEnv = "WEEDFUSE_READY_FD"

// signalParent writes "ready" to the descriptor named by $WEEDFUSE_READY_FD
// and closes it; the parent then exits 0, and mount(8) with it.
func signalParent() error {
	v := os.Getenv(readyFDEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", readyFDEnv, v, err)
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	_, err = f.WriteString("ready\n")
	return err
}

// controlDir holds the mounts' control sockets: $WEEDFUSE_RUN_DIR if set,
// else /run/weedfuse for root, else $XDG_RUNTIME_DIR/weedfuse (a user's
// own), else a per-user temp dir.
func controlDir() string {
	if d := os.Getenv("WEEDFUSE_RUN_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/weedfuse"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "weedfuse")
	}
	return tempControlDir(os.Geteuid())
}

// tempControlDir is the control directory of user uid where there is no
// runtime directory.
func tempControlDir(uid int) string {
	return filepath.Join(os.TempDir(), "weedfuse-"+strconv.Itoa(uid))
}

// controlDirs are the directories a mount's control socket may be in, for
// a command that looks for it (findMount): controlDir's choice first, then
// those of a mount run by root or under another environment (systemd sets
// no XDG_RUNTIME_DIR), since the mount's user need not be the caller; and
// where owner, the mount's user (-1: not known), is another, that user's
// (/run/user/UID, as systemd-logind makes a runtime directory), which root
// may reach.
func controlDirs(owner int) []string {
	cands := []string{controlDir(), "/run/weedfuse", "", tempControlDir(os.Geteuid())}
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" {
		cands[2] = filepath.Join(xdg, "weedfuse")
	}
	if owner >= 0 && owner != os.Geteuid() {
		cands = append(cands, filepath.Join("/run/user", strconv.Itoa(owner), "weedfuse"), tempControlDir(owner))
	}
	var dirs []string
	for _, d := range cands {
		// A directory another user controls may hold a socket they
		// planted, whose answers would be taken for the mount's: root's
		// own candidate in /tmp is one anyone may create.
		if d != "" && !slices.Contains(dirs, d) && checkControlDir(d, owner) == nil {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// checkControlDir returns an error, naming dir, its owner and mode, unless
// dir is missing (no socket to find there) or a directory, not a symlink,
// that this process's user, root or owner (-1: none) owns and that neither
// group nor others may write: one where only the mount's user can put a
// socket.
func checkControlDir(dir string, owner int) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("control directory %s: %w", dir, err)
	}
	mode := st.Mode & 0o7777
	switch {
	case st.Mode&syscall.S_IFMT == syscall.S_IFLNK:
		return fmt.Errorf("control directory %s is a symlink: remove it", dir)
	case st.Mode&syscall.S_IFMT != syscall.S_IFDIR:
		return fmt.Errorf("control directory %s is not a directory: remove it", dir)
	case int(st.Uid) != os.Geteuid() && st.Uid != 0 && int(st.Uid) != owner:
		return fmt.Errorf("control directory %s is owned by uid %d (mode %04o), not by uid %d: its owner could serve a socket of their own in the mount's place; remove it (or set $WEEDFUSE_RUN_DIR)", dir, st.Uid, mode, os.Geteuid())
	case mode&0o022 != 0:
		return fmt.Errorf("control directory %s is writable by group or others (mode %04o): they could serve a socket of their own in the mount's place; remove it or chmod go-w it", dir, mode)
	}
	return nil
}

// controlSocketPath is where the mount at dir (absolute, clean) serves its
// metrics.
func controlSocketPath(dir string) string { return controlSocketIn(controlDir(), dir) }

// controlSocketIn is the control socket of the mount at dir in run
// directory run: the path escaped into one file name, or its hash when
// that is too long for a socket address (108 bytes on Linux).
func controlSocketIn(run, dir string) string {
	p := filepath.Join(run, url.PathEscape(dir)+".sock")
	if len(p) >= 100 {
		sum := sha256.Sum256([]byte(dir))
		p = filepath.Join(run, hex.EncodeToString(sum[:12])+".sock")
	}
	return p
}

type controlServer struct {
	srv  *http.Server
	path string
}

// serveControl serves /metrics on the mount's control socket. A socket
// left by a mount that died is replaced; so is that of a mount this one is
// stacked on, which is right, since the path now leads here.
func serveControl(dir string, metrics http.Handler) (*controlServer, error) {
	p := controlSocketPath(dir)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	// Its own, or another user could swap the socket for theirs, or
	// connect to it.
	if err := checkControlDir(filepath.Dir(p), os.Geteuid()); err != nil {
		return nil, err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, err
	}
	// The directory keeps others out already; the socket's own mode
	// (the umask's) too, for whoever sets $WEEDFUSE_RUN_DIR to a shared
	// one.
	if err := os.Chmod(p, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", p, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) // stopped by close
	return &controlServer{srv: srv, path: p}, nil
}

func (c *controlServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.srv.Shutdown(ctx)
	os.Remove(c.path)
}
