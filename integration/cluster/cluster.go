package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// Options configures a cluster. The zero value is a working single-volume
// cluster in a temporary directory.
type Options struct {
	// DataDir holds the servers' data, logs and config. Default: a new
	// temporary directory, removed by Stop. A given directory is kept.
	DataDir string
	// Volumes is the number of volume servers. Default 1.
	Volumes int
	// Replication is the master's -defaultReplication, e.g. "001": one
	// extra copy on another server of the same rack, so it needs 2 volume
	// servers (all servers here are in the same rack).
	Replication string
	// MaxMB is the filer's -maxMB, the chunk size of uploads. Default 4.
	MaxMB int
	// EncryptVolumeData starts the filer with -encryptVolumeData.
	EncryptVolumeData bool
	// SecurityTOML, if set, is written to security.toml in the directory
	// every process reads its configuration from (e.g. a
	// [jwt.signing.read] key turns on read JWTs).
	SecurityTOML string
	// FilerTLS, if set, is the TLS the harness's own gRPC client dials the
	// filer with: needed when SecurityTOML turns on gRPC mutual TLS.
	FilerTLS *tls.Config
	// VolumeSizeLimitMB is the master's -volumeSizeLimitMB. Default 256.
	VolumeSizeLimitMB int
	// MaxVolumes is each volume server's -max. Default 32.
	MaxVolumes int
	// Extra arguments appended to each server's command line.
	MasterArgs, VolumeArgs, FilerArgs []string
	// Weed is the weed binary. Default: FindWeed().
	Weed string
	// StartTimeout bounds Start and StartVolume. Default 60s.
	StartTimeout time.Duration
	// StopGrace is how long a process gets after SIGTERM before SIGKILL.
	// Default 5s. The filer always uses all of it: its graceful stop waits
	// 15s for its own metadata subscription.
	StopGrace time.Duration
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
	// Net, if set, puts the cluster on a network that NewNet made instead
	// of loopback: the master and the filer listen on Net.HostIP(), and
	// volume server i runs inside namespace Net.Spaces()[i], at its
	// address. Volumes defaults to the number of namespaces.
	Net *Net
}

func (o *Options) setDefaults() {
	if o.Volumes <= 0 && o.Net != nil {
		o.Volumes = len(o.Net.Spaces())
	}
	if o.Volumes <= 0 {
		o.Volumes = 1
	}
	if o.MaxMB <= 0 {
		o.MaxMB = 4
	}
	if o.VolumeSizeLimitMB <= 0 {
		o.VolumeSizeLimitMB = 256
	}
	if o.MaxVolumes <= 0 {
		o.MaxVolumes = 32
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 5 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Cluster is a running SeaweedFS cluster on 127.0.0.1 (or on a Net). Its
// methods are safe for concurrent use.
type Cluster struct {
	opts      Options
	weed      string
	dir       string
	removeDir bool   // dir was created by Start
	confDir   string // working directory and -config_dir of every process
	sockDir   string // unix sockets; short, because their paths are limited to 108 bytes

	host        string   // where the master and filer listen
	volumeHosts []string // where each volume server listens
	masterPort  int
	filerPort   int
	volumePorts []int

	http  *http.Client
	conn  *grpc.ClientConn
	filer filerpb.SeaweedFilerClient

	mu        sync.Mutex // guards the fields below and serializes process changes
	stopped   bool
	master    *proc
	volumes   []*proc
	filerProc *proc
	mounts    []*WeedMount
	nextMount int
	gateways  []*proc // weed s3 (StartS3)

	stopOnce sync.Once
	stopErr  error
}

// Start starts a master, opts.Volumes volume servers and a filer, and returns
// once files can be written and read through the filer. On error nothing is
// left running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts.setDefaults()
	began := time.Now()
	c := &Cluster{opts: opts, dir: opts.DataDir}
	if err := checkReplication(opts.Replication, opts.Volumes); err != nil {
		return nil, err
	}
	if opts.Net != nil && len(opts.Net.Spaces()) < opts.Volumes {
		return nil, fmt.Errorf("start cluster: %d volume servers, but the net has %d namespaces", opts.Volumes, len(opts.Net.Spaces()))
	}
	if err := c.prepare(); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := c.startServers(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("start cluster in %s: %w", c.dir, err), c.Stop())
	}
	opts.Logf("cluster: up in %v: master %s, volumes %v, filer %s, data %s",
		time.Since(began).Round(time.Millisecond), c.MasterAddr(), c.VolumeAddrs(), c.FilerAddr(), c.dir)
	return c, nil
}

