package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/integration/mount"
	"github.com/weedfuse/weedfuse/internal/filer"
	"github.com/weedfuse/weedfuse/internal/testcerts"
)

// TestExactMutualTLS reads through weedfuse from a cluster that speaks
// gRPC only over mutual TLS ([grpc] ca, [grpc.<component>] cert and key)
// and whose volume servers serve only HTTPS with client certificates
// ([https.volume]); weedfuse finds [grpc.client] and [https.client] in the
// security.toml under $HOME/.seaweedfs, with weed's key names.
func TestExactMutualTLS(t *testing.T) {
	set := testcerts.New(t)
	pair := func(table string) string {
		return fmt.Sprintf("[%s]\ncert = %q\nkey = %q\n", table, set.ServerCert, set.ServerKey)
	}
	toml := fmt.Sprintf("[grpc]\nca = %q\n", set.CA) +
		pair("grpc.master") + pair("grpc.volume") + pair("grpc.filer") +
		fmt.Sprintf("[grpc.client]\ncert = %q\nkey = %q\n", set.ClientCert, set.ClientKey) +
		pair("https.volume") + fmt.Sprintf("ca = %q\n", set.CA) +
		fmt.Sprintf("[https.client]\nenabled = true\ncert = %q\nkey = %q\nca = %q\n", set.ClientCert, set.ClientKey, set.CA)
	filerTLS, err := filer.TLSConfig(set.ClientCert, set.ClientKey, set.CA)
	require.NoError(t, err)
	c := cluster.StartT(t, cluster.Options{SecurityTOML: toml, FilerTLS: filerTLS})
	ctx := ctxT(t, 2*time.Minute)
	rng := rand.New(rand.NewPCG(41, 42))
	bin := make([]byte, 9<<20+3)
	fillRandom(rng, bin)
	want := map[string][]byte{"multi.bin": bin, "small.bin": bin[:100_000], "notes.txt": exactText(rng, 1<<20)}
	for name, data := range want {
		require.NoError(t, c.Put(ctx, "/tls/"+name, data))
	}
	// The volume servers answer plain HTTP with nothing.
	e, err := c.Entry(ctx, "/tls", "small.bin")
	require.NoError(t, err)
	plain := &http.Client{Timeout: 5 * time.Second}
	resp, err := plain.Get("http://" + c.VolumeAddrs()[0] + "/" + e.GetChunks()[0].GetFileId())
	if err == nil {
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "a volume server served plain HTTP")
		t.Logf("plain HTTP GET from a volume server: %s", resp.Status)
	} else {
		t.Logf("plain HTTP GET from a volume server: %v", err)
	}

	// Without security.toml the filer refuses weedfuse at start.
	t.Setenv("HOME", t.TempDir())
	startCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if m, err := mount.Start(startCtx, weedfuseBin, filepath.Join(t.TempDir(), "mnt"), 15*time.Second,
		"-filer="+c.FilerMountSpec(), "-filer.path=/tls", "-cacheDir="+t.TempDir()); err == nil {
		m.Stop()
		t.Fatal("weedfuse mounted a gRPC-TLS filer without security.toml")
	} else {
		t.Logf("without security.toml: %v", err)
	}

	home := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".seaweedfs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(home, ".seaweedfs", "security.toml"), []byte(toml), 0o600))
	t.Setenv("HOME", home)
	m := startMount(t, c, "-filer.path=/tls")
	exactCheckFiles(t, c, m.Dir, "/tls", want, rng, 50)
}
