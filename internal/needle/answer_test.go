package needle

import (
	"errors"
	"testing"
)

func TestContentGzip(t *testing.T) {
	for _, tc := range []struct {
		ce      string
		gzip    bool
		corrupt bool
	}{
		{"", false, false},
		{"identity", false, false},
		{"Identity", false, false},
		{"gzip", true, false},
		{"GZIP", true, false},
		{"br", false, true},
		{"zstd", false, true},
		{"gzip, br", false, true},
	} {
		gz, err := ContentGzip(tc.ce)
		if gz != tc.gzip || errors.Is(err, ErrCorrupt) != tc.corrupt || (err != nil) != tc.corrupt {
			t.Errorf("ContentGzip(%q) = %v, %v; want %v, corrupt %v", tc.ce, gz, err, tc.gzip, tc.corrupt)
		}
	}
}

func TestCheckStoredCRC(t *testing.T) {
	data := []byte("needle bytes")
	crc := CRC32C(0, data)
	etag := func(v uint32) string { return `"` + hex8(v) + `"` }
	for _, tc := range []struct {
		name    string
		etag    string
		checked bool
		corrupt bool
	}{
		{"no etag", "", false, false},
		{"not a crc", `"abc"`, false, false},
		{"unquoted", hex8(crc), false, false},
		{"raw crc", etag(crc), true, false},
		{"masked crc", etag((crc>>15 | crc<<17) + 0xa282ead8), true, false},
		{"other crc", etag(crc ^ 1), true, true},
	} {
		_, checked, err := CheckStoredCRC(tc.etag, crc, len(data))
		if checked != tc.checked || errors.Is(err, ErrCorrupt) != tc.corrupt || (err != nil) != tc.corrupt {
			t.Errorf("%s: CheckStoredCRC(%q) = %v, %v; want checked %v, corrupt %v", tc.name, tc.etag, checked, err, tc.checked, tc.corrupt)
		}
	}
}

func TestGetPathAndBearer(t *testing.T) {
	if got, want := GetPath("3,01637037d6"), "/3,01637037d6?readDeleted=true"; got != want {
		t.Errorf("GetPath = %q, want %q", got, want)
	}
	if got := Bearer(""); got != "" {
		t.Errorf(`Bearer("") = %q, want ""`, got)
	}
	if got, want := Bearer("a.b.c"), "Bearer a.b.c"; got != want {
		t.Errorf("Bearer = %q, want %q", got, want)
	}
}

func hex8(v uint32) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b)
}
