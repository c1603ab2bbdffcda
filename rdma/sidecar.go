package rdma

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
)

// SidecarMap maps a volume server's HTTP address ("host:port", as the filer's
// LookupVolume lists it) to the address of the weedrdma server beside it.
//
// Its text form, the value of the mount's -rdma.sidecar flag, is a
// comma-separated list of entries; each is one of
//
//	:PORT                  rule: every volume server's own host, fixed PORT
//	HOST:PORT              the weedrdma for volume servers on HOST (any port)
//	VHOST:VPORT=HOST:PORT  the weedrdma for exactly volume server VHOST:VPORT
//
// An exact entry wins over a host entry, which wins over the rule. Examples:
// "-rdma.sidecar=:18515" (weedrdma on every volume host, port 18515);
// "-rdma.sidecar=10.0.0.1:18515,10.0.0.2:18515";
// "-rdma.sidecar=10.0.0.1:8080=10.0.0.1:18515,10.0.0.1:8081=10.0.0.1:18516".
// A volume server that matches nothing has no sidecar and is read over HTTP.
// A SidecarMap is immutable after ParseSidecars and safe for concurrent use.
type SidecarMap struct {
	exact    map[string]string // "vhost:vport" → weedrdma address
	byHost   map[string]string // "host" → weedrdma address
	rulePort string            // "" when there is no rule
}

// ParseSidecars parses the -rdma.sidecar flag syntax described on SidecarMap.
func ParseSidecars(spec string) (SidecarMap, error) {
	m := SidecarMap{exact: map[string]string{}, byHost: map[string]string{}}
	for _, e := range strings.Split(spec, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if vs, side, ok := strings.Cut(e, "="); ok {
			vh, vp, err := splitHostPort(vs)
			if err != nil || vh == "" {
				return SidecarMap{}, fmt.Errorf("rdma sidecar entry %q: volume server must be host:port", e)
			}
			if _, _, err := splitHostPort(side); err != nil {
				return SidecarMap{}, fmt.Errorf("rdma sidecar entry %q: %w", e, err)
			}
			m.exact[net.JoinHostPort(vh, vp)] = side
			continue
		}
		h, p, err := splitHostPort(e)
		if err != nil {
			return SidecarMap{}, fmt.Errorf("rdma sidecar entry %q: %w", e, err)
		}
		if h == "" {
			if m.rulePort != "" && m.rulePort != p {
				return SidecarMap{}, fmt.Errorf("rdma sidecar: two rules %q and %q", ":"+m.rulePort, e)
			}
			m.rulePort = p
			continue
		}
		m.byHost[h] = e
	}
	if m.rulePort == "" && len(m.exact) == 0 && len(m.byHost) == 0 {
		return SidecarMap{}, fmt.Errorf("rdma sidecar %q: no entries", spec)
	}
	return m, nil
}

// Lookup returns the weedrdma address for volume server vs. SeaweedFS may
// append ".grpcPort" to an address's port ("host:8080.18080"); it is ignored.
func (m SidecarMap) Lookup(vs string) (string, bool) {
	h, p, err := splitHostPort(vs)
	if err != nil || h == "" {
		return "", false
	}
	if a, ok := m.exact[net.JoinHostPort(h, p)]; ok {
		return a, true
	}
	if a, ok := m.byHost[h]; ok {
		return a, true
	}
	if m.rulePort != "" {
		return net.JoinHostPort(h, m.rulePort), true
	}
	return "", false
}

// String renders the map in flag syntax (for logs).
func (m SidecarMap) String() string {
	var parts []string
	if m.rulePort != "" {
		parts = append(parts, ":"+m.rulePort)
	}
	for _, h := range slices.Sorted(maps.Keys(m.byHost)) {
		parts = append(parts, m.byHost[h])
	}
	for _, vs := range slices.Sorted(maps.Keys(m.exact)) {
		parts = append(parts, vs+"="+m.exact[vs])
	}
	return strings.Join(parts, ",")
}

// splitHostPort splits "host:port" (host may be empty or a bracketed IPv6
// literal), drops a ".grpcPort" suffix and checks the port is a number.
func splitHostPort(a string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(a)
	if err != nil {
		return "", "", err
	}
	port, _, _ = strings.Cut(port, ".")
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", "", fmt.Errorf("bad port in %q", a)
	}
	return host, port, nil
}
