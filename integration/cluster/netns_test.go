package cluster

import (
	"bytes"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenIn opens a TCP listener inside namespace ns; the socket stays in
// the namespace.
func listenIn(t *testing.T, ns *Netns) net.Listener {
	t.Helper()
	l, err := inNetns(ns, func() (net.Listener, error) { return net.Listen("tcp", net.JoinHostPort(ns.IP, "0")) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// inNetns runs fn on a thread that has entered namespace ns. The thread is
// left locked, so that it dies with its goroutine rather than returning to
// the pool inside the namespace.
func inNetns[T any](ns *Netns, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		v, err := fn()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// TestNetDelay makes a Net, echoes bytes from the host to a namespace and
// between namespaces, and checks that SetDelay slows a round trip by about
// the delay, then no longer.
func TestNetDelay(t *testing.T) {
	nt, err := NewNet(2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nt.Close(); err != nil {
			t.Error(err)
		}
	})
	ns := nt.Spaces()[0]
	t.Logf("delay by %s", ns.DelayMethod())
	l := listenIn(t, ns)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	// 4 MiB each way checks that large segments pass; one byte, the RTT.
	payload := bytes.Repeat([]byte("weedfuse"), 512<<10)
	roundTrip := func(from *Netns) time.Duration {
		t.Helper()
		var c net.Conn
		var err error
		if from == nil {
			c, err = net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
		} else {
			c, err = dialFrom(from, l.Addr().String())
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go c.Write(payload)
		got := make([]byte, len(payload))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("echo of %d bytes: %v, equal %v", len(payload), err, bytes.Equal(got, payload))
		}
		began := time.Now()
		c.Write([]byte{1})
		if _, err := io.ReadFull(c, got[:1]); err != nil {
			t.Fatal(err)
		}
		d := time.Since(began)
		t.Logf("round trip: %v", d)
		return d
	}
	if d := roundTrip(nil); d > 100*time.Millisecond {
		t.Errorf("round trip without delay: %v", d)
	}
	if d := roundTrip(nt.Spaces()[1]); d > 100*time.Millisecond {
		t.Errorf("round trip between namespaces without delay: %v", d)
	}
	check(t, ns.SetDelay(200*time.Millisecond))
	if d := roundTrip(nil); d < 190*time.Millisecond || d > 400*time.Millisecond {
		t.Errorf("round trip with 200ms delay: %v", d)
	}
	check(t, ns.SetDelay(0))
	if d := roundTrip(nil); d > 100*time.Millisecond {
		t.Errorf("round trip after the delay: %v", d)
	}
}

// dialFrom dials addr from inside namespace ns.
func dialFrom(ns *Netns, addr string) (net.Conn, error) {
	return inNetns(ns, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
}
