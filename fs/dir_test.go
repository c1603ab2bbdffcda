package fs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// pagedMeta lists n entries named e0000…, holding every page after the
// first until release is closed.
type pagedMeta struct {
	Meta
	n       int
	release chan struct{}
}

func (m *pagedMeta) ListPage(ctx context.Context, dir, after string, limit int) ([]*filerpb.Entry, error) {
	from := 0
	if after != "" {
		fmt.Sscanf(after, "e%04d", &from)
		from++
		select {
		case <-m.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var page []*filerpb.Entry
	for i := from; i < m.n && len(page) < limit; i++ {
		page = append(page, &filerpb.Entry{Name: fmt.Sprintf("e%04d", i), Attributes: &filerpb.FuseAttributes{FileMode: 0o644}})
	}
	return page, nil
}

// TestReaddirentOutlivesInterrupt interrupts a readdir while the next page
// is on its way: the page must still come, in order, with no error, since
// go-fuse would turn an error after some entries into lost entries.
func TestReaddirentOutlivesInterrupt(t *testing.T) {
	meta := &pagedMeta{n: dirPage + 10, release: make(chan struct{})}
	fsys := New(meta, nil, nil, Options{})
	defer fsys.Close()
	d := &dir{}
	d.init(fsys, "/d", "/d", &filerpb.Entry{Name: "d", IsDirectory: true})
	s := newDirStream(d)
	defer s.Releasedir(context.Background(), 0)

	ctx := context.Background()
	for _, want := range []string{".", ".."} {
		if e, errno := s.Readdirent(ctx); errno != 0 || e == nil || e.Name != want {
			t.Fatalf("want %q first: got %v, %v", want, e, errno)
		}
	}
	for i := 0; i < dirPage; i++ {
		if e, errno := s.Readdirent(ctx); errno != 0 || e == nil {
			t.Fatalf("entry %d: %v, %v", i, e, errno)
		}
	}
	interrupted, cancel := context.WithCancel(ctx)
	cancel()
	time.AfterFunc(50*time.Millisecond, func() { close(meta.release) })
	for i := dirPage; i < meta.n; i++ {
		e, errno := s.Readdirent(interrupted)
		if errno != 0 || e == nil || e.Name != fmt.Sprintf("e%04d", i) {
			t.Fatalf("entry %d after an interrupt: got %v, %v", i, e, errno)
		}
	}
	if e, errno := s.Readdirent(ctx); e != nil || errno != 0 {
		t.Errorf("after the last entry: got %v, %v, want the end", e, errno)
	}
}
