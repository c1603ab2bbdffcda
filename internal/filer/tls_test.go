package filer

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/testcerts"
)

// TestMutualTLS serves a filer that demands a client certificate from its
// CA, under a certificate whose name is not the address dialled (weed
// checks the chain, not the host name).
func TestMutualTLS(t *testing.T) {
	set := testcerts.New(t, "weed-filer.example")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(set.ServerConfig())))
	filerpb.RegisterSeaweedFilerServer(srv, fakeFiler{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	addr := spec(t, ln.Addr().String())

	plain, err := TLSConfig(set.ClientCert, set.ClientKey, "")
	require.NoError(t, err)
	require.Nil(t, plain, "no CA: plaintext, as weed")
	_, err = TLSConfig(set.ClientCert, set.ClientKey, set.CA+".missing")
	require.Error(t, err)
	_, err = TLSConfig(set.ClientCert, set.CA, set.CA)
	require.Error(t, err, "a certificate for a key")

	good, err := TLSConfig(set.ClientCert, set.ClientKey, set.CA)
	require.NoError(t, err)
	other := testcerts.New(t)
	wrongCA, err := TLSConfig(set.ClientCert, set.ClientKey, other.CA)
	require.NoError(t, err)
	strange, err := TLSConfig(other.ClientCert, other.ClientKey, set.CA)
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		tls  *tls.Config
		ok   bool
	}{
		{"mutual TLS", good, true},
		{"plaintext", nil, false},
		{"server from another CA", wrongCA, false},
		{"client cert from another CA", strange, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := New(ctx, Options{Addresses: []string{addr}, TLS: tc.tls, DialTimeout: time.Second, ReadyWait: 500 * time.Millisecond})
			if err == nil {
				defer c.Close()
				_, err = c.LookupEntry(ctx, "/d", "here")
			}
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}
