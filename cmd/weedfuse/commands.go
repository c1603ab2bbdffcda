package main

import (
	"fmt"
	"io"
	"os"
)

// subcommands are weedfuse's commands besides the mount itself, which
// takes weed mount's flags and no command word so that weedfuse drops in
// for `weed mount`. Each gets the arguments after its name and returns the
// exit status. Adding one (e.g. "warmup") is one line here.
var subcommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"fuse":   fuseCommand,  // mount.fuse3's helper convention (fstab); fusecmd.go
	"stats":  statsCommand, // a live view of a mount's counters; stats.go
	"warmup": warmupMain,   // fill the disk cache with files or trees; warmup.go
	"help":   helpCommand,
}

// helpCommand prints the usage (weedfuse -h) to stdout.
func helpCommand(_ []string, stdout, _ io.Writer) int {
	newFlagSet(&config{}, stdout).Usage()
	return 0
}

// runSubcommand runs the subcommand named by args[0], if it is one.
func runSubcommand(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	cmd, ok := subcommands[args[0]]
	if !ok {
		return 0, false
	}
	return cmd(args[1:], os.Stdout, os.Stderr), true
}

func usageSubcommands(w io.Writer) {
	fmt.Fprintln(w, "       weedfuse COMMAND [arguments]      (COMMAND -h for its own flags)")
	fmt.Fprintln(w, "\nCommands:")
	fmt.Fprintln(w, "  weedfuse fuse DIR -o filer=HOST:PORT,filer.path=/PATH[,option...]   mount, for /etc/fstab (type fuse.weedfuse)")
	fmt.Fprintln(w, "  weedfuse stats DIR                                                   live counters of the mount at DIR")
	fmt.Fprintln(w, "  weedfuse warmup [-threads N] PATH...                                 fill the disk cache with files or trees of a mount")
}
