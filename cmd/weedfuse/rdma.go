package main

import (
	"log/slog"
	"time"

	"github.com/weedfuse/weedfuse/internal/filer"
	"github.com/weedfuse/weedfuse/internal/volume"
	"github.com/weedfuse/weedfuse/rdma"
)

// newRDMAClient builds the RDMA step of the fetch chain when -rdma.enabled
// is given, or returns nil. Without a usable device (or in a build without
// the rdma tag) the client still works: every read falls back to HTTP,
// counted, and one line at start says why.
func newRDMAClient(cfg *config, fc *filer.Client, sec volume.SecurityConfig) (*rdma.Client, error) {
	if !cfg.rdmaEnabled {
		return nil, nil
	}
	sidecars, err := rdma.ParseSidecars(cfg.rdmaSidecar)
	if err != nil {
		return nil, err
	}
	// The shared secret for weedrdma ([rdma] key) lives in the same
	// security.toml as the read JWT key.
	if err := rdma.CheckSecret(sec.RDMAKey); err != nil {
		return nil, err
	}
	c, err := rdma.NewClient(rdma.ClientOptions{
		Secret:        sec.RDMAKey,
		Sidecars:      sidecars,
		Locator:       fc,
		MaxConcurrent: cfg.rdmaMaxConcurrent,
		Timeout:       time.Duration(cfg.rdmaTimeoutMs) * time.Millisecond,
		Device:        cfg.rdmaDevice,
		GIDIndex:      -1,
		TLS:           rdma.TLSFiles{Cert: cfg.rdmaTLSCert, Key: cfg.rdmaTLSKey, CA: cfg.rdmaTLSCA},
		VerifyETag:    cfg.verifyETag,
		ReadJWT: func(fid string) string {
			return volume.SignReadJWT(sec.ReadSigningKey, fid, sec.ReadExpiresAfter)
		},
	})
	if err != nil {
		return nil, err
	}
	if e := c.Unavailable(); e != nil {
		if cfg.rdmaFallback {
			slog.Warn("RDMA unavailable, reading over HTTP", "err", e)
		} else {
			slog.Error("RDMA unavailable and -rdma.fallback=false: reads will fail", "err", e)
		}
	} else {
		d := c.Device()
		auth := "none"
		switch {
		case len(sec.RDMAKey) > 0 && sec.Path != "":
			auth = "shared secret from " + sec.Path
		case len(sec.RDMAKey) > 0:
			auth = "shared secret from the environment"
		case cfg.rdmaTLSCA != "":
			auth = "TLS"
		}
		slog.Info("RDMA on", "device", d.Name, "weedrdma_authentication", auth)
	}
	return c, nil
}
