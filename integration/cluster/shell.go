package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Shell runs commands (one a line) in `weed shell` against the cluster and
// returns what it printed. weed shell reports a failed command on its output
// and still exits 0, so callers look for their command's own success line.
func (c *Cluster) Shell(ctx context.Context, commands string) (string, error) {
	cmd := exec.CommandContext(ctx, c.weed, "-config_dir="+c.confDir, "shell",
		"-master="+c.MasterAddr(), "-filer="+c.FilerAddr())
	cmd.Dir = c.confDir
	cmd.Env = c.newProc("shell").env
	cmd.Stdin = strings.NewReader(commands + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("weed shell: %w: %s", err, lastLines(out.Bytes(), 20))
	}
	return out.String(), nil
}

// MoveVolume moves volume vid from volume server from to volume server to
// with `weed shell volume.move`, and returns once the master lists it only
// at to. A running reader sees the copy, the tail of writes made during
// the copy, and then the source's copy deleted.
func (c *Cluster) MoveVolume(ctx context.Context, vid uint32, from, to int) error {
	addrs := c.VolumeAddrs()
	if from < 0 || from >= len(addrs) || to < 0 || to >= len(addrs) {
		return fmt.Errorf("move volume %d: the cluster has %d volume servers", vid, len(addrs))
	}
	out, err := c.Shell(ctx, fmt.Sprintf("lock\nvolume.move -source %s -target %s -volumeId %d\nunlock",
		addrs[from], addrs[to], vid))
	if err != nil {
		return fmt.Errorf("move volume %d: %w", vid, err)
	}
	want := fmt.Sprintf("moved volume %d from %s to %s", vid, addrs[from], addrs[to])
	if !strings.Contains(out, want) {
		return fmt.Errorf("move volume %d from %s to %s: weed shell said: %s", vid, addrs[from], addrs[to],
			lastLines([]byte(out), 20))
	}
	return poll(ctx, c.master, fmt.Sprintf("master to list volume %d at %s only", vid, addrs[to]), func(ctx context.Context) error {
		locs, err := c.LookupVolume(ctx, vid)
		if err != nil {
			return err
		}
		if len(locs) != 1 || locs[0] != addrs[to] {
			return fmt.Errorf("master lists %v", locs)
		}
		return nil
	})
}

// LookupVolume returns the volume servers (host:port) that the master lists
// for volume vid.
func (c *Cluster) LookupVolume(ctx context.Context, vid uint32) ([]string, error) {
	var r struct {
		Locations []struct {
			URL string `json:"url"`
		} `json:"locations"`
		Error string `json:"error"`
	}
	if err := c.getJSON(ctx, "http://"+c.MasterAddr()+"/dir/lookup?volumeId="+strconv.FormatUint(uint64(vid), 10), &r); err != nil {
		return nil, fmt.Errorf("lookup volume %d: %w", vid, err)
	}
	var locs []string
	for _, l := range r.Locations {
		locs = append(locs, l.URL)
	}
	return locs, nil
}
