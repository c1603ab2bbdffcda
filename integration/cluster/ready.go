package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// poll calls check every 100ms until it returns nil, p exits, or ctx ends;
// the error then names what was awaited and quotes p's log.
func poll(ctx context.Context, p *proc, what string, check func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(attempt)
		cancel()
		if err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("waiting for %s: %w", what, p.exitError())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w; last check: %v%s", what, ctx.Err(), err, p.logTail())
		case <-tick.C:
		}
	}
}

func (c *Cluster) waitMasterLeader(ctx context.Context) error {
	return poll(ctx, c.master, "master "+c.MasterAddr()+" to become leader", func(ctx context.Context) error {
		var st struct{ IsLeader bool }
		if err := c.getJSON(ctx, "http://"+c.MasterAddr()+"/cluster/status", &st); err != nil {
			return err
		}
		if !st.IsLeader {
			return errors.New("not leader yet")
		}
		return nil
	})
}

// RegisteredVolumes returns the volume servers (host:port) that the master
// currently lists, with the number of volumes each reports.
func (c *Cluster) RegisteredVolumes(ctx context.Context) (map[string]int, error) {
	var st struct {
		Topology struct {
			DataCenters []struct {
				Racks []struct {
					DataNodes []struct {
						URL     string `json:"Url"`
						Volumes int
					}
				}
			}
		}
	}
	if err := c.getJSON(ctx, "http://"+c.MasterAddr()+"/dir/status", &st); err != nil {
		return nil, err
	}
	nodes := map[string]int{}
	for _, dc := range st.Topology.DataCenters {
		for _, r := range dc.Racks {
			for _, n := range r.DataNodes {
				nodes[n.URL] = n.Volumes
			}
		}
	}
	return nodes, nil
}

// waitVolumeRegistered waits until the master lists volume server i with at
// least as many volumes as its directory holds, so that a restarted server
// serves its old data before this returns.
func (c *Cluster) waitVolumeRegistered(ctx context.Context, i int) error {
	addr := c.VolumeAddrs()[i]
	dats, err := filepath.Glob(filepath.Join(c.volumeDir(i), "*.dat"))
	if err != nil {
		return fmt.Errorf("list volumes of volume%d: %w", i, err)
	}
	what := fmt.Sprintf("volume%d %s to register with %d volumes at master %s", i, addr, len(dats), c.MasterAddr())
	return poll(ctx, c.volumes[i], what, func(ctx context.Context) error {
		nodes, err := c.RegisteredVolumes(ctx)
		if err != nil {
			return err
		}
		n, ok := nodes[addr]
		if !ok {
			return fmt.Errorf("master lists %v", nodes)
		}
		if n < len(dats) {
			return fmt.Errorf("master lists %d volumes", n)
		}
		return nil
	})
}

// waitAssign waits until the master assigns a file id, which proves that
// writable volumes exist with the default replication; the first requests
// make the master grow volumes.
func (c *Cluster) waitAssign(ctx context.Context) error {
	return poll(ctx, c.master, "master "+c.MasterAddr()+" to assign a file id", func(ctx context.Context) error {
		var a struct {
			Fid   string
			Error string
		}
		err := c.getJSON(ctx, "http://"+c.MasterAddr()+"/dir/assign", &a)
		if err == nil && a.Fid == "" {
			err = fmt.Errorf("no fid in answer (error %q)", a.Error)
		}
		return err
	})
}

// waitFiler waits until the filer answers HTTP and gRPC.
func (c *Cluster) waitFiler(ctx context.Context) error {
	err := poll(ctx, c.filerProc, "filer "+c.FilerAddr()+" to answer HTTP", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.FilerAddr()+"/", nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A quick reconnect, rather than gRPC's default backoff of 1s and more,
	// keeps readiness polling fast.
	bo := backoff.DefaultConfig
	bo.BaseDelay, bo.MaxDelay = 50*time.Millisecond, time.Second
	creds := insecure.NewCredentials()
	if c.opts.FilerTLS != nil {
		creds = credentials.NewTLS(c.opts.FilerTLS)
	}
	c.conn, err = grpc.NewClient(c.FilerGRPCAddr(),
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: time.Second}))
	if err != nil {
		return fmt.Errorf("filer gRPC client for %s: %w", c.FilerGRPCAddr(), err)
	}
	c.filer = filerpb.NewSeaweedFilerClient(c.conn)
	return poll(ctx, c.filerProc, "filer "+c.FilerGRPCAddr()+" to answer gRPC", func(ctx context.Context) error {
		_, err := c.filer.GetFilerConfiguration(ctx, &filerpb.GetFilerConfigurationRequest{})
		return err
	})
}

func (c *Cluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}
