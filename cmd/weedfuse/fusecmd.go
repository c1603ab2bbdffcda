package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/weedfuse/weedfuse/internal/logs"
)

// fuseCommand is `weedfuse fuse DIR -o OPTIONS`, which is how mount.fuse3
// runs a helper for an /etc/fstab line such as
//
//	fuse  /mnt/data  fuse.weedfuse  filer=127.0.0.1:8888,filer.path=/data,_netdev  0 0
//
// mount(8) hands the line to mount.fuse3 (type fuse.*), which runs
// `/bin/sh -c 'weedfuse fuse /mnt/data -o rw,filer=…'`: the type names the
// program (found on PATH, or a full path after "fuse."), the source field
// ("fuse") becomes its first argument, and the options follow -o. mount(8)
// keeps _netdev, nofail, noauto and x-* to itself and turns "user" into
// nosuid,nodev,noexec. mount waits for the helper, so it daemonizes: the
// mount runs in a child, and the command exits 0 once the child reports the
// mount is up, or 1 with the child's error. `umount DIR` unmounts it and
// the child exits.
//
// Options named like weedfuse's flags set them (filer, filer.path, cacheDir,
// cacheCapacityMB, …; a bare name is true). allow_other and
// default_permissions are the FUSE spellings of -allowOthers and
// -defaultPermissions; foreground keeps the mount in this process. The
// generic mount options below are accepted and ignored: the mount is always
// read-only, nosuid and nodev. Anything else is an error.
func fuseCommand(args []string, stdout, stderr io.Writer) int {
	dir, opts, err := parseFuseArgs(args)
	if err != nil {
		fmt.Fprintln(stderr, "weedfuse fuse:", err)
		fmt.Fprintln(stderr, "usage: weedfuse fuse DIR -o filer=HOST:PORT[,filer.path=/PATH][,option...]")
		return 2
	}
	flagArgs, foreground, err := fuseOptionsToFlags(opts)
	if err != nil {
		fmt.Fprintln(stderr, "weedfuse fuse:", err)
		return 2
	}
	// Warnings go to a buffer: a daemonizing parent leaves them to the
	// child, which parses the same options again.
	var warnings bytes.Buffer
	cfg, err := parseFlags(append(flagArgs, "-dir="+dir), &warnings)
	daemon := !foreground && os.Getenv(readyFDEnv) == ""
	if err != nil || !daemon {
		io.Copy(stderr, &warnings)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "weedfuse fuse:", err)
		return 2
	}
	if daemon {
		abs, err := filepath.Abs(dir)
		if err != nil {
			fmt.Fprintln(stderr, "weedfuse fuse:", err)
			return 1
		}
		return daemonize(stderr, []string{"fuse", abs, "-o", strings.Join(opts, ",")})
	}
	if os.Getenv(readyFDEnv) != "" {
		// The daemon outlives the terminal and whatever reads its stderr:
		// a closed pipe must make writes fail, not kill the mount.
		signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	}
	slog.SetDefault(logs.New(os.Stderr, cfg.verbosity))
	if err := run(cfg); err != nil {
		fmt.Fprintln(stderr, "weedfuse:", err)
		return 1
	}
	return 0
}

// parseFuseArgs takes DIR and any number of -o OPTS (or -oOPTS), in any
// order, and returns the options split at commas.
func parseFuseArgs(args []string) (dir string, opts []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o":
			if i+1 == len(args) {
				return "", nil, errors.New("-o needs options")
			}
			i++
			opts = append(opts, splitList(args[i])...)
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, splitList(a[2:])...)
		case strings.HasPrefix(a, "-"):
			return "", nil, fmt.Errorf("unexpected argument %q", a)
		case dir == "":
			dir = a
		default:
			return "", nil, fmt.Errorf("unexpected argument %q after the mount point %s", a, dir)
		}
	}
	if dir == "" {
		return "", nil, errors.New("no mount point")
	}
	return dir, opts, nil
}

// genericMountOptions are mount(8)'s and the kernel's options, which a
// read-only FUSE mount accepts and ignores.
var genericMountOptions = map[string]bool{
	"rw": true, "ro": true, "defaults": true, "auto": true, "noauto": true,
	"_netdev": true, "nofail": true, "user": true, "nouser": true, "users": true,
	"owner": true, "group": true, "dev": true, "nodev": true, "suid": true,
	"nosuid": true, "exec": true, "noexec": true, "sync": true, "async": true,
	"atime": true, "noatime": true, "relatime": true, "norelatime": true,
	"strictatime": true, "nostrictatime": true, "diratime": true, "nodiratime": true,
	"lazytime": true, "nolazytime": true, "dirsync": true, "silent": true, "loud": true,
}

// fuseOptionAliases are FUSE's spellings of weedfuse flags.
var fuseOptionAliases = map[string]string{
	"allow_other":         "allowOthers",
	"default_permissions": "defaultPermissions",
	"fsname":              "volumeName",
}

// fuseOptionsToFlags turns mount options into weedfuse's flags.
func fuseOptionsToFlags(opts []string) (flags []string, foreground bool, err error) {
	known := newFlagSet(&config{}, io.Discard)
	for _, o := range opts {
		name, value, hasValue := strings.Cut(o, "=")
		if !hasValue {
			value = "true"
		}
		if alias, ok := fuseOptionAliases[name]; ok {
			name = alias
		}
		switch {
		case name == "foreground":
			foreground = true
		case genericMountOptions[name] && !hasValue,
			strings.HasPrefix(name, "x-"), name == "comment",
			name == "uid" || name == "gid": // of the mount's owner, set by mount(8) for "user"
		case known.Lookup(name) != nil:
			flags = append(flags, "-"+name+"="+value)
		default:
			return nil, false, fmt.Errorf("unknown mount option %q", o)
		}
	}
	return flags, foreground, nil
}

// daemonize runs this command (args, the mount point made absolute) again as a child in a session of its
// own, with the write end of a pipe as descriptor 3, and waits until the
// child writes "ready" on it (the mount is up: exit 0) or closes it by
// dying (exit 1: its error went to the shared stderr). The child's stderr
// is ours, passed on as it is, so that its log reaches whatever keeps ours
// (a terminal, or systemd's journal for an fstab mount).
func daemonize(stderr io.Writer, args []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "weedfuse fuse:", err)
		return 1
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(stderr, "weedfuse fuse:", err)
		return 1
	}
	defer r.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// A daemon keeps no working directory busy.
	cmd.Dir = "/"
	err = cmd.Start()
	w.Close()
	if err != nil {
		fmt.Fprintln(stderr, "weedfuse fuse:", err)
		return 1
	}
	msg, _ := io.ReadAll(r)
	if strings.HasPrefix(string(msg), "ready") {
		cmd.Process.Release()
		return 0
	}
	err = cmd.Wait()
	fmt.Fprintf(stderr, "weedfuse fuse: the mount did not come up (%v)\n", err)
	return 1
}
