//go:build linux && cgo && rdma

package rdma

/*
#cgo LDFLAGS: -libverbs
#include <infiniband/verbs.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>

// The verbs data path (ibv_post_send, ibv_poll_cq, ibv_req_notify_cq) is
// static inline and work requests hold unions; cgo reaches neither, hence
// these helpers. They return 0 or a negative errno unless said otherwise.

static struct ibv_device *wf_dev_at(struct ibv_device **l, int i) { return l[i]; }

typedef struct {
	int phys_port_cnt, max_qp_wr, max_qp_rd_atom, max_qp_init_rd_atom, max_cqe, max_mw;
	unsigned int cap_flags;
} wf_dev_attr;

static int wf_query_device(struct ibv_context *c, wf_dev_attr *o) {
	struct ibv_device_attr a;
	memset(&a, 0, sizeof a);
	int r = ibv_query_device(c, &a);
	if (r) return -r;
	o->phys_port_cnt = a.phys_port_cnt; o->max_qp_wr = a.max_qp_wr;
	o->max_qp_rd_atom = a.max_qp_rd_atom; o->max_qp_init_rd_atom = a.max_qp_init_rd_atom;
	o->max_cqe = a.max_cqe; o->max_mw = a.max_mw; o->cap_flags = a.device_cap_flags;
	return 0;
}

typedef struct { int state, mtu, link_layer, lid, gid_tbl_len; uint32_t max_msg_sz; } wf_port;

static int wf_query_port(struct ibv_context *c, int port, wf_port *o) {
	struct ibv_port_attr pa;
	memset(&pa, 0, sizeof pa);
	int r = ibv_query_port(c, port, &pa);
	if (r) return -r;
	o->state = pa.state; o->mtu = pa.active_mtu; o->link_layer = pa.link_layer;
	o->lid = pa.lid; o->gid_tbl_len = pa.gid_tbl_len; o->max_msg_sz = pa.max_msg_sz;
	return 0;
}

static int wf_query_gid(struct ibv_context *c, int port, int idx, uint8_t *out) {
	union ibv_gid g;
	if (ibv_query_gid(c, port, idx, &g)) return -EINVAL;
	memcpy(out, g.raw, 16);
	return 0;
}

static struct ibv_comp_channel *wf_channel(struct ibv_context *c) {
	struct ibv_comp_channel *ch = ibv_create_comp_channel(c);
	if (ch) fcntl(ch->fd, F_SETFL, fcntl(ch->fd, F_GETFL) | O_NONBLOCK);
	return ch;
}

static struct ibv_qp *wf_create_qp(struct ibv_pd *pd, struct ibv_cq *cq, int depth) {
	struct ibv_qp_init_attr ia;
	memset(&ia, 0, sizeof ia);
	ia.send_cq = cq; ia.recv_cq = cq; ia.qp_type = IBV_QPT_RC; ia.sq_sig_all = 0;
	ia.cap.max_send_wr = depth; ia.cap.max_recv_wr = 1;
	ia.cap.max_send_sge = 1; ia.cap.max_recv_sge = 1;
	return ibv_create_qp(pd, &ia);
}

static int wf_qp_init(struct ibv_qp *qp, int port) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_INIT; a.pkey_index = 0; a.port_num = port;
	a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ;
	return -ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

static int wf_qp_rtr(struct ibv_qp *qp, int port, int mtu, uint32_t dqpn, uint32_t rq_psn,
                     int dest_rd_atomic, int global, const uint8_t *dgid, int sgid_idx, int dlid) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTR; a.path_mtu = (enum ibv_mtu)mtu; a.dest_qp_num = dqpn;
	a.rq_psn = rq_psn; a.max_dest_rd_atomic = dest_rd_atomic; a.min_rnr_timer = 12;
	a.ah_attr.port_num = port; a.ah_attr.dlid = dlid;
	if (global) {
		a.ah_attr.is_global = 1;
		memcpy(a.ah_attr.grh.dgid.raw, dgid, 16);
		a.ah_attr.grh.sgid_index = sgid_idx; a.ah_attr.grh.hop_limit = 64;
	}
	return -ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
	                      IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

static int wf_qp_rts(struct ibv_qp *qp, uint32_t sq_psn, int rd_atomic) {
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof a);
	// timeout 14 (~67 ms) and 7 retries: Soft-RoCE under emulation retransmits a lot.
	a.qp_state = IBV_QPS_RTS; a.timeout = 14; a.retry_cnt = 7; a.rnr_retry = 7;
	a.sq_psn = sq_psn; a.max_rd_atomic = rd_atomic;
	return -ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
	                      IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

#define WF_MAX_CHAIN 16

// wf_post_read posts one RDMA READ of len bytes as a chain of work requests
// of at most piece bytes each (piece ≤ the port's max message size), with
// one ibv_post_send call. Every work request is signaled, the i-th with
// wr_id wrid+i, so that the caller can check each piece as it lands while
// the next ones are still on the wire. Returns the number of work requests
// (completions to expect) or a negative errno.
static int wf_post_read(struct ibv_qp *qp, uint64_t wrid, void *laddr, uint32_t len, uint32_t lkey,
                        uint64_t raddr, uint32_t rkey, uint32_t piece) {
	struct ibv_sge sge[WF_MAX_CHAIN];
	struct ibv_send_wr wr[WF_MAX_CHAIN], *bad = NULL;
	int n = 0;
	uint64_t off = 0;
	if (len == 0 || piece == 0) return -EINVAL;
	while (off < len) {
		if (n == WF_MAX_CHAIN) return -E2BIG;
		uint32_t l = len - off > piece ? piece : (uint32_t)(len - off);
		sge[n].addr = (uintptr_t)laddr + off; sge[n].length = l; sge[n].lkey = lkey;
		memset(&wr[n], 0, sizeof wr[n]);
		wr[n].wr_id = wrid + n; wr[n].sg_list = &sge[n]; wr[n].num_sge = 1;
		wr[n].opcode = IBV_WR_RDMA_READ; wr[n].send_flags = IBV_SEND_SIGNALED;
		wr[n].wr.rdma.remote_addr = raddr + off; wr[n].wr.rdma.rkey = rkey;
		if (n > 0) wr[n-1].next = &wr[n];
		off += l; n++;
	}
	int r = ibv_post_send(qp, wr, &bad);
	return r ? -r : n;
}

// wf_post_bind posts a signaled bind of type 2 memory window mw, under the
// new rkey, to [addr, addr+len) of mr, for remote reads only.
static int wf_post_bind(struct ibv_qp *qp, uint64_t wrid, struct ibv_mw *mw, uint32_t rkey,
                        struct ibv_mr *mr, uint64_t addr, uint64_t len) {
	struct ibv_send_wr wr, *bad = NULL;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = wrid; wr.opcode = IBV_WR_BIND_MW; wr.send_flags = IBV_SEND_SIGNALED;
	wr.bind_mw.mw = mw; wr.bind_mw.rkey = rkey;
	wr.bind_mw.bind_info.mr = mr; wr.bind_mw.bind_info.addr = addr;
	wr.bind_mw.bind_info.length = len; wr.bind_mw.bind_info.mw_access_flags = IBV_ACCESS_REMOTE_READ;
	return -ibv_post_send(qp, &wr, &bad);
}

// wf_post_inv posts a signaled local invalidation of rkey.
static int wf_post_inv(struct ibv_qp *qp, uint64_t wrid, uint32_t rkey) {
	struct ibv_send_wr wr, *bad = NULL;
	memset(&wr, 0, sizeof wr);
	wr.wr_id = wrid; wr.opcode = IBV_WR_LOCAL_INV; wr.send_flags = IBV_SEND_SIGNALED;
	wr.invalidate_rkey = rkey;
	return -ibv_post_send(qp, &wr, &bad);
}

static uint32_t wf_inc_rkey(uint32_t k) { return ibv_inc_rkey(k); }
static void wf_set_mw_rkey(struct ibv_mw *mw, uint32_t k) { mw->rkey = k; }

// wf_qp_state returns the QP's state (enum ibv_qp_state) or a negative errno.
static int wf_qp_state(struct ibv_qp *qp) {
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;
	int r = ibv_query_qp(qp, &a, IBV_QP_STATE, &ia);
	return r ? -r : (int)a.qp_state;
}

// wf_poll drains up to max (≤ 16) completions; returns how many, or < 0.
static int wf_poll(struct ibv_cq *cq, int max, uint64_t *wrid, int *status) {
	struct ibv_wc wc[16];
	if (max > 16) max = 16;
	int n = ibv_poll_cq(cq, max, wc);
	for (int i = 0; i < n; i++) { wrid[i] = wc[i].wr_id; status[i] = wc[i].status; }
	return n;
}

static int wf_arm(struct ibv_cq *cq) { return -ibv_req_notify_cq(cq, 0); }

// wf_wait waits up to timeout_ms for a completion event; consumes, acks and
// re-arms it. Returns 1 for an event, 0 for none, < 0 on error.
static int wf_wait(struct ibv_comp_channel *ch, int timeout_ms) {
	struct pollfd p = { ch->fd, POLLIN, 0 };
	int r = poll(&p, 1, timeout_ms);
	if (r < 0) return errno == EINTR ? 0 : -errno;
	if (r == 0) return 0;
	struct ibv_cq *cq; void *cctx;
	if (ibv_get_cq_event(ch, &cq, &cctx)) return errno == EAGAIN ? 0 : -errno;
	ibv_ack_cq_events(cq, 1);
	if (ibv_req_notify_cq(cq, 0)) return -EIO;
	return 1;
}
*/
import "C"

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// cErr turns a helper's negative errno into an error.
func cErr(op string, r C.int) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", op, syscall.Errno(-r))
}

