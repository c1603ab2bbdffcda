package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weedfuse/weedfuse/rdma"
)

var rdmaServerStats = []Stat[rdma.ServerStats]{
	gauge("weedrdma_peers", "Mounts connected now.", nil, func(s rdma.ServerStats) int { return s.Peers }),
	counter("weedrdma_peers_accepted_total", "Control connections accepted.", nil, func(s rdma.ServerStats) uint64 { return s.PeersSeen }),
	counter("weedrdma_requests_total", "Read requests received.", nil, func(s rdma.ServerStats) uint64 { return s.Requests }),
	counter("weedrdma_error_replies_total", "Read requests answered with an error (see weedrdma_refusals_total).", nil, func(s rdma.ServerStats) uint64 { return s.ErrorReplies }),
	counters("weedrdma_refusals_total", "Error replies by reason: bad_request, too_large, busy, timeout, upstream (a volume server's 5xx), or upstream_<status>.", nil, "reason",
		func(s rdma.ServerStats) map[string]uint64 { return refusalReasons(s.Refusals) }),
	counter("weedrdma_replied_bytes_total", "Bytes offered to mounts in successful replies.", nil, func(s rdma.ServerStats) uint64 { return s.BytesOffered }),
	counter("weedrdma_upstream_corrupt_total", "Needles refused because the volume server's bytes failed its own checksum.", nil, func(s rdma.ServerStats) uint64 { return s.UpstreamCorrupt }),
	gauge("weedrdma_cached_needles", "Needles held in registered memory.", nil, func(s rdma.ServerStats) int { return s.CachedNeedles }),
	gauge("weedrdma_pinned_slots", "Slots pinned by replies that mounts have not released.", nil, func(s rdma.ServerStats) int { return s.PinnedSlots }),
	gauge("weedrdma_slots", "Slots of registered memory.", nil, func(s rdma.ServerStats) int { return s.Slots }),
	counter("weedrdma_fault_corrupted_replies_total", "Fault injection: replies corrupted on purpose (stage after_crc or before_crc).", stage("after_crc"), func(s rdma.ServerStats) uint64 { return s.Corrupted }),
	counter("weedrdma_fault_corrupted_replies_total", "Fault injection: replies corrupted on purpose (stage after_crc or before_crc).", stage("before_crc"), func(s rdma.ServerStats) uint64 { return s.CorruptedStored }),
}

func stage(name string) prometheus.Labels { return prometheus.Labels{"stage": name} }

// refusalReasons names the statuses of weedrdma's error replies.
func refusalReasons(byStatus map[uint16]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for status, n := range byStatus {
		var reason string
		switch status {
		case 400:
			reason = "bad_request"
		case 413:
			reason = "too_large"
		case 503:
			reason = "busy"
		case 504:
			reason = "timeout"
		case 502:
			reason = "upstream"
		default:
			reason = "upstream_" + strconv.Itoa(int(status))
		}
		out[reason] += n
	}
	return out
}

// Sidecar is weedrdma's registry.
type Sidecar struct {
	reg *prometheus.Registry
}

// NewSidecar exports srv's counters with the Go runtime's and the process's.
func NewSidecar(srv Statser[rdma.ServerStats]) *Sidecar {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewStatsCollector(srv, rdmaServerStats),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Sidecar{reg: reg}
}

// Registry is where the collectors are.
func (s *Sidecar) Registry() *prometheus.Registry { return s.reg }

// Handler serves the registry.
func (s *Sidecar) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
