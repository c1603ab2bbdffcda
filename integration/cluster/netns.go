package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A Net is a private IPv4 network for a cluster whose volume servers live in
// network namespaces: a bridge in the host's namespace, holding the host
// address <subnet>.1/24 (where the master, the filer and the mounts are),
// and one namespace per volume server at <subnet>.(10+k), linked to the
// bridge by a veth pair. weed 4.48 refuses volume.move and EC shard copies
// between two servers on 127.0.0.1, and a network delay needs a link to
// delay: both need servers on addresses of their own.
//
// Every name it makes starts with netPrefix and the creating process's id,
// so that NewNet can tell a crashed run's leftovers (their process is gone)
// from another live run's, and remove them. Close removes everything; it
// runs even when the test fails (NewNetT registers it with t.Cleanup).
type Net struct {
	id     string // netPrefix + 6 hex digits of the pid + 1 of a sequence number
	bridge string
	subnet string // "10.213.N"
	logf   func(string, ...any)
	spaces []*Netns
	fwd    []string // the iptables FORWARD rule added, as arguments after -I/-D
	once   sync.Once
	err    error
}

// Netns is one network namespace of a Net.
type Netns struct {
	Name string // for `ip netns exec`
	IP   string // its address on the Net
	// hostLink is the bridge port whose egress (the traffic into the
	// namespace) a delay slows.
	hostLink string
	netem    bool       // delays are netem qdiscs on hostLink
	line     *delayLine // else a userspace delay line; nil until used
	why      string     // why netem is not used
}

// netPrefix starts every interface and namespace name a Net makes.
const netPrefix = "wfn"

// netLock serialises the choice of subnets across processes, so that two
// runs started at once do not take the same one.
const netLock = "/run/weedfuse-netns.lock"

var netSeq atomic.Uint32

// NetAvailable reports why namespaces cannot be made here, or nil.
func NetAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("no ip command (apt-get install iproute2): %w", err)
	}
	return nil
}

