package fs

import (
	"fmt"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// MountOptions are the kernel-facing settings of a mount.
type MountOptions struct {
	// Name is what mount and df show as the mount's source (weed mount:
	// the filers, "+"-joined, then ":" and the filer path).
	Name               string
	AllowOther         bool
	DefaultPermissions bool
	// MaxBackground is the kernel's queue of asynchronous requests
	// (readahead); at least 64.
	MaxBackground int
	// Debug logs every FUSE request.
	Debug bool
	// KernelTTL is how long the kernel keeps replies that carry no
	// timeout of their own (negative look-ups).
	KernelTTL time.Duration
}

// Server is a mounted file system. Its methods are safe for concurrent use.
type Server struct {
	s   *fuse.Server
	dir string
}

// Mount mounts the tree at dir, read-only, and serves it until unmounted.
// rootEntry may be nil when the root is the filer's "/".
func (f *FS) Mount(dir string, rootEntry *filerpb.Entry, o MountOptions) (*Server, error) {
	ttl := o.KernelTTL
	// The kernel mounts read-only: there is no write path, and this way
	// every write fails with EROFS before it reaches us.
	flags := []string{"ro"}
	if o.DefaultPermissions {
		flags = append(flags, "default_permissions")
	}
	opts := &gofs.Options{
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &ttl,

		// FUSE's root is node 1, and stat shows it as inode 1, as weed
		// mount's does; go-fuse's default would show 0.
		RootStableAttr: &gofs.StableAttr{Ino: rootIno},

		MountOptions: fuse.MountOptions{
			AllowOther:    o.AllowOther,
			FsName:        o.Name,
			Name:          "seaweedfs", // type fuse.seaweedfs, as weed mount's
			MaxWrite:      1 << 20,     // 1 MiB requests: max_pages 256
			MaxBackground: max(o.MaxBackground, 64),
			DirectMount:   true,
			Debug:         o.Debug,
			DisableXAttrs: f.opts.DisableXAttr,
			// The kernel keeps a file's pages across opens (see
			// file.Open); with this it drops them itself when a file's
			// mtime or size changes, should the metadata watch miss it.
			ExtraCapabilities: fuse.CAP_AUTO_INVAL_DATA,
			// Replies come from Go memory, where splice saves nothing, and
			// a 1 MiB reply plus its header overflows the default pipe.
			DisableSplice: true,
			Options:       flags,
		},
	}
	// Whether OPEN answers ENOSYS (no_open) or a handle is the mount's
	// choice, made before the kernel's first OPEN, which may come as soon
	// as INIT is answered; a kernel that turns out to lack passthrough
	// gets no_open from its next OPEN on.
	f.passthrough.Store(f.opts.Passthrough && passthroughAvailable(true))
	s, err := gofs.Mount(dir, f.Root(rootEntry), opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	readerProcs()
	if f.passthrough.Load() && !passthroughAvailable(s.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0) {
		f.passthrough.Store(false)
	}
	return &Server{s: s, dir: dir}, nil
}

// Wait returns once the file system is unmounted.
func (s *Server) Wait() { s.s.Wait() }

// Unmount asks the kernel to detach the mount, retrying a busy mount for a
// couple of seconds and finally detaching it lazily, so that a stop never
// leaves a dead mount behind.
func (s *Server) Unmount() error {
	var err error
	for i := 0; i < 10; i++ {
		if err = s.s.Unmount(); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lerr := syscall.Unmount(s.dir, syscall.MNT_DETACH); lerr != nil {
		return fmt.Errorf("unmount %s: %w (lazy unmount: %v)", s.dir, err, lerr)
	}
	return nil
}
