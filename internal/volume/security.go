package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The security.toml keys that govern read JWTs. weed reads them through
// viper (weed/util/http/http_global_client_util.go, loadJwtConfig).
const (
	tomlReadKey     = "jwt.signing.read.key"
	tomlReadExpires = "jwt.signing.read.expires_after_seconds"
)

// The security.toml keys for TLS toward the filer's gRPC (weed mount dials
// with the component "grpc.client": weed/command/mount_common.go,
// weed/security/tls.go LoadClientTLS) and toward volume servers over HTTPS
// (weed/util/http/client/http_client.go, "https.client").
const (
	tomlGRPCCA         = "grpc.ca"
	tomlGRPCCert       = "grpc.client.cert"
	tomlGRPCKey        = "grpc.client.key"
	tomlGRPCClientCert = "grpc.client.client_cert"
	tomlGRPCClientKey  = "grpc.client.client_key"
	tomlHTTPSEnabled   = "https.client.enabled"
	tomlHTTPSCert      = "https.client.cert"
	tomlHTTPSKey       = "https.client.key"
	tomlHTTPSCA        = "https.client.ca"
	tomlHTTPSInsecure  = "https.client.insecure_skip_verify"
)

// tomlRDMAKey is weedfuse's own key, the secret weedrdma and the mounts
// share ([rdma] key; see package rdma).
const tomlRDMAKey = "rdma.key"

// securityKeys are every key read, each of which the environment may set.
var securityKeys = []string{
	tomlReadKey, tomlReadExpires, tomlRDMAKey,
	tomlGRPCCA, tomlGRPCCert, tomlGRPCKey, tomlGRPCClientCert, tomlGRPCClientKey,
	tomlHTTPSEnabled, tomlHTTPSCert, tomlHTTPSKey, tomlHTTPSCA, tomlHTTPSInsecure,
}

// SecurityConfig is the part of weed's security.toml that reading chunks
// needs. Its fields feed Options.ReadSigningKey and Options.ReadExpiresAfter.
type SecurityConfig struct {
	// Path is the security.toml that was read, or "" when none was found.
	Path string
	// ReadSigningKey is jwt.signing.read.key; empty means the volume
	// servers do not check read JWTs.
	ReadSigningKey []byte
	// ReadExpiresAfter is jwt.signing.read.expires_after_seconds; zero
	// means tokens carry no exp claim.
	ReadExpiresAfter time.Duration
	// GRPC is the mutual TLS toward the filer's gRPC (filer.TLSConfig
	// builds it).
	GRPC GRPCTLS
	// HTTPS is [https.client], for volume servers (HTTPSClient.Config).
	HTTPS HTTPSClient
	// RDMAKey is [rdma] key (WEED_RDMA_KEY in the environment), the
	// secret weedrdma and the mounts authenticate each other with; empty
	// when unset. rdma.CheckSecret says whether it is long enough.
	RDMAKey []byte
}

// GRPCTLS holds file paths, as weed takes them (relative to the working
// directory): Cert and Key are grpc.client.client_cert and client_key when
// both are set, else grpc.client.cert and key; CA is grpc.ca.
type GRPCTLS struct {
	Cert, Key, CA string
}

// HTTPSClient is [https.client]: Enabled turns the scheme to https; Cert
// and Key (both or neither) are the client certificate; CA, when set,
// replaces the system roots; InsecureSkipVerify checks no server
// certificate.
type HTTPSClient struct {
	Enabled            bool
	Cert, Key, CA      string
	InsecureSkipVerify bool
}

// SecurityTOMLDirs lists the directories weed searches for security.toml, in
// its order: ".", "$HOME/.seaweedfs", "/usr/local/etc/seaweedfs",
// "/etc/seaweedfs" (weed/util/config.go, LoadConfiguration). weed puts its
// -config_dir first when that flag is set; a caller with such a flag
// prepends it. $HOME is left out when the home directory is unknown.
func SecurityTOMLDirs() []string {
	dirs := []string{"."}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".seaweedfs"))
	}
	return append(dirs, "/usr/local/etc/seaweedfs", "/etc/seaweedfs")
}

// LoadSecurityTOML reads the read-JWT settings the way weed does: the first
// security.toml found in SecurityTOMLDirs, then the environment overrides
// described at LoadSecurityTOMLFrom. No file and no environment gives a zero
// SecurityConfig and no error: read JWTs are off.
func LoadSecurityTOML() (SecurityConfig, error) {
	return LoadSecurityTOMLFrom(SecurityTOMLDirs())
}

