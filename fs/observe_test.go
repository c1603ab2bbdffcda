package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

type seenOp struct {
	op    string
	bytes int
	errno syscall.Errno
}

type recorder struct {
	mu  sync.Mutex
	ops []seenOp
}

func (r *recorder) ObserveOp(op string, took time.Duration, bytes int, errno syscall.Errno) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, seenOp{op, bytes, errno})
}

// oneFileMeta knows one entry, /f, and answers statfs.
type oneFileMeta struct{ Meta }

func (oneFileMeta) LookupEntry(ctx context.Context, dir, name string) (*filerpb.Entry, error) {
	if dir == "/" && name == "f" {
		return &filerpb.Entry{Name: "f", Attributes: &filerpb.FuseAttributes{FileMode: 0o644}}, nil
	}
	return nil, fmt.Errorf("%s/%s: %w", dir, name, iofs.ErrNotExist)
}

func (oneFileMeta) Statistics(ctx context.Context) (*filerpb.StatisticsResponse, error) {
	return &filerpb.StatisticsResponse{TotalSize: 1 << 30}, nil
}

// TestOpObserver checks that the timed node methods report each operation
// once, with the errno they answered.
func TestOpObserver(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		do   func(d *dir) syscall.Errno
		want seenOp
	}{
		{"getattr", func(d *dir) syscall.Errno { return d.Getattr(ctx, nil, &fuse.AttrOut{}) }, seenOp{OpGetattr, 0, 0}},
		{"statfs", func(d *dir) syscall.Errno { return d.Statfs(ctx, &fuse.StatfsOut{}) }, seenOp{OpStatfs, 0, 0}},
		{"lookup missing", func(d *dir) syscall.Errno {
			_, errno := d.Lookup(ctx, "nope", &fuse.EntryOut{})
			return errno
		}, seenOp{OpLookup, 0, syscall.ENOENT}},
		{"getxattr", func(d *dir) syscall.Errno {
			_, errno := d.Getxattr(ctx, "user.x", nil)
			return errno
		}, seenOp{OpGetxattr, 0, syscall.ENODATA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			fsys := New(oneFileMeta{}, nil, nil, Options{Ops: rec})
			defer fsys.Close()
			d := &dir{}
			d.init(fsys, "/", "/", nil)
			d.entry = &filerpb.Entry{Name: "", IsDirectory: true, Attributes: &filerpb.FuseAttributes{FileMode: 0o755}}
			errno := tt.do(d)
			assert.Equal(t, tt.want.errno, errno)
			require.Len(t, rec.ops, 1)
			assert.Equal(t, tt.want, rec.ops[0])
		})
	}
}
