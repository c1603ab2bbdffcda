// Command weedrdma serves one SeaweedFS volume server's needles over RDMA.
// It runs beside the volume server, fetches whole stored needles from it
// over loopback HTTP (passing each client's read JWT on), checks each
// against the volume server's needle CRC32C (its ETag) and refuses one that
// does not match, keeps hot needles in registered memory and answers
// weedfuse mounts, which RDMA READ the bytes and check them against that
// same CRC32C themselves.
//
//	weedrdma -volume.server=127.0.0.1:8080 -listen=:18515 [-device=mlx5_0] [-gid.index=N]
//	         [-cache.mb=256] [-slot.mb=8] [-tls.cert=F -tls.key=F [-tls.ca=F]]
//	         [-metrics.address=127.0.0.1:9328] [-v=N]
//	weedrdma -list
//
// -metrics.address serves Prometheus metrics at /metrics: peers, pinned
// slots, requests, refusals by reason, bytes offered (internal/metrics).
// -v is weed's glog verbosity, mapped as weedfuse maps it (internal/logs).
//
// -fault.corruptEvery=N and -fault.corruptStoredEvery=N are fault injection
// for tests (integration/rxe), never for production: every Nth reply
// carries a flipped byte, either after its transfer CRC32C was computed or
// before (as if weedrdma's own memory had corrupted the needle, so that only
// the needle's CRC32C from the volume server tells), to show that mounts
// detect both and read those bytes over HTTP.
//
// Mounts find it through their -rdma.sidecar mapping (e.g. ":18515": the
// volume server's host, port 18515). SIGINT or SIGTERM shut it down
// gracefully. Without an RDMA device it exits with status 1 and one line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weedfuse/weedfuse/internal/logs"
	"github.com/weedfuse/weedfuse/internal/metrics"
	"github.com/weedfuse/weedfuse/rdma"
)

func main() {
	var (
		volumeServer = flag.String("volume.server", "127.0.0.1:8080", "HTTP address of the volume server to serve")
		listen       = flag.String("listen", ":18515", "address of the control connection (TCP)")
		device       = flag.String("device", "", `verbs device, "name" or "name:port" (default: first active port)`)
		gidIndex     = flag.Int("gid.index", -1, "GID index (default: first IPv4-mapped RoCE v2 GID, else the first)")
		cacheMB      = flag.Int("cache.mb", 256, "registered memory for hot needles, MiB")
		slotMB       = flag.Int("slot.mb", 8, "largest needle served, MiB (mounts read larger ones over HTTP); keep it above the filer's chunk size")
		tlsCert      = flag.String("tls.cert", "", "TLS certificate (PEM) of the control connection")
		tlsKey       = flag.String("tls.key", "", "TLS key (PEM)")
		tlsCA        = flag.String("tls.ca", "", "CA (PEM) that client certificates must chain to")
		list         = flag.Bool("list", false, "list RDMA devices and exit")
		corruptEvery = flag.Int("fault.corruptEvery", 0, "FAULT INJECTION, TESTS ONLY: flip a byte of every Nth reply after its CRC32C was computed (0: off)")
		corruptStore = flag.Int("fault.corruptStoredEvery", 0, "FAULT INJECTION, TESTS ONLY: flip a byte of every Nth reply before its CRC32C is computed (0: off)")
		metricsAddr  = flag.String("metrics.address", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9328)")
		verbosity    = flag.Int("v", 0, "log verbosity as weed's glog: 0-1 info, 2 and up debug")
	)
	flag.Parse()
	slog.SetDefault(logs.New(os.Stderr, *verbosity).With("cmd", "weedrdma"))
	if *list {
		devs, err := rdma.ListDevices()
		if err != nil {
			fmt.Fprintln(os.Stderr, "weedrdma:", err)
			os.Exit(1)
		}
		for _, d := range devs {
			fmt.Println(d)
		}
		return
	}
	srv, err := rdma.NewServer(rdma.ServerOptions{
		VolumeServer: *volumeServer,
		Device:       *device,
		GIDIndex:     *gidIndex,
		TLS:          rdma.TLSFiles{Cert: *tlsCert, Key: *tlsKey, CA: *tlsCA},
		CacheBytes:   int64(*cacheMB) << 20,
		SlotBytes:    *slotMB << 20,

		CorruptEveryN:       *corruptEvery,
		CorruptStoredEveryN: *corruptStore,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "weedrdma:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		srv.Close()
		fmt.Fprintln(os.Stderr, "weedrdma:", err)
		os.Exit(1)
	}
	slog.Info("serving", "volume_server", *volumeServer, "listen", ln.Addr().String(), "device", srv.Device(), "hugepages", srv.HugePages())
	if *corruptEvery > 0 {
		slog.Warn("FAULT INJECTION: one reply in N gets a byte flipped after its CRC; for tests only", "fault.corruptEvery", *corruptEvery)
	}
	if *corruptStore > 0 {
		slog.Warn("FAULT INJECTION: one reply in N gets a byte flipped before its CRC; for tests only", "fault.corruptStoredEvery", *corruptStore)
	}
	var msrv *http.Server
	if *metricsAddr != "" {
		mln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			ln.Close()
			srv.Close()
			fmt.Fprintln(os.Stderr, "weedrdma: -metrics.address:", err)
			os.Exit(1)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.NewSidecar(srv).Handler())
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		// Shut down below, before srv closes.
		go msrv.Serve(mln)
		slog.Info("metrics", "address", mln.Addr().String())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		slog.Info("shutting down")
	case err = <-served:
	}
	if msrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		msrv.Shutdown(sctx)
		cancel()
	}
	srv.Close()
	st := srv.Stats()
	slog.Info("stopped", "peers_seen", st.PeersSeen, "requests", st.Requests, "error_replies", st.ErrorReplies,
		"upstream_corrupt", st.UpstreamCorrupt, "bytes_offered", st.BytesOffered,
		"corrupted_after_crc", st.Corrupted, "corrupted_before_crc", st.CorruptedStored)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(os.Stderr, "weedrdma:", err)
		os.Exit(1)
	}
}