// devCtx is an opened device context, shared by every device that selects
// the same verbs device in this process (one context per process).
type devCtx struct {
	ctx  *C.struct_ibv_context
	attr C.wf_dev_attr
	refs int // guarded by devCtxMu
}

var (
	devCtxMu sync.Mutex
	devCtxs  = map[string]*devCtx{} // guarded by devCtxMu; by device name
)

// device is one selected port and GID of a shared device context.
type device struct {
	dc     *devCtx
	info   DeviceInfo
	mtu    int // enum ibv_mtu
	maxMsg uint32
	ib     bool // InfiniBand link layer: address by LID, no GRH
}

// withDeviceList runs f over the verbs devices with their names.
func withDeviceList(f func(names []string, devs []*C.struct_ibv_device) error) error {
	var n C.int
	list := C.ibv_get_device_list(&n)
	if list == nil {
		return fmt.Errorf("no RDMA device (ibv_get_device_list failed: no verbs support in this kernel?): %w",
			errors.ErrUnsupported)
	}
	defer C.ibv_free_device_list(list)
	names := make([]string, int(n))
	devs := make([]*C.struct_ibv_device, int(n))
	for i := range devs {
		devs[i] = C.wf_dev_at(list, C.int(i))
		names[i] = C.GoString(C.ibv_get_device_name(devs[i]))
	}
	if len(devs) == 0 {
		return fmt.Errorf("no RDMA device found: %w", errors.ErrUnsupported)
	}
	return f(names, devs)
}

