package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// `weedfuse stats` and `weedfuse warmup` are given a path: a mount point,
// or anything inside a mount. They find the mount's control socket
// (ready.go) from its mount point, and take the mount to be weedfuse only
// if a socket answers: a weed mount is fuse.seaweedfs too, and a socket
// may outlive a mount that was killed.

// errNoMount says that no weedfuse mount answers for a path.
var errNoMount = errors.New("not on a weedfuse mount")

// mountRef is a weedfuse mount that answered.
type mountRef struct {
	dir   string // its mount point
	sock  string // its control socket
	first sample // its metrics when it answered
}

// findMount finds the weedfuse mount that holds path (absolute, with its
// symlinks resolved). The path itself is tried first, which is all a mount
// point needs, then its mount point from /proc/self/mountinfo. The socket
// is looked for in every directory a mount may use (controlDirs): the
// mount may run as another user than the caller, and one run by root
// keeps its socket where others cannot reach it, which is said so.
func findMount(ctx context.Context, path string) (mountRef, error) {
	dirs := []string{path}
	mnt, err := mountPoint(path)
	if err == nil && mnt.dir != path {
		dirs = append(dirs, mnt.dir)
	}
	mp, fstype, runs := mnt.dir, mnt.fstype, controlDirs(mnt.owner)
	var denied string
	for _, dir := range dirs {
		for _, run := range runs {
			sock := controlSocketIn(run, dir)
			if _, err := os.Stat(sock); err != nil {
				// Any path "exists" in a directory one cannot search:
				// only a FUSE mount point may have a socket there.
				if errors.Is(err, fs.ErrPermission) && dir == mp && strings.HasPrefix(fstype, "fuse") {
					denied = sock
				}
				continue
			}
			s, err := scrape(ctx, sock)
			if err == nil {
				return mountRef{dir: dir, sock: sock, first: s}, nil
			}
			if errors.Is(err, fs.ErrPermission) {
				denied = sock
			}
		}
	}
	if denied != "" {
		return mountRef{}, fmt.Errorf("%w: run as root (the mount's control socket is %s)", fs.ErrPermission, denied)
	}
	return mountRef{}, errNoMount
}

// mountEntry is a mount as /proc/self/mountinfo tells it: its mount
// point, file system type, and the user who made it (a FUSE mount's
// user_id= option; -1 where there is none).
type mountEntry struct {
	dir, fstype string
	owner       int
}

// mountPoint returns the mount that holds path (absolute, with its
// symlinks resolved).
func mountPoint(path string) (mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{owner: -1}, fmt.Errorf("mount point of %s: %w", path, err)
	}
	return mountPointIn(string(b), path), nil
}

// mountPointIn is mountPoint in the text of a mountinfo file: the longest
// mount point that is path or one of its parents; of mounts stacked on one
// point, the last, which is the one seen.
func mountPointIn(mountinfo, path string) mountEntry {
	m := mountEntry{owner: -1}
	for line := range strings.Lines(mountinfo) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		f := strings.Fields(line)
		sep := -1
		for i, v := range f {
			if v == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+1 >= len(f) {
			continue
		}
		mp := unescapeOctal(f[4])
		inside := mp == "/" || path == mp || strings.HasPrefix(path, mp+"/")
		if inside && len(mp) >= len(m.dir) {
			m = mountEntry{dir: mp, fstype: f[sep+1], owner: userID(f[len(f)-1])}
		}
	}
	return m
}

// userID is the user_id= of a mount's super options, or -1.
func userID(superopts string) int {
	for _, opt := range strings.Split(superopts, ",") {
		if v, ok := strings.CutPrefix(opt, "user_id="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
	}
	return -1
}

// unescapeOctal undoes mountinfo's escapes of a space, tab, newline and
// backslash in a path: \040, \011, \012, \134.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