// StartT starts a cluster for a test or benchmark, with its data in
// t.TempDir() unless opts.DataDir is set. It fails the test if the cluster
// does not start, stops the cluster in t.Cleanup (which also runs when the
// test panics), and logs the tails of the servers' logs if the test failed.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.LogTails())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	return c
}

// checkReplication rejects a replication that the cluster cannot satisfy,
// which would otherwise show only as a start timeout. In "xyz", x and y
// count copies in other data centers and racks, which do not exist here
// (every server is in the default rack), and z counts copies on other
// servers of the same rack.
func checkReplication(r string, volumes int) error {
	if r == "" {
		return nil
	}
	if len(r) != 3 || strings.Trim(r, "0123456789") != "" {
		return fmt.Errorf("start cluster: replication %q is not three digits", r)
	}
	if r[0] != '0' || r[1] != '0' {
		return fmt.Errorf("start cluster: replication %q needs other data centers or racks; all servers here share one rack", r)
	}
	if need := int(r[2]-'0') + 1; volumes < need {
		return fmt.Errorf("start cluster: replication %q needs %d volume servers, Options.Volumes is %d", r, need, volumes)
	}
	return nil
}

// prepare finds weed, lays out the directories and picks the ports.
func (c *Cluster) prepare() error {
	c.weed = c.opts.Weed
	if c.weed == "" {
		weed, err := FindWeed()
		if err != nil {
			return fmt.Errorf("start cluster: %w", err)
		}
		c.weed = weed
	}
	if c.dir == "" {
		dir, err := os.MkdirTemp("", "weedfuse-cluster-")
		if err != nil {
			return fmt.Errorf("start cluster: %w", err)
		}
		c.dir, c.removeDir = dir, true
	}
	dir, err := filepath.Abs(c.dir)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	c.dir = dir
	c.confDir = filepath.Join(c.dir, "config")
	for _, d := range []string{c.confDir, filepath.Join(c.dir, "master"), filepath.Join(c.dir, "filer")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("start cluster: %w", err)
		}
	}
	for i := range c.opts.Volumes {
		if err := os.MkdirAll(c.volumeDir(i), 0o755); err != nil {
			return fmt.Errorf("start cluster: %w", err)
		}
	}
	// Written or removed: a reused DataDir may hold an earlier run's.
	security := filepath.Join(c.confDir, "security.toml")
	if c.opts.SecurityTOML != "" {
		err = os.WriteFile(security, []byte(c.opts.SecurityTOML), 0o600)
	} else if err = os.Remove(security); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	if c.sockDir, err = os.MkdirTemp("", "wfs-"); err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	ports, err := pickPorts(2 + c.opts.Volumes)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	c.masterPort, c.filerPort, c.volumePorts = ports[0], ports[1], ports[2:]
	c.host = "127.0.0.1"
	for i := range c.opts.Volumes {
		h := c.host
		if c.opts.Net != nil {
			h = c.opts.Net.Spaces()[i].IP
		}
		c.volumeHosts = append(c.volumeHosts, h)
	}
	if c.opts.Net != nil {
		c.host = c.opts.Net.HostIP()
	}
	c.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	return nil
}