// acquireCtxLocked opens (or shares) the context of device name.
func acquireCtxLocked(name string, dev *C.struct_ibv_device) (*devCtx, error) {
	if dc, ok := devCtxs[name]; ok {
		dc.refs++
		return dc, nil
	}
	ctx := C.ibv_open_device(dev)
	if ctx == nil {
		return nil, fmt.Errorf("ibv_open_device %s failed", name)
	}
	dc := &devCtx{ctx: ctx, refs: 1}
	if err := cErr("ibv_query_device "+name, C.wf_query_device(ctx, &dc.attr)); err != nil {
		C.ibv_close_device(ctx)
		return nil, err
	}
	devCtxs[name] = dc
	return dc, nil
}

func releaseCtxLocked(name string, dc *devCtx) {
	dc.refs--
	if dc.refs == 0 {
		C.ibv_close_device(dc.ctx)
		delete(devCtxs, name)
	}
}

var linkLayers = map[C.int]string{C.IBV_LINK_LAYER_INFINIBAND: "InfiniBand", C.IBV_LINK_LAYER_ETHERNET: "Ethernet"}

// portInfo describes port of dc, picking a GID index when gidIndex < 0:
// the first IPv4-mapped GID (RoCE v2 over IPv4), else the first non-zero one.
func portInfo(name string, dc *devCtx, port, gidIndex int) (DeviceInfo, C.wf_port, error) {
	var pa C.wf_port
	if err := cErr(fmt.Sprintf("ibv_query_port %s:%d", name, port), C.wf_query_port(dc.ctx, C.int(port), &pa)); err != nil {
		return DeviceInfo{}, pa, err
	}
	info := DeviceInfo{Name: name, Port: port, LID: uint16(pa.lid), MTU: 128 << int(pa.mtu),
		LinkLayer: linkLayers[pa.link_layer], Active: pa.state == C.IBV_PORT_ACTIVE, GIDIndex: -1}
	if info.LinkLayer == "" {
		info.LinkLayer = "InfiniBand" // IBV_LINK_LAYER_UNSPECIFIED is IB by convention
	}
	var gid [16]byte
	query := func(i int) bool {
		return C.wf_query_gid(dc.ctx, C.int(port), C.int(i), (*C.uint8_t)(unsafe.Pointer(&gid[0]))) == 0
	}
	if gidIndex >= 0 {
		if !query(gidIndex) {
			return info, pa, fmt.Errorf("%s:%d: no GID at index %d", name, port, gidIndex)
		}
		info.GIDIndex, info.GID = gidIndex, net.IP(append([]byte(nil), gid[:]...))
		return info, pa, nil
	}
	for i := 0; i < int(pa.gid_tbl_len) && i < 32; i++ {
		if !query(i) || gid == [16]byte{} {
			continue
		}
		ip := net.IP(append([]byte(nil), gid[:]...))
		if info.GIDIndex < 0 || (ip.To4() != nil && info.GID.To4() == nil) {
			info.GIDIndex, info.GID = i, ip
		}
	}
	if info.GIDIndex < 0 {
		return info, pa, fmt.Errorf("%s:%d: no usable GID", name, port)
	}
	return info, pa, nil
}

