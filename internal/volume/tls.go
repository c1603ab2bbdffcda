package volume

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Config is the TLS toward volume servers, or nil when https.client is not
// enabled (plain http). As weed's HTTP client does
// (weed/util/http/client/http_client.go), it presents Cert and Key when
// both are set (one alone is an error), trusts CA when set and the system
// roots otherwise, and checks the server's certificate and host name
// unless InsecureSkipVerify.
func (h HTTPSClient) Config() (*tls.Config, error) {
	if !h.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: h.InsecureSkipVerify} //nolint:gosec // the user's choice
	switch {
	case h.Cert != "" && h.Key != "":
		pair, err := tls.LoadX509KeyPair(h.Cert, h.Key)
		if err != nil {
			return nil, fmt.Errorf("https.client cert %s, key %s: %w", h.Cert, h.Key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case h.Cert != "" || h.Key != "":
		return nil, fmt.Errorf("https.client: both cert and key must be set (cert %q, key %q)", h.Cert, h.Key)
	}
	if h.CA != "" {
		pool, err := loadCertPool("https.client.ca", h.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func loadCertPool(key, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", key, path)
	}
	return pool, nil
}
