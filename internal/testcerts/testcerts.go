// Package testcerts writes a throwaway certificate authority and
// certificates signed by it, for tests of TLS and mutual TLS.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Set is a CA and a server and a client certificate it signed, as PEM
// files in one directory.
type Set struct {
	CA                    string // the CA certificate
	ServerCert, ServerKey string // for "localhost" and 127.0.0.1, unless made with a name
	ClientCert, ClientKey string
	// Server is the server pair, loaded.
	Server tls.Certificate
	// Pool holds the CA certificate.
	Pool *x509.CertPool
}

// New makes a Set under t.TempDir(). serverNames, when given, replace the
// server certificate's names (and leave out 127.0.0.1), for testing a
// client that does not check host names.
func New(t testing.TB, serverNames ...string) *Set {
	t.Helper()
	dir := t.TempDir()
	caKey := key(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weedfuse test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{CA: filepath.Join(dir, "ca.crt"), Pool: x509.NewCertPool()}
	s.Pool.AddCert(caCert)
	write(t, s.CA, "CERTIFICATE", caDER)

	leaf := func(name string, serial int64, dns []string, ips []net.IP) (string, string) {
		k := key(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			// Both usages: weed's servers present their certificate
			// when they dial one another.
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:    dns,
			IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		cert, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		write(t, cert, "CERTIFICATE", der)
		write(t, keyPath, "EC PRIVATE KEY", kder)
		return cert, keyPath
	}
	dns, ips := []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	if len(serverNames) > 0 {
		dns, ips = serverNames, nil
	}
	s.ServerCert, s.ServerKey = leaf("server", 2, dns, ips)
	s.ClientCert, s.ClientKey = leaf("client", 3, nil, nil)
	if s.Server, err = tls.LoadX509KeyPair(s.ServerCert, s.ServerKey); err != nil {
		t.Fatal(err)
	}
	return s
}

// ServerConfig is a TLS server configuration that demands a client
// certificate signed by the set's CA.
func (s *Set) ServerConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.Server},
		ClientCAs:    s.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

func key(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func write(t testing.TB, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