// ListDevices lists every port of every verbs device, with the GID index an
// empty -gid.index would pick. Without verbs support it returns an error
// wrapping errors.ErrUnsupported.
func ListDevices() ([]DeviceInfo, error) {
	var out []DeviceInfo
	err := withDeviceList(func(names []string, devs []*C.struct_ibv_device) error {
		devCtxMu.Lock()
		defer devCtxMu.Unlock()
		for i, name := range names {
			dc, err := acquireCtxLocked(name, devs[i])
			if err != nil {
				return err
			}
			for p := 1; p <= int(dc.attr.phys_port_cnt); p++ {
				if info, _, err := portInfo(name, dc, p, -1); err == nil || info.Name != "" {
					out = append(out, info)
				}
			}
			releaseCtxLocked(name, dc)
		}
		return nil
	})
	return out, err
}

// openDevice selects a device port: spec is "" (the first active port of
// any device), "name" (its first active port) or "name:port"; gidIndex < 0
// picks one. The context is shared process-wide; close releases it.
func openDevice(spec string, gidIndex int) (*device, error) {
	wantName, wantPort := spec, 0
	if n, p, ok := strings.Cut(spec, ":"); ok {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("rdma device %q: bad port", spec)
		}
		wantName, wantPort = n, v
	}
	var d *device
	err := withDeviceList(func(names []string, devs []*C.struct_ibv_device) error {
		devCtxMu.Lock()
		defer devCtxMu.Unlock()
		var tried []string
		for i, name := range names {
			if wantName != "" && name != wantName {
				continue
			}
			dc, err := acquireCtxLocked(name, devs[i])
			if err != nil {
				return err
			}
			for p := 1; p <= int(dc.attr.phys_port_cnt); p++ {
				if wantPort != 0 && p != wantPort {
					continue
				}
				info, pa, err := portInfo(name, dc, p, gidIndex)
				if err != nil || !info.Active {
					tried = append(tried, fmt.Sprintf("%s:%d (active=%v, %v)", name, p, info.Active, err))
					continue
				}
				maxMsg := uint32(pa.max_msg_sz)
				if maxMsg == 0 || maxMsg > 1<<30 {
					maxMsg = 1 << 30
				}
				d = &device{dc: dc, info: info, mtu: int(pa.mtu), maxMsg: maxMsg, ib: info.LinkLayer == "InfiniBand"}
				return nil
			}
			releaseCtxLocked(name, dc)
		}
		if wantName != "" && len(tried) == 0 {
			return fmt.Errorf("rdma device %q not found among %v", spec, names)
		}
		return fmt.Errorf("no active RDMA port (tried %s)", strings.Join(tried, "; "))
	})
	return d, err
}

func (d *device) close() {
	devCtxMu.Lock()
	releaseCtxLocked(d.info.Name, d.dc)
	devCtxMu.Unlock()
}

// arena is mmap'd memory, outside the Go heap, that the NIC may access once
// registered in a protection domain.
type arena struct {
	mem     []byte
	hugetlb bool
}

