package fs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle/needletest"
	"github.com/weedfuse/weedfuse/internal/volume"
)

type fixedLocator struct{ addr string }

func (l fixedLocator) Locations(context.Context, uint32) ([]string, error) {
	return []string{l.addr}, nil
}
func (fixedLocator) Invalidate(uint32) {}

// TestTrickledManifestEndsAndFreesWaitingReaders: a read of a file whose
// chunk list holds a manifest builds its chunk map (file.chunkMap) under
// the FUSE request's context, which has no deadline. A volume server that
// sends the manifest blob a byte every 200 ms (below StallTimeout by the
// byte, above connPool's 100 ms poll) would hold the read for as long as
// the blob lasts (1 MiB: 58 h) were a byte progress; the volume reader's
// stall rule (64 KiB) cuts it off instead. Every other reader of the file
// waits for the build meanwhile, and leaves as soon as its own request is
// interrupted (its context cancelled).
func TestTrickledManifestEndsAndFreesWaitingReaders(t *testing.T) {
	srv := needletest.NewTrickler(t, 1<<20, 200*time.Millisecond)
	r := volume.New(fixedLocator{srv.Addr()}, volume.Options{StallTimeout: 500 * time.Millisecond, ReadRetryTime: time.Millisecond})
	defer r.Close()
	fsys := New(newFilerMap(), forgetful{}, r, Options{})
	defer fsys.Close()

	e := &filerpb.Entry{Name: "f", Attributes: &filerpb.FuseAttributes{FileSize: 100},
		Chunks: []*filerpb.FileChunk{{FileId: "3,01637037d6", Size: 100, IsChunkManifest: true, ModifiedTsNs: 1}}}
	fl := &file{}
	fl.init(fsys, "/f", "/f", e)

	first := make(chan struct{})
	go func() {
		defer close(first)
		fl.chunkMap(context.Background(), e)
	}()
	time.Sleep(100 * time.Millisecond)
	// A second reader whose request the kernel has interrupted already.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	second := make(chan struct{})
	var secondErr error
	go func() {
		defer close(second)
		_, _, secondErr = fl.chunkMap(cancelled, e)
	}()

	select {
	case <-first:
		t.Log("first reader returned")
	case <-time.After(8 * time.Second):
		t.Error("the first read is still building its chunk map after 8s (StallTimeout 500ms, ReadRetryTime 1ms): nothing bounds a manifest fetch that trickles")
	}
	select {
	case <-second:
		if !errors.Is(secondErr, context.Canceled) {
			t.Errorf("the interrupted reader got %v, want its context's error", secondErr)
		}
	case <-time.After(100 * time.Millisecond):
		t.Error("a reader with a cancelled context is still waiting for mapMu")
	}
	srv.Close()
	<-first
	<-second
}
