package rdma

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles names PEM files for the control connection. All empty means
// plain TCP. A server needs Cert and Key; with CA it also requires client
// certificates signed by CA. A client verifies the server against CA (the
// system roots when empty) and presents Cert/Key when given.
type TLSFiles struct {
	Cert, Key, CA string
}

func (t TLSFiles) enabled() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

func (t TLSFiles) load() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if t.Cert != "" || t.Key != "" {
		c, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("rdma tls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("rdma tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("rdma tls: no certificate in %s", t.CA)
		}
		cfg.RootCAs, cfg.ClientCAs = pool, pool
	}
	return cfg, nil
}

// serverConfig is nil when TLS is off.
func (t TLSFiles) serverConfig() (*tls.Config, error) {
	if !t.enabled() {
		return nil, nil
	}
	if t.Cert == "" || t.Key == "" {
		return nil, errors.New("rdma tls: the server needs both a certificate and a key")
	}
	cfg, err := t.load()
	if err != nil {
		return nil, err
	}
	if t.CA != "" {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// clientConfig is nil when TLS is off.
func (t TLSFiles) clientConfig() (*tls.Config, error) {
	if !t.enabled() {
		return nil, nil
	}
	return t.load()
}