const hugePage = 2 << 20

// newArena maps size bytes (rounded up to 2 MiB): hugetlbfs pages when
// enough are reserved (vm.nr_hugepages), else anonymous memory advised to
// use transparent hugepages. Fewer, larger pages make registration cheaper
// and spare the NIC's translation cache.
func newArena(size int) (*arena, error) {
	size = (size + hugePage - 1) &^ (hugePage - 1)
	prot := syscall.PROT_READ | syscall.PROT_WRITE
	flags := syscall.MAP_PRIVATE | syscall.MAP_ANONYMOUS
	if mem, err := syscall.Mmap(-1, 0, size, prot, flags|syscall.MAP_HUGETLB); err == nil {
		return &arena{mem: mem, hugetlb: true}, nil
	}
	mem, err := syscall.Mmap(-1, 0, size, prot, flags)
	if err != nil {
		return nil, fmt.Errorf("mmap arena of %d bytes: %w", size, err)
	}
	_ = syscall.Madvise(mem, syscall.MADV_HUGEPAGE) // advisory: THP may be off
	return &arena{mem: mem}, nil
}

func (a *arena) free() { _ = syscall.Munmap(a.mem) }

// endpoint is one side of one connection: its own PD (rkeys are scoped to
// the peer), the arena registered in it, a CQ and an RC QP. Client
// endpoints also have a completion channel so the poller sleeps in poll(2)
// instead of spinning. Methods other than close are safe for concurrent use;
// close must not race with them (callers exclude it with their own lock).
type endpoint struct {
	dev      *device
	ar       *arena
	pd       *C.struct_ibv_pd
	mr       *C.struct_ibv_mr
	ch       *C.struct_ibv_comp_channel
	cq       *C.struct_ibv_cq
	qp       *C.struct_ibv_qp
	psn      uint32
	rdAtomic int

	// Server endpoints expose replies through windows (see openWindow).
	windows string // windowsMW or windowsMR; "" for a client endpoint
	opMu    sync.Mutex
	opID    uint64               // guarded by opMu: wr_id of the last bind or invalidation
	freeMWs []*C.struct_ibv_mw   // guarded by opMu: invalidated type 2 MWs, ready to bind again
	live    map[*window]struct{} // guarded by opMu: open windows
	dead    bool                 // guarded by opMu: close ran
}

// newEndpoint creates PD, MR, CQ and QP in state INIT. depth bounds the
// work requests in flight; client endpoints poll completions.
// windows is "" for a client endpoint, else how the server endpoint exposes
// replies: windowsMW registers the arena for memory-window binding only
// (no remote access through the MR itself), windowsMR does not register it
// at all (each reply gets an MR of its own).
func (d *device) newEndpoint(ar *arena, depth int, client bool, windows string) (_ *endpoint, err error) {
	e := &endpoint{dev: d, ar: ar, windows: windows, live: map[*window]struct{}{}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	depth = max(1, min(depth, int(d.dc.attr.max_qp_wr), int(d.dc.attr.max_cqe)))
	if e.pd = C.ibv_alloc_pd(d.dc.ctx); e.pd == nil {
		return nil, errors.New("ibv_alloc_pd failed")
	}
	// The arena is never remotely accessible through its own MR: a server
	// exposes each reply through a window of exactly its bytes.
	access := C.int(C.IBV_ACCESS_LOCAL_WRITE)
	if windows == windowsMW {
		access |= C.IBV_ACCESS_MW_BIND
	}
	if windows != windowsMR {
		e.mr = C.ibv_reg_mr(e.pd, unsafe.Pointer(&ar.mem[0]), C.size_t(len(ar.mem)), access)
		if e.mr == nil {
			return nil, fmt.Errorf("ibv_reg_mr of %d bytes failed (memlock limit?)", len(ar.mem))
		}
	}
	if client {
		if e.ch = C.wf_channel(d.dc.ctx); e.ch == nil {
			return nil, errors.New("ibv_create_comp_channel failed")
		}
	}
	if e.cq = C.ibv_create_cq(d.dc.ctx, C.int(depth+1), nil, e.ch, 0); e.cq == nil {
		return nil, errors.New("ibv_create_cq failed")
	}
	if client {
		if err := cErr("ibv_req_notify_cq", C.wf_arm(e.cq)); err != nil {
			return nil, err
		}
	}
	if e.qp = C.wf_create_qp(e.pd, e.cq, C.int(depth)); e.qp == nil {
		return nil, errors.New("ibv_create_qp failed")
	}
	if err := cErr("QP → INIT", C.wf_qp_init(e.qp, C.int(d.info.Port))); err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("PSN: %w", err)
	}
	e.psn = binary.BigEndian.Uint32(b[:]) & 0xffffff
	e.rdAtomic = 16
	if client {
		e.rdAtomic = min(e.rdAtomic, int(d.dc.attr.max_qp_init_rd_atom))
	} else {
		e.rdAtomic = min(e.rdAtomic, int(d.dc.attr.max_qp_rd_atom))
	}
	e.rdAtomic = max(e.rdAtomic, 1)
	return e, nil
}

