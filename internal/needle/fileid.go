package needle

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A file id reads "vid,keycookie": the volume id in decimal, a comma, then
// the needle key in hex followed by the cookie as exactly 8 hex digits
// (weed/storage/needle/file_id.go and needle.ParseNeedleIdCookie). The key
// part is the key's big-endian bytes with leading zero bytes dropped, so it
// is 2 to 16 hex digits, and the whole key+cookie part is 9 to 24 digits.
const (
	cookieHexLen = 8
	maxKeyHexLen = 16
)

// ParseFileID splits a "vid,keycookie" file id such as "3,01637037d6" into
// its volume id, needle key and cookie.
func ParseFileID(s string) (vid uint32, key uint64, cookie uint32, err error) {
	comma := strings.IndexByte(s, ',')
	if comma <= 0 {
		return 0, 0, 0, fmt.Errorf("parse file id %q: want \"vid,keycookie\"", s)
	}
	v, err := strconv.ParseUint(s[:comma], 10, 32)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("parse file id %q: volume id: %w", s, err)
	}
	kc := s[comma+1:]
	if len(kc) <= cookieHexLen {
		return 0, 0, 0, fmt.Errorf("parse file id %q: key and cookie too short", s)
	}
	if len(kc) > maxKeyHexLen+cookieHexLen {
		return 0, 0, 0, fmt.Errorf("parse file id %q: key and cookie too long", s)
	}
	split := len(kc) - cookieHexLen
	k, err := strconv.ParseUint(kc[:split], 16, 64)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("parse file id %q: key: %w", s, errors.Unwrap(err))
	}
	c, err := strconv.ParseUint(kc[split:], 16, 32)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("parse file id %q: cookie: %w", s, errors.Unwrap(err))
	}
	return uint32(v), k, uint32(c), nil
}

// FormatFileID is the inverse of ParseFileID and spells an id exactly as
// weed does: the key's leading zero bytes (not nibbles) are dropped, so key
// 0x1637037 gives "01637037". As in weed, key 0 formats to the cookie alone,
// which no parser accepts; weed never assigns key 0.
func FormatFileID(vid uint32, key uint64, cookie uint32) string {
	const hexDigits = "0123456789abcdef"
	var buf [10 + 1 + maxKeyHexLen + cookieHexLen]byte
	b := strconv.AppendUint(buf[:0], uint64(vid), 10)
	b = append(b, ',')
	skipping := true
	for shift := 56; shift >= 0; shift -= 8 {
		octet := byte(key >> shift)
		if skipping && octet == 0 {
			continue
		}
		skipping = false
		b = append(b, hexDigits[octet>>4], hexDigits[octet&0xf])
	}
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[(cookie>>shift)&0xf])
	}
	return string(b)
}