// LoadSecurityTOMLFrom reads the first security.toml found in dirs. Like
// weed, which reads the file through viper with AutomaticEnv and the prefix
// "weed" (weed/util/config.go, GetViper), a non-empty environment variable
// named WEED_ and the key upper-cased with "." as "_" overrides the file:
// WEED_JWT_SIGNING_READ_KEY, WEED_GRPC_CA, WEED_HTTPS_CLIENT_ENABLED, ...
//
// Only TOML is read; viper would also accept security.yaml and the like.
func LoadSecurityTOMLFrom(dirs []string) (SecurityConfig, error) {
	var cfg SecurityConfig
	values := map[string]any{}
	for _, dir := range dirs {
		path := filepath.Join(dir, "security.toml")
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return SecurityConfig{}, fmt.Errorf("read %s: %w", path, err)
		}
		if values, err = parseTOML(string(data)); err != nil {
			return SecurityConfig{}, fmt.Errorf("parse %s: %w", path, err)
		}
		cfg.Path = path
		break
	}
	return cfg.finish(values)
}

// LoadSecurityFile reads the security.toml at path (which must exist), with
// the environment overrides described at LoadSecurityTOMLFrom: for a
// program given the file by a flag, such as weedrdma's -security.
func LoadSecurityFile(path string) (SecurityConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return SecurityConfig{}, fmt.Errorf("read %s: %w", path, err)
	}
	values, err := parseTOML(string(data))
	if err != nil {
		return SecurityConfig{}, fmt.Errorf("parse %s: %w", path, err)
	}
	cfg := SecurityConfig{Path: path}
	return cfg.finish(values)
}

// finish applies the environment overrides to values and takes the keys.
func (cfg SecurityConfig) finish(values map[string]any) (SecurityConfig, error) {
	for _, key := range securityKeys {
		env := "WEED_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		if v := os.Getenv(env); v != "" {
			values[key] = v
		}
	}
	if err := cfg.setFrom(values); err != nil {
		where := cfg.Path
		if where == "" {
			where = "environment"
		}
		return SecurityConfig{}, fmt.Errorf("security config from %s: %w", where, err)
	}
	return cfg, nil
}

// setFrom takes the keys this package reads from parsed values, converting
// types the way viper's GetString, GetInt and GetBool do for the forms a
// person would write.
func (cfg *SecurityConfig) setFrom(values map[string]any) error {
	str := func(key string) string {
		switch v := values[key].(type) {
		case string:
			return v
		case int64:
			return strconv.FormatInt(v, 10)
		}
		return ""
	}
	if k := str(tomlReadKey); k != "" {
		cfg.ReadSigningKey = []byte(k)
	}
	if k := str(tomlRDMAKey); k != "" {
		cfg.RDMAKey = []byte(k)
	}
	var secs int64
	switch v := values[tomlReadExpires].(type) {
	case int64:
		secs = v
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return fmt.Errorf("%s = %q: not a whole number of seconds", tomlReadExpires, v)
		}
		secs = n
	}
	if secs > 0 {
		cfg.ReadExpiresAfter = time.Duration(secs) * time.Second
	}
	boolean := func(key string) (bool, error) {
		switch v := values[key].(type) {
		case bool:
			return v, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return false, fmt.Errorf("%s = %q: not true or false", key, v)
			}
			return b, nil
		case nil:
			return false, nil
		}
		return false, fmt.Errorf("%s = %v: not true or false", key, values[key])
	}
	// weed prefers a dedicated client pair and falls back to cert/key when
	// either half is missing (weed/security/tls.go, LoadClientTLS).
	cfg.GRPC.Cert, cfg.GRPC.Key = str(tomlGRPCClientCert), str(tomlGRPCClientKey)
	if cfg.GRPC.Cert == "" || cfg.GRPC.Key == "" {
		cfg.GRPC.Cert, cfg.GRPC.Key = str(tomlGRPCCert), str(tomlGRPCKey)
	}
	cfg.GRPC.CA = str(tomlGRPCCA)
	var err error
	if cfg.HTTPS.Enabled, err = boolean(tomlHTTPSEnabled); err != nil {
		return err
	}
	if cfg.HTTPS.InsecureSkipVerify, err = boolean(tomlHTTPSInsecure); err != nil {
		return err
	}
	cfg.HTTPS.Cert, cfg.HTTPS.Key, cfg.HTTPS.CA = str(tomlHTTPSCert), str(tomlHTTPSKey), str(tomlHTTPSCA)
	return nil
}

// parseTOML decodes a security.toml and maps each full dotted key of a
// table to its value, as viper keys it: strings, int64s, bools and the
// other TOML types as github.com/BurntSushi/toml decodes them. Keys under
// an array of tables are left out: nothing read from security.toml lives
// in one. Malformed TOML is an error naming the line.
func parseTOML(src string) (map[string]any, error) {
	var doc map[string]any
	if _, err := toml.Decode(src, &doc); err != nil {
		return nil, err
	}
	out := map[string]any{}
	flattenTOML(out, "", doc)
	return out, nil
}

func flattenTOML(out map[string]any, prefix string, table map[string]any) {
	for k, v := range table {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flattenTOML(out, key, sub)
			continue
		}
		out[key] = v
	}
}