// startServers starts the master first and waits for it to lead: a volume
// server or filer that finds no leader retries only every few seconds.
func (c *Cluster) startServers(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.master = c.newServer("master", "master", c.host, "",
		"-port="+strconv.Itoa(c.masterPort),
		"-port.grpc="+strconv.Itoa(c.masterPort+grpcOffset),
		"-mdir="+filepath.Join(c.dir, "master"),
		"-telemetry=false",
		// A lone master otherwise waits about 2s for peers before it leads.
		"-peers=none",
		"-volumeSizeLimitMB="+strconv.Itoa(c.opts.VolumeSizeLimitMB),
	)
	if c.opts.Replication != "" {
		c.master.args = append(c.master.args, "-defaultReplication="+c.opts.Replication)
	}
	c.master.args = append(c.master.args, c.opts.MasterArgs...)
	if err := c.master.start(); err != nil {
		return err
	}
	if err := c.waitMasterLeader(ctx); err != nil {
		return err
	}

	for i := range c.opts.Volumes {
		ns := ""
		if c.opts.Net != nil {
			ns = c.opts.Net.Spaces()[i].Name
		}
		p := c.newServer(fmt.Sprintf("volume%d", i), "volume", c.volumeHosts[i], ns,
			"-port="+strconv.Itoa(c.volumePorts[i]),
			"-port.grpc="+strconv.Itoa(c.volumePorts[i]+grpcOffset),
			"-dir="+c.volumeDir(i),
			"-master="+c.MasterAddr(),
			"-max="+strconv.Itoa(c.opts.MaxVolumes),
			// The default 10s of draining before exit only slows tests down.
			"-preStopSeconds=0",
		)
		p.args = append(p.args, c.opts.VolumeArgs...)
		c.volumes = append(c.volumes, p)
		if err := p.start(); err != nil {
			return err
		}
	}

	filerArgs := []string{
		"-port=" + strconv.Itoa(c.filerPort),
		"-port.grpc=" + strconv.Itoa(c.filerPort+grpcOffset),
		"-master=" + c.MasterAddr(),
		"-defaultStoreDir=" + filepath.Join(c.dir, "filer"),
		"-maxMB=" + strconv.Itoa(c.opts.MaxMB),
		// The default socket is /tmp/seaweedfs-filer-<port>.sock, which a
		// SIGKILLed filer leaves behind.
		"-localSocket=" + filepath.Join(c.sockDir, "filer.sock"),
	}
	if c.opts.EncryptVolumeData {
		filerArgs = append(filerArgs, "-encryptVolumeData")
	}
	c.filerProc = c.newServer("filer", "filer", c.host, "", append(filerArgs, c.opts.FilerArgs...)...)
	if err := c.filerProc.start(); err != nil {
		return err
	}

	for i := range c.volumes {
		if err := c.waitVolumeRegistered(ctx, i); err != nil {
			return err
		}
	}
	if err := c.waitAssign(ctx); err != nil {
		return err
	}
	return c.waitFiler(ctx)
}

// grpcOffset is SeaweedFS's default distance from a server's HTTP port to
// its gRPC port; clients given "host:port" assume it.
const grpcOffset = 10000

// newProc prepares a weed process; args start with the weed command.
func (c *Cluster) newProc(name string, args ...string) *proc {
	return &proc{
		name: name,
		path: c.weed,
		// security.toml is looked up in -config_dir, then ".", then
		// $HOME/.seaweedfs and /etc: -config_dir, the working directory and
		// HOME all point at confDir, so a user's own files stay out.
		args:    append([]string{"-config_dir=" + c.confDir}, args...),
		dir:     c.confDir,
		env:     append(os.Environ(), "HOME="+c.confDir),
		logPath: filepath.Join(c.dir, name+".log"),
	}
}

// newServer prepares a weed server listening on host only (by default weed
// binds all interfaces and advertises a non-loopback address), inside
// network namespace ns unless that is "".
func (c *Cluster) newServer(name, command, host, ns string, args ...string) *proc {
	p := c.newProc(name, append([]string{command, "-ip=" + host, "-ip.bind=" + host}, args...)...)
	if ns != "" {
		// ip execs weed in place: the process, its group and its
		// Pdeathsig stay the ones started here.
		p.args = append([]string{"netns", "exec", ns, p.path}, p.args...)
		p.path = "ip"
	}
	return p
}

