package needle

import (
	"bytes"
	"compress/gzip"
	"testing"
)

// FuzzParseFileID: any string parses or fails, never panics, and an id
// that parses names the same needle once formatted again.
func FuzzParseFileID(f *testing.F) {
	for _, s := range []string{"3,01637037d6", "1,ff00000000000000aabbccdd", ",", "3,", "4294967296,0100000000", "3,+1637037d6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vid, key, cookie, err := ParseFileID(s)
		if err != nil || key == 0 {
			return
		}
		v2, k2, c2, err := ParseFileID(FormatFileID(vid, key, cookie))
		if err != nil || v2 != vid || k2 != key || c2 != cookie {
			t.Fatalf("%q: (%d, %x, %x) formats to %q, which parses to (%d, %x, %x), %v",
				s, vid, key, cookie, FormatFileID(vid, key, cookie), v2, k2, c2, err)
		}
	})
}

// FuzzDecodeVerified feeds a volume server's answer, as any bytes, through
// the decoding every fetcher applies: garbage is an error (ErrCorrupt for
// a bad copy), never a panic, and what decodes is at least the chunk's
// size, however large the size the metadata claims.
func FuzzDecodeVerified(f *testing.F) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(bytes.Repeat([]byte("weedfuse "), 100))
	w.Close()
	f.Add([]byte("plain needle bytes"), int64(18), false, false, uint8(0), true, false)
	f.Add(gz.Bytes(), int64(900), true, true, uint8(0), true, false)
	f.Add(gz.Bytes(), int64(900), false, true, uint8(0), false, false)
	f.Add(make([]byte, 60), int64(20), false, false, uint8(32), true, true)
	f.Fuzz(func(t *testing.T, stored []byte, size int64, gzipEncoded, compressed bool, keyLen uint8, crcChecked, verifyETag bool) {
		c := Chunk{FileID: "3,01637037d6", Size: size, Compressed: compressed, ETag: "QCnwRUJN/mB0Ti6LoQGzhQ=="}
		if keyLen > 0 {
			c.CipherKey = bytes.Repeat([]byte{7}, int(keyLen%40))
		}
		if c.CheckSize() != nil || c.CheckCipherKey() != nil {
			return // refused before any fetch
		}
		logical, err := DecodeVerified(c, stored, gzipEncoded, crcChecked, verifyETag)
		if err == nil && int64(len(logical)) < c.Size {
			t.Fatalf("decoded %d bytes for a chunk of %d", len(logical), c.Size)
		}
	})
}
