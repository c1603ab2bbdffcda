package rdma

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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

// writeTestPKI writes a CA and one certificate (for 127.0.0.1, used as both
// server and client certificate) into dir.
func writeTestPKI(t testing.TB, dir string) TLSFiles {
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, leafKey := key(), key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	return TLSFiles{CA: write("ca.pem", "CERTIFICATE", caDER), Cert: write("cert.pem", "CERTIFICATE", leafDER),
		Key: write("key.pem", "EC PRIVATE KEY", keyDER)}
}

func TestTLSFiles(t *testing.T) {
	if cfg, err := (TLSFiles{}).serverConfig(); cfg != nil || err != nil {
		t.Fatalf("no files: %v %v", cfg, err)
	}
	tf := writeTestPKI(t, t.TempDir())
	if _, err := (TLSFiles{CA: tf.CA}).serverConfig(); err == nil {
		t.Fatal("server without a certificate accepted")
	}
	cfg, err := tf.serverConfig()
	if err != nil || len(cfg.Certificates) != 1 || cfg.ClientCAs == nil {
		t.Fatalf("server config: %v", err)
	}
	if cfg, err := (TLSFiles{CA: tf.CA}).clientConfig(); err != nil || cfg.RootCAs == nil {
		t.Fatalf("client config: %v", err)
	}
	if _, err := (TLSFiles{CA: tf.Key}).clientConfig(); err == nil {
		t.Fatal("a key file accepted as CA")
	}
}