func (c *Cluster) volumeDir(i int) string {
	return filepath.Join(c.dir, fmt.Sprintf("volume%d", i))
}

// pickPorts returns n ports p such that p and p+10000 are both free on
// 127.0.0.1. They are drawn below the kernel's ephemeral range (32768 and
// up), so outgoing connections cannot take them before the servers bind.
func pickPorts(n int) ([]int, error) {
	const lo, hi = 11000, 32768 - grpcOffset
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("pick ports: no free pair p, p+%d in [%d, %d) after %d tries", grpcOffset, lo, hi, tries)
		}
		p := lo + rand.IntN(hi-lo)
		a, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+grpcOffset)))
		if err != nil {
			a.Close()
			continue
		}
		// Held until all are chosen, so the same port is not picked twice.
		held = append(held, a, b)
		ports = append(ports, p)
	}
	return ports, nil
}

// Dir returns the cluster's data directory; logs are <Dir>/<server>.log.
func (c *Cluster) Dir() string { return c.dir }

// Weed returns the path of the weed binary the cluster runs.
func (c *Cluster) Weed() string { return c.weed }

// MasterAddr returns the master's HTTP address, host:port.
func (c *Cluster) MasterAddr() string { return hostPort(c.host, c.masterPort) }

// FilerAddr returns the filer's HTTP address, host:port.
func (c *Cluster) FilerAddr() string { return hostPort(c.host, c.filerPort) }

// FilerGRPCAddr returns the filer's gRPC address, host:port.
func (c *Cluster) FilerGRPCAddr() string { return hostPort(c.host, c.filerPort+grpcOffset) }

// FilerMountSpec returns the -filer value for weed mount (and weedfuse). It
// is the plain host:port, whose gRPC port is port+10000 by convention; weed
// also accepts the explicit form host:port.grpcPort.
func (c *Cluster) FilerMountSpec() string { return c.FilerAddr() }

// VolumeAddrs returns the volume servers' HTTP addresses, in index order.
func (c *Cluster) VolumeAddrs() []string {
	addrs := make([]string, len(c.volumePorts))
	for i, p := range c.volumePorts {
		addrs[i] = hostPort(c.volumeHosts[i], p)
	}
	return addrs
}

// FilerClient returns a gRPC client of the filer, owned by the cluster.
func (c *Cluster) FilerClient() filerpb.SeaweedFilerClient { return c.filer }

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// StopVolume stops volume server i (SIGTERM, grace, SIGKILL), leaving its
// data for StartVolume.
func (c *Cluster) StopVolume(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.volumes) {
		return fmt.Errorf("stop volume %d: the cluster has %d volume servers", i, len(c.volumes))
	}
	if err := c.volumes[i].stop(c.opts.StopGrace); err != nil {
		return fmt.Errorf("stop volume %d: %w", i, err)
	}
	c.opts.Logf("cluster: stopped volume%d (%s)", i, c.VolumeAddrs()[i])
	return nil
}

// StartVolume restarts volume server i on its old ports and directory, and
// returns once the master lists it with all the volumes on its disk.
func (c *Cluster) StartVolume(ctx context.Context, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("start volume: the cluster is stopped")
	}
	if i < 0 || i >= len(c.volumes) {
		return fmt.Errorf("start volume %d: the cluster has %d volume servers", i, len(c.volumes))
	}
	p := c.volumes[i]
	if p.running() {
		return fmt.Errorf("start volume %d: already running (pid %d)", i, p.pid())
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	if err := p.start(); err != nil {
		return err
	}
	if err := c.waitVolumeRegistered(ctx, i); err != nil {
		return fmt.Errorf("start volume %d: %w", i, err)
	}
	c.opts.Logf("cluster: restarted volume%d (%s)", i, c.VolumeAddrs()[i])
	return nil
}

// StopFiler stops the filer, SIGKILLing it after grace (0: at once, an
// outage rather than a shutdown), leaving its store for StartFiler.
func (c *Cluster) StopFiler(grace time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.filerProc.stop(grace); err != nil {
		return fmt.Errorf("stop filer: %w", err)
	}
	c.opts.Logf("cluster: stopped the filer (%s)", c.FilerAddr())
	return nil
}

