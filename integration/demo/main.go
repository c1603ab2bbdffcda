// Command demo runs a loopback SeaweedFS cluster filled with sample data, for
// trying weedfuse by hand (`make demo`). It prints the filer address, then
// either runs the -exec command line, with %s replaced by that address, until
// the command exits, or waits; on Ctrl-C or SIGTERM it stops the command,
// unmounts -mnt if it is still mounted, and stops the cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

func main() {
	if err := run(); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run() (err error) {
	dataDir := flag.String("data", ".demo", "cluster data directory; reused if it exists")
	mnt := flag.String("mnt", "mnt", "mount point to unmount on exit if still mounted")
	execLine := flag.String("exec", "", `command line to run once the cluster is up, %s being the filer address, e.g. "weedfuse -filer=%s -dir=./mnt"`)
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := cluster.Start(ctx, cluster.Options{DataDir: *dataDir, Logf: log.Printf})
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, cluster.UnmountFUSE(*mnt), c.Stop())
	}()
	tree, err := c.PutSampleData(ctx, "/demo")
	if err != nil {
		return err
	}

	fmt.Printf(`
filer:  %s (gRPC %s)
master: %s, volume servers %v
logs:   %s/*.log
data:   /demo on the filer: %d files, %d directories, %d symlink, including big/random-20MiB.bin and many/ (1000 files)

A mount by hand: bin/weedfuse -filer=%[1]s -dir=./%[9]s
or the stock:     %[10]s mount -filer=%[1]s -dir=./%[9]s
(make demo mounts weedfuse at ./%[9]s itself, below)
`, c.FilerAddr(), c.FilerGRPCAddr(), c.MasterAddr(), c.VolumeAddrs(), c.Dir(),
		len(tree.Files), len(tree.Dirs), len(tree.Symlinks), *mnt, c.Weed())

	if *execLine == "" {
		fmt.Println("Ctrl-C stops the cluster.")
		<-ctx.Done()
		return nil
	}
	cmdline := strings.ReplaceAll(*execLine, "%s", c.FilerMountSpec())
	log.Printf("running: %s", cmdline)
	return cluster.Run(ctx, cmdline, 5*time.Second)
}
