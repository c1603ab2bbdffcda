//go:build !(linux && cgo && rdma)

package rdma

import (
	"context"
	"errors"
	"testing"

	"github.com/weedfuse/weedfuse/internal/needle"
)

func TestStubUnsupported(t *testing.T) {
	if _, err := ListDevices(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ListDevices: %v", err)
	}
	if _, err := NewServer(ServerOptions{VolumeServer: "127.0.0.1:8080"}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("NewServer: %v", err)
	}
	sc, _ := ParseSidecars(":18515")
	c, err := NewClient(ClientOptions{Sidecars: sc, Locator: staticLocator{"127.0.0.1:8080"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !errors.Is(c.Unavailable(), errors.ErrUnsupported) {
		t.Errorf("Unavailable: %v", c.Unavailable())
	}
	_, err = readChunk(c, context.Background(), needle.Chunk{FileID: "3,01637037d6", Size: 10}, 0, make([]byte, 10))
	if !errors.Is(err, needle.ErrNotServed) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Fetch: %v", err)
	}
	if st := c.Stats(); st.Fallbacks["unsupported"] != 1 || st.Reads != 0 {
		t.Errorf("stats: %+v", st)
	}
}