// NewNet makes a bridge and n namespaces linked to it, after removing what
// crashed runs left behind. logf, if set, receives progress messages.
func NewNet(n int, logf func(string, ...any)) (*Net, error) {
	if err := NetAvailable(); err != nil {
		return nil, err
	}
	if n < 1 || n > 9 {
		return nil, fmt.Errorf("new net: %d namespaces; 1 to 9 are supported", n)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	lock, err := os.OpenFile(netLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("new net: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("new net: lock %s: %w", netLock, err)
	}
	cleanStaleNets(logf)
	nt := &Net{
		id:   fmt.Sprintf("%s%06x%x", netPrefix, os.Getpid()&0xffffff, netSeq.Add(1)&0xf),
		logf: logf,
	}
	nt.bridge = nt.id + "b"
	if nt.subnet, err = freeSubnet(); err != nil {
		return nil, err
	}
	if err := nt.build(n); err != nil {
		return nil, errors.Join(err, nt.Close())
	}
	logf("netns: bridge %s at %s.1/24, namespaces %v", nt.bridge, nt.subnet, nt.names())
	return nt, nil
}

func (nt *Net) build(n int) error {
	if err := ipCmd("link", "add", nt.bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := ipCmd("addr", "add", nt.HostIP()+"/24", "dev", nt.bridge); err != nil {
		return err
	}
	if err := ipCmd("link", "set", nt.bridge, "up"); err != nil {
		return err
	}
	// Traffic between two namespaces is bridged, and with br_netfilter it
	// passes the FORWARD chain, whose policy Docker sets to DROP.
	if _, err := exec.LookPath("iptables"); err == nil {
		rule := []string{"FORWARD", "-i", nt.bridge, "-o", nt.bridge, "-j", "ACCEPT"}
		if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err == nil {
			nt.fwd = rule
		} else {
			nt.logf("netns: iptables -I %s: %v: %s (namespaces may not reach each other)", strings.Join(rule, " "), err, out)
		}
	}
	for k := 1; k <= n; k++ {
		s, err := nt.addSpace(k)
		if err != nil {
			return err
		}
		nt.spaces = append(nt.spaces, s)
	}
	return nil
}

// addSpace makes namespace k: veth <id>k<n> inside it, <id>k<h> on the
// bridge. If this kernel has no netem, it is two veth pairs instead,
// <id>k<n>-<id>k<a> and <id>k<x>-<id>k<h>, with a delay line in this process
// between <a> and <x>.
func (nt *Net) addSpace(k int) (*Netns, error) {
	base := nt.id + strconv.Itoa(k)
	s := &Netns{Name: nt.id + "-" + strconv.Itoa(k), IP: fmt.Sprintf("%s.%d", nt.subnet, 10+k), hostLink: base + "h"}
	if err := ipCmd("netns", "add", s.Name); err != nil {
		return nil, err
	}
	if err := ipCmd("link", "add", base+"h", "type", "veth", "peer", "name", base+"n"); err != nil {
		return nil, err
	}
	if err := s.probeNetem(); err != nil {
		// Re-link: the namespace's veth now ends at <a>, and <x>-<h> is a
		// second pair whose <h> joins the bridge.
		s.why = err.Error()
		if err := ipCmd("link", "del", base+"h"); err != nil {
			return nil, err
		}
		if err := ipCmd("link", "add", base+"a", "type", "veth", "peer", "name", base+"n"); err != nil {
			return nil, err
		}
		if err := ipCmd("link", "add", base+"x", "type", "veth", "peer", "name", base+"h"); err != nil {
			return nil, err
		}
		for _, l := range []string{base + "a", base + "x"} {
			// Links without addresses: keep IPv6 from sending on them.
			_ = os.WriteFile(filepath.Join("/proc/sys/net/ipv6/conf", l, "disable_ipv6"), []byte("1"), 0o644)
			if err := ipCmd("link", "set", l, "up"); err != nil {
				return nil, err
			}
		}
		line, err := newDelayLine(base+"a", base+"x")
		if err != nil {
			return nil, err
		}
		s.line = line
	} else {
		s.netem = true
	}
	steps := [][]string{
		{"link", "set", base + "n", "netns", s.Name},
		{"link", "set", base + "h", "master", nt.bridge},
		{"link", "set", base + "h", "up"},
		{"-n", s.Name, "addr", "add", s.IP + "/24", "dev", base + "n"},
		{"-n", s.Name, "link", "set", base + "n", "up"},
		{"-n", s.Name, "link", "set", "lo", "up"},
	}
	for _, st := range steps {
		if err := ipCmd(st...); err != nil {
			return s, err
		}
	}
	return s, nil
}

// probeNetem puts a netem qdisc of no delay on the host link, where
// SetDelay changes it; it fails where the kernel has no netem (no
// CONFIG_NET_SCH_NETEM, or no module to load).
func (s *Netns) probeNetem() error {
	if _, err := exec.LookPath("tc"); err != nil {
		return fmt.Errorf("no tc command (apt-get install iproute2)")
	}
	out, err := exec.Command("tc", "qdisc", "add", "dev", s.hostLink, "root", "netem", "delay", "0ms").CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc qdisc add ... netem: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// SetDelay delays every packet into the namespace by d (0: none), as
// `tc qdisc ... netem delay d` on the host side of its link does.
func (s *Netns) SetDelay(d time.Duration) error {
	if s.netem {
		out, err := exec.Command("tc", "qdisc", "change", "dev", s.hostLink, "root", "netem",
			"delay", strconv.FormatInt(d.Microseconds(), 10)+"us").CombinedOutput()
		if err != nil {
			return fmt.Errorf("set delay of %s: tc: %w: %s", s.Name, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	s.line.setDelay(d)
	return nil
}

// DelayMethod says how SetDelay delays packets: for a report.
func (s *Netns) DelayMethod() string {
	if s.netem {
		return "netem on the host side of its veth"
	}
	return "a packet delay line between two veth pairs, in the test process (" + s.why + ")"
}

// Spaces returns the namespaces, in the order NewNet made them.
func (nt *Net) Spaces() []*Netns { return nt.spaces }

// HostIP returns the host's address on the network.
func (nt *Net) HostIP() string { return nt.subnet + ".1" }

func (nt *Net) names() []string {
	var names []string
	for _, s := range nt.spaces {
		names = append(names, s.Name+"="+s.IP)
	}
	return names
}

// Close removes the namespaces, links and rule the Net made and stops its
// delay lines. Processes still inside a namespace keep it alive until they
// exit: stop them first. It is idempotent.
func (nt *Net) Close() error {
	nt.once.Do(func() {
		var errs []error
		for _, s := range nt.spaces {
			if s.line != nil {
				s.line.close()
			}
		}
		errs = append(errs, removeNet(nt.id))
		if nt.fwd != nil {
			if out, err := exec.Command("iptables", append([]string{"-D"}, nt.fwd...)...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("iptables -D %s: %w: %s", strings.Join(nt.fwd, " "), err, out))
			}
		}
		if err := errors.Join(errs...); err != nil {
			nt.err = fmt.Errorf("close net %s: %w", nt.id, err)
		}
	})
	return nt.err
}

// removeNet deletes every link and namespace whose name starts with id.
// Links go first: deleting one end of a veth pair deletes both, and a
// namespace is torn down asynchronously, taking its links' peers with it
// at a moment of the kernel's choosing; a link already gone is no error.
func removeNet(id string) error {
	var errs []error
	spaces, links := netNames()
	for _, l := range links {
		if !strings.HasPrefix(l, id) {
			continue
		}
		if err := ipCmd("link", "del", l); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	for _, ns := range spaces {
		if strings.HasPrefix(ns, id) {
			errs = append(errs, ipCmd("netns", "del", ns))
		}
	}
	return errors.Join(errs...)
}

// cleanStaleNets removes the Nets of processes that no longer run (or ran
// with our pid before us), and their iptables rules.
func cleanStaleNets(logf func(string, ...any)) {
	spaces, links := netNames()
	stale := map[string]bool{}
	for _, name := range append(spaces, links...) {
		if len(name) < len(netPrefix)+7 || !strings.HasPrefix(name, netPrefix) {
			continue
		}
		id := name[:len(netPrefix)+7]
		pid, err := strconv.ParseInt(id[len(netPrefix):len(netPrefix)+6], 16, 32)
		if err != nil {
			continue
		}
		if int(pid) == os.Getpid()&0xffffff || syscall.Kill(int(pid), 0) == syscall.ESRCH {
			stale[id] = true
		}
	}
	for id := range stale {
		logf("netns: removing %s*, left by an earlier run: %v", id, removeNet(id))
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return
	}
	out, err := exec.Command("iptables", "-S", "FORWARD").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "-A" || f[2] != "-i" || len(f[3]) < len(netPrefix)+7 || !stale[f[3][:len(netPrefix)+7]] {
			continue
		}
		_ = exec.Command("iptables", append([]string{"-D"}, f[1:]...)...).Run()
	}
}

// netNames lists the named namespaces and the host's links.
func netNames() (spaces, links []string) {
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			spaces = append(spaces, e.Name())
		}
	}
	if ents, err := os.ReadDir("/sys/class/net"); err == nil {
		for _, e := range ents {
			links = append(links, e.Name())
		}
	}
	return spaces, links
}

// freeSubnet picks a /24 of 10.213.0.0/16 that no host interface uses.
func freeSubnet() (string, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return "", fmt.Errorf("new net: ip addr show: %w", err)
	}
	start := os.Getpid()
	for i := range 254 {
		subnet := fmt.Sprintf("10.213.%d", 1+(start+i)%254)
		if !strings.Contains(string(out), " "+subnet+".") {
			return subnet, nil
		}
	}
	return "", errors.New("new net: every /24 of 10.213.0.0/16 is in use")
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
