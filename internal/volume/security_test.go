package volume

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scaffoldTOML is shaped like the security.toml that "weed scaffold
// -config=security" writes, with the read key filled in.
const scaffoldTOML = `# Put this file to one of the location, with descending priority
#    ./security.toml
#    $HOME/.seaweedfs/security.toml
#    /etc/seaweedfs/security.toml

[jwt.signing]
key = ""
expires_after_seconds = 10           # seconds

# jwt for read is only supported with master+volume setup. Filer does not support this mode.
[jwt.signing.read]
key = "readsecret123"
expires_after_seconds = 10           # seconds

[jwt.filer_signing]
key = ""
expires_after_seconds = 10           # seconds

[access]
ui = false

[guard]
white_list = ""

[grpc]
ca = ""
allowed_wildcard_domain = ""

[grpc.volume]
cert = ""
key  = ""
allowed_commonNames = ""

[https.client]
enabled = true
`

func TestParseSecurityTOML(t *testing.T) {
	tests := []struct {
		name    string
		toml    string
		key     string
		expires time.Duration
		wantErr bool
	}{
		{name: "scaffold", toml: scaffoldTOML, key: "readsecret123", expires: 10 * time.Second},
		{name: "empty", toml: ""},
		{name: "no read table", toml: "[jwt.signing]\nkey = \"write\"\n"},
		{name: "write key is not the read key", toml: "[jwt.signing]\nkey = \"w\"\n[jwt.signing.read]\nkey = \"r\"\n", key: "r"},
		{name: "dotted keys at root", toml: "jwt.signing.read.key = \"r\"\njwt.signing.read.expires_after_seconds = 5\n", key: "r", expires: 5 * time.Second},
		{name: "dotted keys in parent table", toml: "[jwt.signing]\nread.key = 'lit'\n", key: "lit"},
		{name: "quoted and spaced key parts", toml: "[ jwt . \"signing\" . 'read' ]\n\"key\" = \"q\"\n", key: "q"},
		{name: "escapes", toml: `[jwt.signing.read]` + "\n" + `key = "a\"b\\c\u00e9\t"`, key: "a\"b\\c\u00e9\t"},
		{name: "literal keeps backslashes", toml: "[jwt.signing.read]\nkey = 'C:\\no\\escape'\n", key: `C:\no\escape`},
		{name: "multi-line basic", toml: "[jwt.signing.read]\nkey = \"\"\"\nab\\\n   cd\"\"\"\n", key: "abcd"},
		{name: "multi-line literal", toml: "[jwt.signing.read]\nkey = '''\nx\ny'''\n", key: "x\ny"},
		{name: "hash inside string", toml: "[jwt.signing.read]\nkey = \"a#b\" # comment\n", key: "a#b"},
		{name: "CRLF", toml: "[jwt.signing.read]\r\nkey = \"crlf\"\r\nexpires_after_seconds = 7\r\n", key: "crlf", expires: 7 * time.Second},
		{name: "integer with underscore", toml: "[jwt.signing.read]\nexpires_after_seconds = 1_000\n", expires: 1000 * time.Second},
		{name: "expiry as string", toml: "[jwt.signing.read]\nexpires_after_seconds = \"30\"\n", expires: 30 * time.Second},
		{name: "zero expiry", toml: "[jwt.signing.read]\nkey = \"k\"\nexpires_after_seconds = 0\n", key: "k"},
		{name: "negative expiry", toml: "[jwt.signing.read]\nkey = \"k\"\nexpires_after_seconds = -5\n", key: "k"},
		{name: "other value types are skipped", toml: `
title = "x"
enabled = true
ratio = 0.5
when = 1979-05-27 07:32:00Z
list = [ "a]", [1, 2], # a [comment]
  'b', """c
]""" ]
inline = { a = 1, b = "}" }
[[servers]]
name = "s1"
[jwt.signing.read]
key = "after-the-noise"
`, key: "after-the-noise"},
		{name: "unterminated string", toml: "[jwt.signing.read]\nkey = \"oops\n", wantErr: true},
		{name: "missing equals", toml: "[jwt.signing.read]\nkey \"v\"\n", wantErr: true},
		{name: "unclosed header", toml: "[jwt.signing.read\nkey = \"v\"\n", wantErr: true},
		{name: "junk after value", toml: "[jwt.signing.read]\nkey = \"v\" junk\n", wantErr: true},
		{name: "expiry not a number", toml: "[jwt.signing.read]\nexpires_after_seconds = \"soon\"\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSecurityTOML(t, tt.toml)
			cfg, err := LoadSecurityTOMLFrom([]string{dir})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error; got %+v", cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(cfg.ReadSigningKey) != tt.key || cfg.ReadExpiresAfter != tt.expires {
				t.Errorf("key %q, expires %v; want %q, %v", cfg.ReadSigningKey, cfg.ReadExpiresAfter, tt.key, tt.expires)
			}
			if want := filepath.Join(dir, "security.toml"); cfg.Path != want {
				t.Errorf("path %q, want %q", cfg.Path, want)
			}
		})
	}
}

