package needle

import "testing"

func TestParseFileID(t *testing.T) {
	// The first three ids and their fields are as a weed 4.48 filer listed
	// them.
	tests := []struct {
		fid    string
		vid    uint32
		key    uint64
		cookie uint32
	}{
		{"6,0246cd8abf", 6, 2, 1187875519},
		{"5,01f55e6e60", 5, 1, 4116606560},
		{"7,05b1022989", 7, 5, 2969708937},
		{"3,01637037d6", 3, 0x01, 0x637037d6},
		{"4294967295,ffffffffffffffffffffffff", 4294967295, 1<<64 - 1, 1<<32 - 1},
		{"12,1234567890abcdef00000001", 12, 0x1234567890abcdef, 1},
		{"9,0100000000deadbeef", 9, 0x0100000000, 0xdeadbeef},
	}
	for _, tt := range tests {
		vid, key, cookie, err := ParseFileID(tt.fid)
		if err != nil {
			t.Errorf("ParseFileID(%q): %v", tt.fid, err)
			continue
		}
		if vid != tt.vid || key != tt.key || cookie != tt.cookie {
			t.Errorf("ParseFileID(%q) = %d, %#x, %#x; want %d, %#x, %#x", tt.fid, vid, key, cookie, tt.vid, tt.key, tt.cookie)
		}
		if got := FormatFileID(vid, key, cookie); got != tt.fid {
			t.Errorf("FormatFileID(%d, %#x, %#x) = %q, want %q", vid, key, cookie, got, tt.fid)
		}
	}
}

func TestParseFileIDErrors(t *testing.T) {
	for _, fid := range []string{
		"",
		"6",
		",0246cd8abf",
		"x,0246cd8abf",
		"-1,0246cd8abf",
		"4294967296,0246cd8abf", // volume id over 32 bits
		"6,46cd8abf",            // a cookie and no key
		"6,0246cd8abz",
		"6,zz46cd8abf",
		"6,1234567890abcdef0000000011", // 26 digits
	} {
		if _, _, _, err := ParseFileID(fid); err == nil {
			t.Errorf("ParseFileID(%q) succeeded", fid)
		}
	}
}

func TestFormatFileIDDropsWholeZeroBytes(t *testing.T) {
	// weed drops leading zero bytes, not nibbles: key 0x123 is "0123".
	for _, tt := range []struct {
		key  uint64
		want string
	}{
		{0x123, "1,012300000001"},
		{0xab, "1,ab00000001"},
		{0, "1,00000001"}, // the cookie alone, which weed cannot parse either
	} {
		if got := FormatFileID(1, tt.key, 1); got != tt.want {
			t.Errorf("FormatFileID(1, %#x, 1) = %q, want %q", tt.key, got, tt.want)
		}
	}
	if _, _, _, err := ParseFileID(FormatFileID(1, 0, 1)); err == nil {
		t.Error("key 0 parsed")
	}
}
