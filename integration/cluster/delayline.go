package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// delayLine joins two links, inner (towards a namespace) and outer (towards
// the bridge), by copying every Ethernet frame between them through packet
// sockets, holding the frames bound for inner for the current delay: what
// `tc qdisc add dev <outer's peer> root netem delay d` does, for a kernel
// without netem. Frames are copied whole, with their virtio-net header
// (PACKET_VNET_HDR), so that segmentation offload and partial checksums
// pass through as they would between the veths of a bridge.
type delayLine struct {
	inner, outer *packetLink
	delay        atomic.Int64 // nanoseconds, applied to frames bound for inner
	wg           sync.WaitGroup
}

func newDelayLine(inner, outer string) (*delayLine, error) {
	in, err := openPacketLink(inner)
	if err != nil {
		return nil, err
	}
	out, err := openPacketLink(outer)
	if err != nil {
		in.close()
		return nil, err
	}
	d := &delayLine{inner: in, outer: out}
	d.wg.Add(2)
	go d.pump(out, in, &d.delay)
	go d.pump(in, out, nil)
	return d, nil
}

func (d *delayLine) setDelay(v time.Duration) { d.delay.Store(int64(v)) }

func (d *delayLine) close() {
	d.inner.close()
	d.outer.close()
	d.wg.Wait()
}

type heldFrame struct {
	due   time.Time
	frame []byte
}

// pump copies frames from src to dst, each held until its arrival plus
// *delay (nil: not held). The queue is FIFO: a constant delay keeps the
// order, and a lowered one lets later frames wait behind earlier ones, as
// netem's queue does.
func (d *delayLine) pump(src, dst *packetLink, delay *atomic.Int64) {
	defer d.wg.Done()
	queue := make(chan heldFrame, 1<<16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for f := range queue {
			if wait := time.Until(f.due); wait > 0 {
				time.Sleep(wait)
			}
			// A frame that cannot be sent is lost, as on a congested
			// link; TCP sends it again.
			_ = dst.write(f.frame)
		}
	})
	buf := make([]byte, 256<<10)
	for {
		n, err := src.read(buf)
		if err != nil && src.closed.Load() {
			break
		}
		if err != nil {
			// A link going down (ENETDOWN) is not the end of the line.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if n == 0 {
			continue
		}
		f := heldFrame{due: time.Now(), frame: append([]byte(nil), buf[:n]...)}
		if delay != nil {
			f.due = f.due.Add(time.Duration(delay.Load()))
		}
		queue <- f
	}
	close(queue)
	wg.Wait()
}

// packetLink is a packet socket bound to one link, read and written through
// the runtime's poller, so that close ends a blocked read.
type packetLink struct {
	name   string
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openPacketLink(name string) (*packetLink, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("delay line: %w", err)
	}
	// Protocol 0 receives nothing until bind names the link: a socket
	// opened for ETH_P_ALL would first queue frames of every link.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("delay line: packet socket for %s: %w", name, err)
	}
	fail := func(what string, err error) (*packetLink, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("delay line: %s on %s: %w", what, name, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail("PACKET_VNET_HDR", err)
	}
	// Room for a window's worth of frames while the pump is descheduled.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 32<<20)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		return fail("bind", err)
	}
	f := os.NewFile(uintptr(fd), "packet:"+name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("delay line: %s: %w", name, err)
	}
	return &packetLink{name: name, f: f, rc: rc}, nil
}

// read returns the next frame that arrived on the link (header included),
// or 0 for one to skip: one the link sent, which is ours.
func (p *packetLink) read(buf []byte) (int, error) {
	var n int
	var from unix.Sockaddr
	var rerr error
	err := p.rc.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, fmt.Errorf("delay line: read %s: %w", p.name, rerr)
	}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
		return 0, nil
	}
	return n, nil
}

func (p *packetLink) write(frame []byte) error {
	var werr error
	err := p.rc.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), frame)
		return !errors.Is(werr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	return werr
}

func (p *packetLink) close() {
	p.closed.Store(true)
	p.f.Close()
}