// writeSecurityTOML writes a security.toml into a new directory.
func writeSecurityTOML(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "security.toml"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadSecurityTOMLSearchOrder(t *testing.T) {
	empty := t.TempDir()
	first := writeSecurityTOML(t, "[jwt.signing.read]\nkey = \"first\"\n")
	second := writeSecurityTOML(t, "[jwt.signing.read]\nkey = \"second\"\n")

	cfg, err := LoadSecurityTOMLFrom([]string{empty, first, second})
	if err != nil {
		t.Fatal(err)
	}
	// The first file found wins, as in viper.
	if string(cfg.ReadSigningKey) != "first" || cfg.Path != filepath.Join(first, "security.toml") {
		t.Errorf("got %+v, want the key of %s", cfg, first)
	}

	cfg, err = LoadSecurityTOMLFrom([]string{empty})
	if err != nil || cfg.Path != "" || cfg.ReadSigningKey != nil || cfg.ReadExpiresAfter != 0 {
		t.Errorf("without a file: %+v, %v; want read JWTs off", cfg, err)
	}
}

func TestLoadSecurityTOMLEnvironment(t *testing.T) {
	dir := writeSecurityTOML(t, "[jwt.signing.read]\nkey = \"file\"\nexpires_after_seconds = 10\n")
	t.Setenv("WEED_JWT_SIGNING_READ_KEY", "env")
	t.Setenv("WEED_JWT_SIGNING_READ_EXPIRES_AFTER_SECONDS", "20")
	cfg, err := LoadSecurityTOMLFrom([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.ReadSigningKey) != "env" || cfg.ReadExpiresAfter != 20*time.Second {
		t.Errorf("got %+v, want the environment to override the file", cfg)
	}
}

// The weedrdma secret ([rdma] key) is read with the rest of the file, and
// the environment may set it as it may any other key.
func TestLoadSecurityTOMLRDMAKey(t *testing.T) {
	dir := writeSecurityTOML(t, "[jwt.signing.read]\nkey = \"jwt\"\n\n[rdma]\nkey = \"0123456789abcdef-file\"\n")
	cfg, err := LoadSecurityTOMLFrom([]string{dir})
	if err != nil || string(cfg.RDMAKey) != "0123456789abcdef-file" || string(cfg.ReadSigningKey) != "jwt" {
		t.Fatalf("from the file: %+v, %v", cfg, err)
	}
	t.Setenv("WEED_RDMA_KEY", "0123456789abcdef-env")
	if cfg, err = LoadSecurityTOMLFrom([]string{dir}); err != nil || string(cfg.RDMAKey) != "0123456789abcdef-env" {
		t.Fatalf("the environment over the file: %+v, %v", cfg, err)
	}
	if cfg, err = LoadSecurityTOMLFrom([]string{t.TempDir()}); err != nil || string(cfg.RDMAKey) != "0123456789abcdef-env" || cfg.Path != "" {
		t.Fatalf("the environment alone: %+v, %v", cfg, err)
	}
}

func TestSecurityTOMLDirs(t *testing.T) {
	t.Setenv("HOME", "/home/someone")
	got := strings.Join(SecurityTOMLDirs(), " ")
	if want := ". /home/someone/.seaweedfs /usr/local/etc/seaweedfs /etc/seaweedfs"; got != want {
		t.Errorf("dirs %q, want %q", got, want)
	}
}

func TestLoadSecurityTOMLReadsWorkingDirectory(t *testing.T) {
	t.Chdir(writeSecurityTOML(t, scaffoldTOML))
	cfg, err := LoadSecurityTOML()
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.ReadSigningKey) != "readsecret123" || cfg.Path != "security.toml" {
		t.Errorf("got %+v", cfg)
	}
}
