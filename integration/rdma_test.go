package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// freeAddr returns a 127.0.0.1 address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func metrics(t *testing.T, addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestRDMAUnsupportedFallsBack runs the default build (no rdma tag, no
// libibverbs) with -rdma.enabled: it must say once that RDMA is
// unavailable, read every byte over HTTP, and count the fallbacks.
func TestRDMAUnsupportedFallsBack(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	data := bytes.Repeat([]byte("rdma fallback "), 700_000)
	require.NoError(t, c.Put(ctx, "/rdma/f.bin", data))
	maddr := freeAddr(t)
	m := startMount(t, c, "-rdma.enabled", "-rdma.sidecar=:18515", "-metrics.address="+maddr)
	got, err := os.ReadFile(filepath.Join(m.Dir, "rdma", "f.bin"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(got, data), "bytes read with -rdma.enabled differ from the source")
	if !strings.Contains(m.Log(), "RDMA unavailable, reading over HTTP") {
		t.Errorf("no line saying RDMA is unavailable in:\n%s", m.Log())
	}
	text := metrics(t, maddr)
	if !strings.Contains(text, `weedfuse_rdma_fallbacks_total{reason="unsupported"}`) {
		t.Errorf("no unsupported fallbacks counted:\n%s", text)
	}
	if !strings.Contains(text, "weedfuse_rdma_reads_total 0") {
		t.Errorf("RDMA reads counted in a build without RDMA:\n%s", text)
	}
	t.Log(fmt.Sprint(strings.Count(text, "\n"), " metric lines"))
}
