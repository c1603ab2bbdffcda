package needle

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"strconv"
	"testing"
)

// Test fixtures. internal/volume's fake_test.go has the same ones: a
// package's test files cannot be imported by another's.

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// textBytes returns n bytes that compress well.
func textBytes(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString("line " + strconv.Itoa(i) + " of some compressible text\n")
	}
	return b.Bytes()[:n]
}

func gzipForTest(data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}
