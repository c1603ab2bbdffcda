package rdma

import (
	"fmt"
	"net"
)

// DeviceInfo describes one port of a verbs device as the engine would use it.
type DeviceInfo struct {
	Name      string // verbs device name, e.g. "mlx5_0", "rxe0"
	Port      int    // 1-based port number
	Active    bool   // port state is ACTIVE
	LinkLayer string // "InfiniBand" or "Ethernet" (RoCE)
	MTU       int    // active path MTU in bytes
	LID       uint16 // InfiniBand local id (0 on RoCE)
	GIDIndex  int    // GID table index in use
	GID       net.IP // the GID at GIDIndex
}

func (d DeviceInfo) String() string {
	return fmt.Sprintf("%s:%d %s mtu=%d gid[%d]=%s lid=%d active=%v",
		d.Name, d.Port, d.LinkLayer, d.MTU, d.GIDIndex, d.GID, d.LID, d.Active)
}
