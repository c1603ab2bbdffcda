//go:build !(linux && cgo && rdma)

package rdma

import (
	"errors"
	"fmt"
)

// This build has no verbs engine (it needs Linux, cgo, libibverbs and the
// "rdma" build tag). Every entry point reports errors.ErrUnsupported, so a
// Client serves nothing (each read falls back to HTTP) and NewServer fails.

var errNoVerbs = fmt.Errorf("rdma: built without the verbs engine (build with -tags rdma on linux with cgo): %w",
	errors.ErrUnsupported)

// ListDevices reports errors.ErrUnsupported in this build.
func ListDevices() ([]DeviceInfo, error) { return nil, errNoVerbs }

type device struct{ info DeviceInfo }

func openDevice(string, int) (*device, error) { return nil, errNoVerbs }

func (d *device) close() {}

type arena struct {
	mem     []byte
	hugetlb bool
}

func newArena(int) (*arena, error) { return nil, errNoVerbs }

func (a *arena) free() {}

type endpoint struct{}

const maxChain = 16

func (d *device) newEndpoint(*arena, int, bool, string) (*endpoint, error) { return nil, errNoVerbs }

func (d *device) memoryWindows() bool { return false }

func (d *device) probeWindows() (bool, bool, error) { return false, false, errNoVerbs }

type window struct {
	addr uint64
	rkey uint32
}

func (e *endpoint) openWindow(int, int) (*window, error) { return nil, errNoVerbs }
func (e *endpoint) closeWindow(*window) error            { return nil }
func (e *endpoint) broken() (bool, error)                { return true, errNoVerbs }

func (e *endpoint) local() qpInfo        { return qpInfo{} }
func (e *endpoint) connect(qpInfo) error { return errNoVerbs }
func (e *endpoint) addr(int) uint64      { return 0 }
func (e *endpoint) maxMessage() int      { return 1 << 30 }
func (e *endpoint) postRead(uint64, int, int, uint64, uint32, int) (int, error) {
	return 0, errNoVerbs
}
func (e *endpoint) close() {}

func (e *endpoint) poll(<-chan struct{}, func(uint64, error)) error { return errNoVerbs }
