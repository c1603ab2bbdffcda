package fs

import (
	"os"
	"strings"
	"testing"
)

func TestProcsWithReaders(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{1, 1 + 2 + 1}, // go-fuse keeps at least 2 readers
		{2, 2 + 2 + 1},
		{8, 8 + 8 + 1},
		{16, 16 + 16 + 1},
		{64, 64 + 16 + 1}, // and at most 16
	} {
		if got := procsWithReaders(tc.n); got != tc.want {
			t.Errorf("procsWithReaders(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestFuseReaderRule ties fuseMinReaders and fuseMaxReaders to the go-fuse
// they were read from: another version may count its readers otherwise.
func TestFuseReaderRule(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	const read = "github.com/hanwen/go-fuse/v2 v2.12.1"
	if !strings.Contains(string(mod), read) {
		t.Fatalf("go.mod does not require %s: check the new go-fuse's readers (fuse/server.go minMaxReaders and maxMaxReaders, fuse/fusefd.go readRequest) against procs.go, then this test", read)
	}
}