// local is what the peer needs to connect to this endpoint.
func (e *endpoint) local() qpInfo {
	q := qpInfo{QPN: uint32(e.qp.qp_num), PSN: e.psn, LID: e.dev.info.LID, MTU: uint8(e.dev.mtu),
		RDAtomic: uint8(e.rdAtomic)}
	copy(q.GID[:], e.dev.info.GID.To16())
	return q
}

// connect moves the QP INIT→RTR→RTS towards remote. The path MTU is the
// smaller of both ports'; a client initiates at most as many READs as the
// server accepts.
func (e *endpoint) connect(remote qpInfo) error {
	mtu := min(e.dev.mtu, int(remote.MTU))
	if mtu < 1 {
		return fmt.Errorf("%w: peer MTU %d", errProtocol, remote.MTU)
	}
	rd := max(1, min(e.rdAtomic, int(remote.RDAtomic)))
	global := C.int(1)
	if e.dev.ib {
		global = 0
	}
	if err := cErr("QP → RTR", C.wf_qp_rtr(e.qp, C.int(e.dev.info.Port), C.int(mtu), C.uint32_t(remote.QPN),
		C.uint32_t(remote.PSN&0xffffff), C.int(e.rdAtomic), global, (*C.uint8_t)(unsafe.Pointer(&remote.GID[0])),
		C.int(e.dev.info.GIDIndex), C.int(remote.LID))); err != nil {
		return err
	}
	return cErr("QP → RTS", C.wf_qp_rts(e.qp, C.uint32_t(e.psn), C.int(rd)))
}

// memoryWindows reports whether the device binds type 2 memory windows.
func (d *device) memoryWindows() bool {
	f := uint64(d.dc.attr.cap_flags)
	return d.dc.attr.max_mw > 0 && f&(C.IBV_DEVICE_MEM_WINDOW_TYPE_2A|C.IBV_DEVICE_MEM_WINDOW_TYPE_2B) != 0
}

// probeWindows checks what type 2 memory windows give on this device: it
// connects a loopback pair of endpoints over a scratch arena, binds a window
// over one page and READs through it, then one byte past it. ok says a
// READ within a window works; bounded that the device refuses one outside
// it. Soft-RoCE (rxe, as in Linux 6.1) checks a window's rkey, QP and state
// but the range only against the underlying MR, so there a window would
// expose the whole arena: not bounded.
func (d *device) probeWindows() (ok, bounded bool, err error) {
	ar, err := newArena(hugePage)
	if err != nil {
		return false, false, err
	}
	defer ar.free()
	srv, err := d.newEndpoint(ar, 4, false, windowsMW)
	if err != nil {
		return false, false, err
	}
	defer srv.close()
	cli, err := d.newEndpoint(ar, 4, true, "")
	if err != nil {
		return false, false, err
	}
	defer cli.close()
	if err := srv.connect(cli.local()); err != nil {
		return false, false, err
	}
	if err := cli.connect(srv.local()); err != nil {
		return false, false, err
	}
	w, err := srv.openWindow(0, 4096)
	if err != nil {
		return false, false, err
	}
	read := func(raddr uint64) error {
		if _, err := cli.postRead(1, hugePage/2, 4096, raddr, w.rkey, 4096); err != nil {
			return err
		}
		res := make(chan error, 1)
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			cli.poll(stop, func(_ uint64, err error) {
				select {
				case res <- err:
				default:
				}
			})
		}()
		defer func() { close(stop); <-done }()
		select {
		case err := <-res:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("no completion in 30 s")
		}
	}
	if err := read(w.addr); err != nil {
		return false, false, fmt.Errorf("READ through a memory window: %w", err)
	}
	return true, read(w.addr+1) != nil, nil
}