// StartFiler restarts the filer on its old ports and store, and returns
// once it answers gRPC.
func (c *Cluster) StartFiler(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("start filer: the cluster is stopped")
	}
	if c.filerProc.running() {
		return fmt.Errorf("start filer: already running (pid %d)", c.filerProc.pid())
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	if err := c.filerProc.start(); err != nil {
		return err
	}
	err := poll(ctx, c.filerProc, "filer "+c.FilerGRPCAddr()+" to answer gRPC", func(ctx context.Context) error {
		_, err := c.filer.GetFilerConfiguration(ctx, &filerpb.GetFilerConfigurationRequest{})
		return err
	})
	if err != nil {
		return fmt.Errorf("start filer: %w", err)
	}
	c.opts.Logf("cluster: restarted the filer (%s)", c.FilerAddr())
	return nil
}

// Stop unmounts the weed mounts started by StartWeedMount and stops every
// process. It is idempotent and returns the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	var errs []error
	// Mounts first: a mount whose filer is gone hangs its readers.
	for _, m := range c.mounts {
		errs = append(errs, m.Unmount())
	}
	// In parallel, so that the whole stop takes one grace period.
	procs := append(append([]*proc{c.master, c.filerProc}, c.volumes...), c.gateways...)
	perrs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		if p == nil {
			continue
		}
		wg.Go(func() { perrs[i] = p.stop(c.opts.StopGrace) })
	}
	wg.Wait()
	errs = append(errs, perrs...)
	if c.conn != nil {
		errs = append(errs, c.conn.Close())
	}
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
	if c.sockDir != "" {
		errs = append(errs, os.RemoveAll(c.sockDir))
	}
	if c.removeDir {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop cluster: %w", err)
	}
	return nil
}

// pids returns the ids of the server processes ever started, for tests.
func (c *Cluster) pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pids []int
	for _, p := range append([]*proc{c.master, c.filerProc}, c.volumes...) {
		if p != nil && p.pid() != 0 {
			pids = append(pids, p.pid())
		}
	}
	return pids
}

// LogTails returns what every server and weed mount logged since its last
// start (the first and last lines of long logs).
func (c *Cluster) LogTails() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	procs := append([]*proc{c.master, c.filerProc}, c.volumes...)
	for _, m := range c.mounts {
		procs = append(procs, m.p)
	}
	for _, p := range procs {
		if p != nil {
			b.WriteString(p.logTail())
		}
	}
	return b.String()
}

// VolumePids returns the process ids of the running volume servers, in
// index order (0 for one that is stopped).
func (c *Cluster) VolumePids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make([]int, len(c.volumes))
	for i, p := range c.volumes {
		if p != nil && p.cmd != nil && p.cmd.Process != nil {
			select {
			case <-p.done:
			default:
				pids[i] = p.cmd.Process.Pid
			}
		}
	}
	return pids
}

// StopMaster stops the master, SIGKILLing it after grace (0: at once).
func (c *Cluster) StopMaster(grace time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.master.stop(grace); err != nil {
		return fmt.Errorf("stop master: %w", err)
	}
	c.opts.Logf("cluster: stopped the master (%s)", c.MasterAddr())
	return nil
}

// StartMaster restarts the master on its old ports and directory, and
// returns once it leads and every volume server has registered again.
func (c *Cluster) StartMaster(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("start master: the cluster is stopped")
	}
	if c.master.running() {
		return fmt.Errorf("start master: already running (pid %d)", c.master.pid())
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	if err := c.master.start(); err != nil {
		return err
	}
	if err := c.waitMasterLeader(ctx); err != nil {
		return fmt.Errorf("start master: %w", err)
	}
	for i, p := range c.volumes {
		if !p.running() {
			continue
		}
		if err := c.waitVolumeRegistered(ctx, i); err != nil {
			return fmt.Errorf("start master: %w", err)
		}
	}
	c.opts.Logf("cluster: restarted the master (%s)", c.MasterAddr())
	return nil
}
