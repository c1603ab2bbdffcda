package volume

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weedfuse/weedfuse/internal/needle/needletest"

	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/internal/testcerts"
)

func TestSecurityTOMLTLSKeys(t *testing.T) {
	tests := []struct {
		name  string
		toml  string
		env   map[string]string
		grpc  GRPCTLS
		https HTTPSClient
		bad   bool
	}{
		{name: "scaffold has none", toml: scaffoldTOML, https: HTTPSClient{Enabled: true}},
		{name: "grpc client", toml: "[grpc]\nca = \"ca.pem\"\n[grpc.client]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
			grpc: GRPCTLS{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}},
		{name: "dedicated client pair wins", toml: "[grpc]\nca = \"ca\"\n[grpc.client]\ncert = \"c\"\nkey = \"k\"\nclient_cert = \"cc\"\nclient_key = \"ck\"\n",
			grpc: GRPCTLS{Cert: "cc", Key: "ck", CA: "ca"}},
		{name: "half a dedicated pair falls back", toml: "[grpc.client]\ncert = \"c\"\nkey = \"k\"\nclient_cert = \"cc\"\n",
			grpc: GRPCTLS{Cert: "c", Key: "k"}},
		{name: "other components are not the mount's", toml: "[grpc]\nca = \"ca\"\n[grpc.filer]\ncert = \"f\"\nkey = \"fk\"\n",
			grpc: GRPCTLS{CA: "ca"}},
		{name: "https client", toml: "[https.client]\nenabled = true\ncert = \"c\"\nkey = \"k\"\nca = \"ca\"\ninsecure_skip_verify = true\n",
			https: HTTPSClient{Enabled: true, Cert: "c", Key: "k", CA: "ca", InsecureSkipVerify: true}},
		{name: "https off", toml: "[https.client]\nenabled = false\nca = \"ca\"\n", https: HTTPSClient{CA: "ca"}},
		{name: "environment", toml: "[https.client]\nenabled = false\n",
			env:   map[string]string{"WEED_HTTPS_CLIENT_ENABLED": "true", "WEED_GRPC_CA": "eca", "WEED_GRPC_CLIENT_CERT": "ec", "WEED_GRPC_CLIENT_KEY": "ek"},
			grpc:  GRPCTLS{Cert: "ec", Key: "ek", CA: "eca"},
			https: HTTPSClient{Enabled: true}},
		{name: "enabled not a bool", toml: "[https.client]\nenabled = \"sometimes\"\n", bad: true},
		{name: "enabled a number", toml: "[https.client]\nenabled = 3\n", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := LoadSecurityTOMLFrom([]string{writeSecurityTOML(t, tt.toml)})
			if tt.bad {
				if err == nil {
					t.Fatalf("no error; got %+v", cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.GRPC != tt.grpc || cfg.HTTPS != tt.https {
				t.Errorf("grpc %+v https %+v; want %+v %+v", cfg.GRPC, cfg.HTTPS, tt.grpc, tt.https)
			}
		})
	}
}

func TestTLSConfigs(t *testing.T) {
	set := testcerts.New(t)
	if c, err := (HTTPSClient{}).Config(); c != nil || err != nil {
		t.Errorf("https off: %v, %v", c, err)
	}
	if _, err := (HTTPSClient{Enabled: true, Cert: set.ClientCert}).Config(); err == nil {
		t.Error("https with a cert and no key: no error")
	}
	if c, err := (HTTPSClient{Enabled: true}).Config(); err != nil || c == nil || c.RootCAs != nil {
		t.Errorf("https with system roots: %v, %v", c, err)
	}
}

// newTLSVolume is a fake volume server behind TLS that demands a client
// certificate from set's CA.
func newTLSVolume(t *testing.T, set *testcerts.Set) *fakeVolume {
	v := &fakeVolume{needles: map[string]fakeNeedle{}}
	v.srv = httptest.NewUnstartedServer(http.HandlerFunc(v.serve))
	v.srv.TLS = set.ServerConfig()
	v.srv.StartTLS()
	v.addr = strings.TrimPrefix(v.srv.URL, "https://")
	t.Cleanup(v.srv.Close)
	return v
}

func TestReadOverMutualTLS(t *testing.T) {
	set := testcerts.New(t)
	v := newTLSVolume(t, set)
	data := needletest.RandomBytes(t, 100_000)
	v.put(testFID, fakeNeedle{data: data})
	c := needle.Chunk{FileID: testFID, Size: int64(len(data))}
	ctx := context.Background()

	good, err := (HTTPSClient{Enabled: true, Cert: set.ClientCert, Key: set.ClientKey, CA: set.CA}).Config()
	if err != nil {
		t.Fatal(err)
	}
	r := newTestReader(t, newFakeLocator([]string{v.addr}), Options{TLS: good})
	dst := make([]byte, len(data))
	if _, err := readChunk(r, ctx, c, 0, dst); err != nil || !bytes.Equal(dst, data) {
		t.Fatalf("Fetch over mTLS: %v, or bytes differ", err)
	}
	if _, err := readRange(r, ctx, c, 1000, [][]byte{dst[:4096]}); err != nil || !bytes.Equal(dst[:4096], data[1000:5096]) {
		t.Fatalf("range Fetch over mTLS: %v, or bytes differ", err)
	}

	quick := Options{ReadRetryTime: 1, StallTimeout: quickOptions.StallTimeout}
	noCert, err := (HTTPSClient{Enabled: true, CA: set.CA}).Config()
	if err != nil {
		t.Fatal(err)
	}
	other := testcerts.New(t)
	wrongCA, err := (HTTPSClient{Enabled: true, Cert: set.ClientCert, Key: set.ClientKey, CA: other.CA}).Config()
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{"plain http": {}, "no client cert": {TLS: noCert}, "server from another CA": {TLS: wrongCA}} {
		o.ReadRetryTime, o.StallTimeout = quick.ReadRetryTime, quick.StallTimeout
		r := newTestReader(t, newFakeLocator([]string{v.addr}), o)
		if _, err := readChunk(r, ctx, c, 0, dst); err == nil {
			t.Errorf("%s: read succeeded", name)
		}
	}
}

func TestLoadSecurityFile(t *testing.T) {
	dir := writeSecurityTOML(t, "[https.client]\nenabled = true\nca = \"ca\"\n")
	path := dir + "/security.toml"
	cfg, err := LoadSecurityFile(path)
	if err != nil || !cfg.HTTPS.Enabled || cfg.HTTPS.CA != "ca" || cfg.Path != path {
		t.Errorf("LoadSecurityFile = %+v, %v", cfg, err)
	}
	if _, err := LoadSecurityFile(dir + "/missing.toml"); err == nil {
		t.Error("a missing file: no error")
	}
}