// window is the remote access to one reply's bytes: a type 2 memory window
// bound to this endpoint's QP (windowsMW) or an MR of its own (windowsMR).
type window struct {
	mw   *C.struct_ibv_mw
	mr   *C.struct_ibv_mr
	addr uint64
	rkey uint32
}

// windowOpTimeout bounds the wait for a bind's or an invalidation's
// completion; past it the endpoint is treated as broken.
const windowOpTimeout = 5 * time.Second

var errEndpointClosed = errors.New("endpoint closed")

// openWindow gives the peer remote read access to exactly the n bytes of
// the arena at off, under a fresh rkey, and to nothing else. With memory
// windows the window is bound to this endpoint's QP, so no other QP can use
// the rkey even within the same PD; the bind has completed when it returns.
func (e *endpoint) openWindow(off, n int) (*window, error) {
	if n <= 0 || off < 0 || off+n > len(e.ar.mem) {
		return nil, fmt.Errorf("window [%d, +%d) outside the arena", off, n)
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	if e.dead {
		return nil, errEndpointClosed
	}
	w := &window{addr: e.addr(off)}
	if e.windows == windowsMR {
		w.mr = C.ibv_reg_mr(e.pd, unsafe.Pointer(&e.ar.mem[off]), C.size_t(n), C.IBV_ACCESS_REMOTE_READ)
		if w.mr == nil {
			return nil, fmt.Errorf("ibv_reg_mr of a %d-byte reply failed", n)
		}
		w.rkey = uint32(w.mr.rkey)
		e.live[w] = struct{}{}
		return w, nil
	}
	var mw *C.struct_ibv_mw
	if k := len(e.freeMWs); k > 0 {
		mw, e.freeMWs = e.freeMWs[k-1], e.freeMWs[:k-1]
	} else if mw = C.ibv_alloc_mw(e.pd, C.IBV_MW_TYPE_2); mw == nil {
		return nil, errors.New("ibv_alloc_mw failed")
	}
	rkey := uint32(C.wf_inc_rkey(mw.rkey))
	if err := e.syncOpLocked("bind memory window", func(wrid uint64) C.int {
		return C.wf_post_bind(e.qp, C.uint64_t(wrid), mw, C.uint32_t(rkey), e.mr, C.uint64_t(w.addr), C.uint64_t(n))
	}); err != nil {
		C.ibv_dealloc_mw(mw)
		return nil, err
	}
	C.wf_set_mw_rkey(mw, C.uint32_t(rkey))
	w.mw, w.rkey = mw, rkey
	e.live[w] = struct{}{}
	return w, nil
}

// closeWindow revokes w: a memory window is invalidated (and kept for the
// next bind, which gives it a new rkey), a per-reply MR deregistered. When
// it returns the peer can no longer read through w.
func (e *endpoint) closeWindow(w *window) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	if _, ok := e.live[w]; !ok {
		return nil // closed already, or by close
	}
	delete(e.live, w)
	if w.mr != nil {
		if r := C.ibv_dereg_mr(w.mr); r != 0 {
			return fmt.Errorf("ibv_dereg_mr: %w", syscall.Errno(r))
		}
		return nil
	}
	err := e.syncOpLocked("invalidate memory window", func(wrid uint64) C.int {
		return C.wf_post_inv(e.qp, C.uint64_t(wrid), C.uint32_t(w.rkey))
	})
	if err != nil {
		// Deallocating a window revokes it too.
		C.ibv_dealloc_mw(w.mw)
		return err
	}
	e.freeMWs = append(e.freeMWs, w.mw)
	return nil
}

