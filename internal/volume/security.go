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
	"unicode/utf8"
)

// The security.toml keys that govern read JWTs. weed reads them through
// viper (weed/util/http/http_global_client_util.go, loadJwtConfig).
const (
	tomlReadKey     = "jwt.signing.read.key"
	tomlReadExpires = "jwt.signing.read.expires_after_seconds"
)

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
// "weed" (weed/util/config.go, GetViper), a non-empty WEED_JWT_SIGNING_READ_KEY
// or WEED_JWT_SIGNING_READ_EXPIRES_AFTER_SECONDS overrides the file.
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
	if v := os.Getenv("WEED_JWT_SIGNING_READ_KEY"); v != "" {
		values[tomlReadKey] = v
	}
	if v := os.Getenv("WEED_JWT_SIGNING_READ_EXPIRES_AFTER_SECONDS"); v != "" {
		values[tomlReadExpires] = v
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

// setFrom takes the two keys from parsed values, converting types the way
// viper's GetString and GetInt do for the forms a person would write.
func (cfg *SecurityConfig) setFrom(values map[string]any) error {
	switch v := values[tomlReadKey].(type) {
	case string:
		cfg.ReadSigningKey = []byte(v)
	case int64:
		cfg.ReadSigningKey = strconv.AppendInt(nil, v, 10)
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
	return nil
}

// parseTOML reads the subset of TOML that security.toml uses: tables, dotted
// and quoted keys, strings of all four kinds, and integers. It maps each full
// dotted key to a string or an int64. Values of other types (booleans,
// floats, dates, arrays, inline tables) are skipped, not rejected, so that
// the rest of a real security.toml never stops the keys this package needs
// from being read. Malformed syntax is an error naming the line.
func parseTOML(src string) (map[string]any, error) {
	p := &tomlParser{src: src, line: 1, out: map[string]any{}}
	if err := p.parse(); err != nil {
		return nil, fmt.Errorf("line %d: %w", p.line, err)
	}
	return p.out, nil
}

type tomlParser struct {
	src   string
	pos   int
	line  int
	table string
	out   map[string]any
}

func (p *tomlParser) eof() bool { return p.pos >= len(p.src) }

func (p *tomlParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func (p *tomlParser) parse() error {
	for {
		p.skipBlank()
		if p.eof() {
			return nil
		}
		var err error
		if p.peek() == '[' {
			err = p.header()
		} else {
			err = p.keyValue()
		}
		if err != nil {
			return err
		}
		if err := p.endOfLine(); err != nil {
			return err
		}
	}
}

// skipBlank skips whitespace, newlines and comments between statements.
func (p *tomlParser) skipBlank() {
	for !p.eof() {
		switch c := p.peek(); c {
		case ' ', '\t', '\r':
			p.pos++
		case '\n':
			p.pos++
			p.line++
		case '#':
			p.skipComment()
		default:
			return
		}
	}
}

func (p *tomlParser) skipSpace() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.pos++
	}
}

func (p *tomlParser) skipComment() {
	for !p.eof() && p.peek() != '\n' {
		p.pos++
	}
}

// endOfLine requires that only spaces and a comment follow a statement.
func (p *tomlParser) endOfLine() error {
	p.skipSpace()
	if p.peek() == '#' {
		p.skipComment()
	}
	if p.peek() == '\r' {
		p.pos++
	}
	switch {
	case p.eof():
		return nil
	case p.peek() == '\n':
		p.pos++
		p.line++
		return nil
	}
	return fmt.Errorf("unexpected %q after statement", p.peek())
}

// header reads "[a.b]" or "[[a.b]]". Keys under an array of tables are
// recorded under the plain table name: nothing this package needs lives in
// one.
func (p *tomlParser) header() error {
	p.pos++
	double := p.peek() == '['
	if double {
		p.pos++
	}
	p.skipSpace()
	name, err := p.keyPath()
	if err != nil {
		return err
	}
	closing := "]"
	if double {
		closing = "]]"
	}
	if !strings.HasPrefix(p.src[p.pos:], closing) {
		return fmt.Errorf("table header %q not closed by %q", name, closing)
	}
	p.pos += len(closing)
	p.table = name
	return nil
}

func (p *tomlParser) keyValue() error {
	key, err := p.keyPath()
	if err != nil {
		return err
	}
	if p.peek() != '=' {
		return fmt.Errorf("key %q: want '='", key)
	}
	p.pos++
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return fmt.Errorf("key %q: %w", key, err)
	}
	if p.table != "" {
		key = p.table + "." + key
	}
	p.out[key] = v
	return nil
}

