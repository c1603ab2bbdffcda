package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// S3Gateway is a running `weed s3` in front of the cluster's filer: it
// serves each directory under the filer's /buckets as a bucket, so the
// files there can be read by S3 clients (rclone, s3fs, JuiceFS) as they
// are.
type S3Gateway struct {
	port int
	p    *proc
}

// Endpoint is the gateway's URL, http://127.0.0.1:<port>.
func (g *S3Gateway) Endpoint() string { return "http://" + hostPort("127.0.0.1", g.port) }

// Pid is the gateway's process id.
func (g *S3Gateway) Pid() int { return g.p.pid() }

// Args is the gateway's command line, without the weed binary.
func (g *S3Gateway) Args() []string { return g.p.args }

// StartS3 starts `weed s3` on 127.0.0.1 with one identity, accessKey and
// secretKey, allowed everything, and returns once it answers HTTP. The
// cluster's Stop stops it.
func (c *Cluster) StartS3(ctx context.Context, accessKey, secretKey string) (*S3Gateway, error) {
	ports, err := pickPorts(1)
	if err != nil {
		return nil, fmt.Errorf("start s3: %w", err)
	}
	g := &S3Gateway{port: ports[0]}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, errors.New("start s3: the cluster is stopped")
	}
	name := "s3-" + strconv.Itoa(g.port)
	config := filepath.Join(c.confDir, name+".json")
	if err := writeS3Identities(config, accessKey, secretKey); err != nil {
		return nil, fmt.Errorf("start s3: %w", err)
	}
	g.p = c.newServer(name, "s3", "127.0.0.1", "",
		"-filer="+c.FilerAddr(),
		"-port="+strconv.Itoa(g.port),
		"-port.grpc="+strconv.Itoa(g.port+grpcOffset),
		"-config="+config,
		// Both default to fixed ports on every address family's
		// loopback; neither is needed here, and a second gateway, or
		// another user's, would collide on them.
		"-port.iceberg=0",
		"-port.lance=0",
		"-localSocket="+filepath.Join(c.sockDir, name+".sock"),
	)
	if err := g.p.start(); err != nil {
		return nil, err
	}
	c.gateways = append(c.gateways, g.p)
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	// Any HTTP answer will do: anonymous requests are refused with 403
	// once the gateway serves.
	err = poll(ctx, g.p, "weed s3 on "+g.Endpoint(), func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.Endpoint()+"/", nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	if err != nil {
		return nil, errors.Join(err, g.p.stop(c.opts.StopGrace))
	}
	c.opts.Logf("cluster: weed s3 at %s", g.Endpoint())
	return g, nil
}

// writeS3Identities writes the -config file of weed s3: one identity with
// every action.
func writeS3Identities(path, accessKey, secretKey string) error {
	type credential struct {
		AccessKey string `json:"accessKey"`
		SecretKey string `json:"secretKey"`
	}
	type identity struct {
		Name        string       `json:"name"`
		Credentials []credential `json:"credentials"`
		Actions     []string     `json:"actions"`
	}
	doc := struct {
		Identities []identity `json:"identities"`
	}{[]identity{{
		Name:        "bench",
		Credentials: []credential{{accessKey, secretKey}},
		Actions:     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// LookTool finds an executable as exec.LookPath does, but resolves a pyenv
// shim (as pip-installed binaries on such a machine are) to the binary it
// stands for, so that the process started is the tool itself.
func LookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", err
	}
	return resolvePyenvShim(p), nil
}