// syncOpLocked posts one signaled work request and waits for its
// completion. A server endpoint posts nothing else, and posts under opMu,
// so the CQ holds only completions of these (and of ones that timed out,
// which are skipped).
func (e *endpoint) syncOpLocked(what string, post func(wrid uint64) C.int) error {
	e.opID++
	wrid := e.opID
	if err := cErr(what, post(wrid)); err != nil {
		return err
	}
	var wrids [16]C.uint64_t
	var status [16]C.int
	deadline := time.Now().Add(windowOpTimeout)
	for spin := 0; ; spin++ {
		n := C.wf_poll(e.cq, 16, &wrids[0], &status[0])
		if n < 0 {
			return fmt.Errorf("%s: ibv_poll_cq: %d", what, n)
		}
		for i := 0; i < int(n); i++ {
			if uint64(wrids[i]) != wrid {
				continue
			}
			if status[i] != C.IBV_WC_SUCCESS {
				return fmt.Errorf("%s: completion: %s", what, C.GoString(C.ibv_wc_status_str(uint32(status[i]))))
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no completion in %v", what, windowOpTimeout)
		}
		if spin < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// broken reports whether the QP left RTS (the error state after, e.g., a
// remote access violation by the peer).
func (e *endpoint) broken() (bool, error) {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	if e.dead {
		return true, nil
	}
	st := C.wf_qp_state(e.qp)
	if st < 0 {
		return true, cErr("ibv_query_qp", st)
	}
	return st != C.IBV_QPS_RTS, nil
}

// addr is the virtual address of arena offset off, as the peer addresses it.
func (e *endpoint) addr(off int) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(e.ar.mem)))) + uint64(off)
}

// maxChain is the most work requests one postRead may post (WF_MAX_CHAIN).
const maxChain = C.WF_MAX_CHAIN

// maxMessage is the largest RDMA READ one work request may move.
func (e *endpoint) maxMessage() int { return int(e.dev.maxMsg) }

// postRead posts an RDMA READ of n bytes from raddr/rkey into the arena at
// off, as work requests of at most piece bytes (piece ≤ maxMessage, at most
// maxChain of them), each signaled: the i-th completion carries wrid+i. It
// returns how many were posted.
func (e *endpoint) postRead(wrid uint64, off, n int, raddr uint64, rkey uint32, piece int) (int, error) {
	r := C.wf_post_read(e.qp, C.uint64_t(wrid), unsafe.Pointer(&e.ar.mem[off]), C.uint32_t(n), e.mr.lkey,
		C.uint64_t(raddr), C.uint32_t(rkey), C.uint32_t(piece))
	if r < 0 {
		return 0, cErr("post RDMA READ", r)
	}
	return int(r), nil
}

// poll delivers completions until stop is closed: it drains the CQ in
// batches and otherwise sleeps in poll(2) on the completion channel (50 ms
// at a time, so that stop is noticed). A failed completion is delivered with
// its status text; after one, the QP is in the error state and the owner
// tears the connection down.
func (e *endpoint) poll(stop <-chan struct{}, deliver func(wrid uint64, err error)) error {
	var wrids [16]C.uint64_t
	var status [16]C.int
	for {
		n := C.wf_poll(e.cq, 16, &wrids[0], &status[0])
		if n < 0 {
			return fmt.Errorf("ibv_poll_cq: %d", n)
		}
		for i := 0; i < int(n); i++ {
			var err error
			if status[i] != C.IBV_WC_SUCCESS {
				err = fmt.Errorf("completion: %s", C.GoString(C.ibv_wc_status_str(uint32(status[i]))))
			}
			deliver(uint64(wrids[i]), err)
		}
		if n == 16 {
			continue
		}
		select {
		case <-stop:
			return nil
		default:
		}
		if r := C.wf_wait(e.ch, 50); r < 0 {
			return cErr("completion channel", r)
		}
	}
}

// close revokes every window (deallocating a memory window invalidates
// it), then destroys the QP (after which the NIC touches no memory of this
// endpoint), the CQ, channel, MR and PD. Safe on a partial endpoint.
func (e *endpoint) close() {
	e.opMu.Lock()
	e.dead = true
	for w := range e.live {
		if w.mw != nil {
			C.ibv_dealloc_mw(w.mw)
		} else {
			C.ibv_dereg_mr(w.mr)
		}
		delete(e.live, w)
	}
	for _, mw := range e.freeMWs {
		C.ibv_dealloc_mw(mw)
	}
	e.freeMWs = nil
	e.opMu.Unlock()
	if e.qp != nil {
		C.ibv_destroy_qp(e.qp)
		e.qp = nil
	}
	if e.cq != nil {
		C.ibv_destroy_cq(e.cq)
		e.cq = nil
	}
	if e.ch != nil {
		C.ibv_destroy_comp_channel(e.ch)
		e.ch = nil
	}
	if e.mr != nil {
		C.ibv_dereg_mr(e.mr)
		e.mr = nil
	}
	if e.pd != nil {
		C.ibv_dealloc_pd(e.pd)
		e.pd = nil
	}
}