// keyPath reads dotted key segments, bare or quoted, and any spaces around
// the dots, and returns them joined by ".".
func (p *tomlParser) keyPath() (string, error) {
	var parts []string
	for {
		p.skipSpace()
		var part string
		var err error
		switch c := p.peek(); {
		case c == '"':
			part, err = p.basicString()
		case c == '\'':
			part, err = p.literalString()
		case isBareKeyByte(c):
			start := p.pos
			for !p.eof() && isBareKeyByte(p.peek()) {
				p.pos++
			}
			part = p.src[start:p.pos]
		default:
			return "", fmt.Errorf("want a key, found %q", c)
		}
		if err != nil {
			return "", err
		}
		parts = append(parts, part)
		p.skipSpace()
		if p.peek() != '.' {
			return strings.Join(parts, "."), nil
		}
		p.pos++
	}
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value reads one value. Strings give string, integers int64; any other
// value is skipped and gives nil.
func (p *tomlParser) value() (any, error) {
	rest := p.src[p.pos:]
	switch {
	case strings.HasPrefix(rest, `"""`):
		return p.multiLineString(`"""`)
	case strings.HasPrefix(rest, `'''`):
		return p.multiLineString(`'''`)
	case strings.HasPrefix(rest, `"`):
		return p.basicString()
	case strings.HasPrefix(rest, `'`):
		return p.literalString()
	case strings.HasPrefix(rest, "[") || strings.HasPrefix(rest, "{"):
		return nil, p.skipBracketed()
	}
	// A bare scalar runs to the end of the line or a comment; dates may
	// contain a space, so the whole run is taken.
	end := strings.IndexAny(rest, "#\n")
	if end < 0 {
		end = len(rest)
	}
	token := strings.TrimSpace(rest[:end])
	if token == "" {
		return nil, errors.New("missing value")
	}
	p.pos += end
	if n, err := strconv.ParseInt(token, 0, 64); err == nil {
		return n, nil
	}
	return nil, nil
}

func (p *tomlParser) basicString() (string, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for {
		if p.eof() || p.peek() == '\n' {
			return "", errors.New("unterminated string")
		}
		c := p.peek()
		switch c {
		case '"':
			p.pos++
			return b.String(), nil
		case '\\':
			if err := p.escape(&b); err != nil {
				return "", err
			}
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

func (p *tomlParser) literalString() (string, error) {
	p.pos++ // opening quote
	end := strings.IndexAny(p.src[p.pos:], "'\n")
	if end < 0 || p.src[p.pos+end] != '\'' {
		return "", errors.New("unterminated literal string")
	}
	s := p.src[p.pos : p.pos+end]
	p.pos += end + 1
	return s, nil
}

// multiLineString reads a multi-line string, basic (delim is three double
// quotes) or literal (three single quotes). A newline right after the
// opening delimiter is dropped; in the basic kind, escapes apply and a
// backslash at the end of a line joins it to the next non-blank text.
func (p *tomlParser) multiLineString(delim string) (string, error) {
	p.pos += len(delim)
	if strings.HasPrefix(p.src[p.pos:], "\r\n") {
		p.pos += 2
		p.line++
	} else if p.peek() == '\n' {
		p.pos++
		p.line++
	}
	var b strings.Builder
	for {
		if p.eof() {
			return "", errors.New("unterminated multi-line string")
		}
		if strings.HasPrefix(p.src[p.pos:], delim) {
			// Up to two more quotes just before the closing delimiter
			// belong to the content.
			extra := 0
			for extra < 2 && strings.HasPrefix(p.src[p.pos+1+extra:], delim) {
				extra++
			}
			b.WriteString(p.src[p.pos : p.pos+extra])
			p.pos += extra + len(delim)
			return b.String(), nil
		}
		c := p.peek()
		if c == '\\' && delim == `"""` {
			if p.lineEndingBackslash() {
				continue
			}
			if err := p.escape(&b); err != nil {
				return "", err
			}
			continue
		}
		if c == '\n' {
			p.line++
		}
		b.WriteByte(c)
		p.pos++
	}
}

// lineEndingBackslash consumes a backslash that ends a line, with the
// whitespace and newlines after it, and reports whether it did.
func (p *tomlParser) lineEndingBackslash() bool {
	i := p.pos + 1
	for i < len(p.src) && (p.src[i] == ' ' || p.src[i] == '\t' || p.src[i] == '\r') {
		i++
	}
	if i >= len(p.src) || p.src[i] != '\n' {
		return false
	}
	for i < len(p.src) && strings.IndexByte(" \t\r\n", p.src[i]) >= 0 {
		if p.src[i] == '\n' {
			p.line++
		}
		i++
	}
	p.pos = i
	return true
}

var (
	tomlSimpleEscapes = map[byte]byte{'b': '\b', 't': '\t', 'n': '\n', 'f': '\f', 'r': '\r', 'e': 0x1b, '"': '"', '\\': '\\'}
	// tomlHexEscapes gives the number of hex digits after \x, \u and \U.
	tomlHexEscapes = map[byte]int{'x': 2, 'u': 4, 'U': 8}
)

// escape decodes one backslash escape of a basic string into b.
func (p *tomlParser) escape(b *strings.Builder) error {
	if p.pos+1 >= len(p.src) {
		return errors.New("unterminated escape")
	}
	c := p.src[p.pos+1]
	p.pos += 2
	if r, ok := tomlSimpleEscapes[c]; ok {
		b.WriteByte(r)
		return nil
	}
	digits := tomlHexEscapes[c]
	if digits == 0 {
		return fmt.Errorf("unknown escape \\%c", c)
	}
	if p.pos+digits > len(p.src) {
		return fmt.Errorf("short escape \\%c", c)
	}
	n, err := strconv.ParseUint(p.src[p.pos:p.pos+digits], 16, 32)
	if err != nil || !utf8.ValidRune(rune(n)) {
		return fmt.Errorf("bad escape \\%c%s", c, p.src[p.pos:p.pos+digits])
	}
	p.pos += digits
	b.WriteRune(rune(n))
	return nil
}

// skipBracketed skips an array or inline table, which may span lines and
// nest, and may hold strings and comments with brackets in them.
func (p *tomlParser) skipBracketed() error {
	depth := 0
	for !p.eof() {
		rest := p.src[p.pos:]
		var err error
		switch c := p.peek(); {
		case strings.HasPrefix(rest, `"""`):
			_, err = p.multiLineString(`"""`)
		case strings.HasPrefix(rest, `'''`):
			_, err = p.multiLineString(`'''`)
		case c == '"':
			_, err = p.basicString()
		case c == '\'':
			_, err = p.literalString()
		case c == '#':
			p.skipComment()
		case c == '\n':
			p.line++
			p.pos++
		case c == '[' || c == '{':
			depth++
			p.pos++
		case c == ']' || c == '}':
			depth--
			p.pos++
			if depth == 0 {
				return nil
			}
		default:
			p.pos++
		}
		if err != nil {
			return err
		}
	}
	return errors.New("unterminated array or inline table")
}
