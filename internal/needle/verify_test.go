package needle

import (
	"bytes"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/weedfuse/weedfuse/internal/needle/needletest"
)

func TestCRCSumMatches(t *testing.T) {
	for _, data := range [][]byte{[]byte("123456789"), nil, needletest.TextBytes(5000)} {
		c := crc32.Checksum(data, castagnoli)
		for _, sum := range []uint32{c, (c>>15 | c<<17) + 0xa282ead8, c ^ 1, 0} {
			if got, want := CRCSumMatches(c, sum), CRCMatches(data, sum); got != want {
				t.Errorf("CRCSumMatches(%08x, %08x) = %v, CRCMatches says %v", c, sum, got, want)
			}
		}
	}
}

func TestDecodeVerified(t *testing.T) {
	text := needletest.TextBytes(100_000)
	gz := needletest.Gzip(text)
	good := needletest.MD5ETag(text)
	bad := needletest.MD5ETag([]byte("something else"))
	const fid = "3,01637037d6"
	for _, tt := range []struct {
		name                               string
		chunk                              Chunk
		stored                             []byte
		gzipEncoded, crcChecked, verifyTag bool
		want                               []byte
		corrupt                            bool
	}{
		{name: "plain", chunk: Chunk{Size: 100_000}, stored: text, crcChecked: true, want: text},
		// The volume server gzipped the upload itself: the chunk does not
		// say so, the answer's Content-Encoding does.
		{name: "gzip-encoded, chunk not compressed", chunk: Chunk{Size: 100_000}, stored: gz, gzipEncoded: true, crcChecked: true, want: text},
		{name: "gzip bytes, neither says so", chunk: Chunk{Size: 10}, stored: gz, crcChecked: true, want: gz},
		// A truncated chunk: all the needle's logical bytes come back.
		{name: "longer needle", chunk: Chunk{Size: 10, Compressed: true, ETag: good}, stored: gz, want: text},
		{name: "shorter needle", chunk: Chunk{Size: 100_001}, stored: text, crcChecked: true, corrupt: true},
		// The e_tag is checked exactly when the CRC was not, or when asked.
		{name: "bad etag, crc checked", chunk: Chunk{Size: 100_000, ETag: bad}, stored: text, crcChecked: true, want: text},
		{name: "bad etag, no crc", chunk: Chunk{Size: 100_000, ETag: bad}, stored: text, corrupt: true},
		{name: "bad etag, verifyETag", chunk: Chunk{Size: 100_000, ETag: bad}, stored: text, crcChecked: true, verifyTag: true, corrupt: true},
		{name: "good etag, no crc", chunk: Chunk{Size: 100_000, ETag: good}, stored: text, want: text},
		{name: "broken gzip", chunk: Chunk{Size: 1, Compressed: true}, stored: gz[:len(gz)-9], crcChecked: true, corrupt: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.chunk.FileID = fid
			got, err := DecodeVerified(tt.chunk, tt.stored, tt.gzipEncoded, tt.crcChecked, tt.verifyTag)
			if tt.corrupt {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("err %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %d bytes (want %d), err %v", len(got), len(tt.want), err)
			}
		})
	}
}
