// Command weedrdma serves one SeaweedFS volume server's needles over RDMA.
// It runs beside the volume server, fetches whole stored needles from it
// over loopback HTTP (passing each client's read JWT on), checks each
// against the volume server's needle CRC32C (its ETag) and refuses one that
// does not match, keeps hot needles in registered memory and answers
// weedfuse mounts, which RDMA READ the bytes and check them against that
// same CRC32C themselves.
//
//	weedrdma -volume.server=127.0.0.1:8080 -listen=:18515 [-device=mlx5_0] [-gid.index=N]
//	         [-cache.mb=256] [-slot.mb=8] [-security=security.toml]
//	         [-tls.cert=F -tls.key=F [-tls.ca=F]] [-insecure] [-windows=auto|mw|mr]
//	         [-peers.max=N] [-peers.perSource=N] [-peer.pinnedMB=N] [-peer.replies=N]
//	         [-reply.timeout=D] [-idle.timeout=D] [-write.timeout=D]
//	         [-metrics.address=127.0.0.1:9328] [-v=N]
//	weedrdma -list
//
// Peers authenticate before they get a QP: with security.toml's [rdma] key
// (an HMAC challenge-response in both directions), or with mutual TLS
// (-tls.ca). On an address that is not loopback weedrdma refuses to start
// without one of them, unless -insecure.
//
// A binary built with -tags rdmafault (integration/rxe does, for tests) has
// fault injection flags too, -fault.*; see fault.go.
//
// -metrics.address serves Prometheus metrics at /metrics: peers, pinned
// slots, requests, refusals by reason, bytes offered (internal/metrics).
// -v is weed's glog verbosity, mapped as weedfuse maps it (internal/logs).
//
// Mounts find it through their -rdma.sidecar mapping (e.g. ":18515": the
// volume server's host, port 18515). SIGINT or SIGTERM shut it down
// gracefully. Without an RDMA device it exits with status 1 and one line.
package main

import (
	"context"
	"crypto/tls"
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
	"github.com/weedfuse/weedfuse/internal/volume"
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
		security     = flag.String("security", "", "security.toml with the shared secret ([rdma] key); default: the first of ./, ~/.seaweedfs/, /usr/local/etc/seaweedfs/, /etc/seaweedfs/")
		insecure     = flag.Bool("insecure", false, "allow a non-loopback listen address without a shared secret or mutual TLS")
		windows      = flag.String("windows", "auto", "how replies are exposed: auto (type 2 memory windows if the device has them, else per-reply MRs), mw, mr")
		maxPeers     = flag.Int("peers.max", 1024, "control connections overall (-1: no limit)")
		perSource    = flag.Int("peers.perSource", 128, "control connections per source address (-1: no limit)")
		pinnedMB     = flag.Int("peer.pinnedMB", 0, "MiB one peer's unreleased replies may pin (0: half of -cache.mb; -1: no limit)")
		maxReplies   = flag.Int("peer.replies", 256, "unreleased replies per peer (-1: no limit)")
		replyTimeout = flag.Duration("reply.timeout", 60*time.Second, "revoke a reply its peer has not released after this long")
		idleTimeout  = flag.Duration("idle.timeout", 5*time.Minute, "drop a peer that sends nothing for this long (mounts send a keepalive every 30 s)")
		writeTimeout = flag.Duration("write.timeout", 10*time.Second, "drop a peer that does not take a reply within this long")
		metricsAddr  = flag.String("metrics.address", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9328)")
		verbosity    = flag.Int("v", 0, "log verbosity as weed's glog: 0-1 info, 2 and up debug")
	)
	faults := faultFlags()
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
	// One reading of security.toml, as the mount's: the first file where
	// weed looks (or -security's), then the WEED_* environment overrides.
	var (
		sec volume.SecurityConfig
		err error
	)
	if *security != "" {
		sec, err = volume.LoadSecurityFile(*security)
	} else {
		sec, err = volume.LoadSecurityTOML()
	}
	if err == nil {
		err = rdma.CheckSecret(sec.RDMAKey)
	}
	var volumeTLS *tls.Config
	if err == nil {
		volumeTLS, err = sec.HTTPS.Config()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "weedrdma:", err)
		os.Exit(1)
	}
	secret, secPath := sec.RDMAKey, sec.Path
	if secPath == "" {
		secPath = "the environment"
	}
	if err := checkExposure(*listen, len(secret) > 0, *tlsCA != "", *insecure); err != nil {
		fmt.Fprintln(os.Stderr, "weedrdma:", err)
		os.Exit(2)
	}
	opts := rdma.ServerOptions{
		VolumeServer:      *volumeServer,
		VolumeTLS:         volumeTLS,
		Device:            *device,
		GIDIndex:          *gidIndex,
		TLS:               rdma.TLSFiles{Cert: *tlsCert, Key: *tlsKey, CA: *tlsCA},
		CacheBytes:        int64(*cacheMB) << 20,
		SlotBytes:         *slotMB << 20,
		Secret:            secret,
		Windows:           *windows,
		MaxPeers:          *maxPeers,
		MaxPeersPerSource: *perSource,
		MaxReplies:        *maxReplies,
		ReplyTimeout:      *replyTimeout,
		IdleTimeout:       *idleTimeout,
		WriteTimeout:      *writeTimeout,
	}
	if *pinnedMB != 0 {
		opts.MaxPinnedBytes = int64(*pinnedMB) << 20
		if *pinnedMB < 0 {
			opts.MaxPinnedBytes = -1
		}
	}
	faults.apply(&opts)
	srv, err := rdma.NewServer(opts)
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
	auth := "none (-insecure or loopback)"
	switch {
	case len(secret) > 0 && *tlsCA != "":
		auth = "shared secret from " + secPath + " and mutual TLS"
	case len(secret) > 0:
		auth = "shared secret from " + secPath
	case *tlsCA != "":
		auth = "mutual TLS"
	}
	slog.Info("serving", "volume_server", *volumeServer, "listen", ln.Addr().String(), "device", srv.Device(),
		"hugepages", srv.HugePages(), "windows", srv.WindowMode(), "peer_authentication", auth)
	faults.log()

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
		"upstream_corrupt", st.UpstreamCorrupt, "bytes_offered", st.BytesOffered, "windows", st.WindowMode,
		"auth_failures", st.AuthFailures, "refused_peers", st.RefusedPeers, "limit_replies", st.LimitReplies,
		"revoked", st.Revoked, "qp_errors", st.QPErrors, "idle_drops", st.IdleDrops,
		"corrupted_after_crc", st.Corrupted, "corrupted_before_crc", st.CorruptedStored, "forged", st.Forged)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(os.Stderr, "weedrdma:", err)
		os.Exit(1)
	}
}

// checkExposure refuses a listen address that other machines can reach
// when no peer authentication is configured, unless insecure.
func checkExposure(listen string, secret, mtls, insecure bool) error {
	if secret || mtls || insecure {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen=%s: %w", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-listen=%s is not a loopback address and peers would not authenticate: set [rdma] key in security.toml (-security), or require client certificates (-tls.ca), or pass -insecure", listen)
}
