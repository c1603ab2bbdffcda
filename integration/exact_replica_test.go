package integration

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// TestExactReplicaFailover reads a 100 MiB file of a cluster with two
// volume servers and replication 001 through weedfuse in a loop, the kernel's
// page cache dropped before each pass and weedfuse's own cache small, so
// that every pass reads the volume servers. In the middle of a pass the
// volume server that the filer lists first is stopped; later it is started
// again and the other one stopped. Every pass must return the file's bytes,
// and no read() call may take longer than weedfuse's retry budget
// (-readRetryTime) with generous slack: a hang bound, not a speed check.
func TestExactReplicaFailover(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{Volumes: 2, Replication: "001"})
	ctx := ctxT(t, 3*time.Minute)
	rng := rand.New(rand.NewPCG(61, 62))
	data := make([]byte, 100<<20)
	fillRandom(rng, data)
	want := sha256.Sum256(data)
	began := time.Now()
	require.NoError(t, c.Put(ctx, "/rep/big.bin", data))
	t.Logf("uploaded 100 MiB with replication 001 in %v", time.Since(began).Round(time.Millisecond))

	// Stop first the server the filer lists first for most chunks, so that
	// the failover is exercised rather than never needed.
	e, err := c.Entry(ctx, "/rep", "big.bin")
	require.NoError(t, err)
	first := map[string]int{}
	vids := map[string]bool{}
	for _, ch := range e.GetChunks() {
		vid, _, _ := strings.Cut(ch.GetFileId(), ",")
		vids[vid] = true
		resp, err := c.FilerClient().LookupVolume(ctx, &filerpb.LookupVolumeRequest{VolumeIds: []string{vid}})
		require.NoError(t, err)
		locs := resp.GetLocationsMap()[vid].GetLocations()
		require.Len(t, locs, 2, "volume %s should have two replicas", vid)
		first[locs[0].GetUrl()]++
	}
	addrs := c.VolumeAddrs()
	victim := 0
	if first[addrs[1]] > first[addrs[0]] {
		victim = 1
	}
	other := 1 - victim
	t.Logf("%d chunks in %d volumes; listed first: %v; stopping volume%d first", len(e.GetChunks()), len(vids), first, victim)

	const budget = 6 * time.Second // weedfuse's default -readRetryTime
	m := startMount(t, c, "-filer.path=/rep", "-readerCacheSizeMB=16", "-cacheCapacityMB=0", "-readRetryTime="+budget.String())
	path := filepath.Join(m.Dir, "big.bin")

	// The faults, each started from the middle of a pass and run beside
	// the reads; done closes when one has finished, at time at.
	type fault struct {
		pass int
		name string
		run  func() error
		err  error
		done chan struct{}
		at   time.Time
	}
	faults := []*fault{
		{pass: 1, name: fmt.Sprintf("stop volume%d", victim), run: func() error { return c.StopVolume(victim) }},
		{pass: 3, name: fmt.Sprintf("restart volume%d, stop volume%d", victim, other), run: func() error {
			if err := c.StartVolume(ctx, victim); err != nil {
				return err
			}
			return c.StopVolume(other)
		}},
	}
	for _, fl := range faults {
		fl.done = make(chan struct{})
	}
	var started []*fault
	t.Cleanup(func() {
		// A fault still running must not log after the test ends.
		for _, fl := range started {
			<-fl.done
		}
	})
	finished := func(fl *fault) bool {
		select {
		case <-fl.done:
			return true
		default:
			return false
		}
	}
	last := faults[len(faults)-1]
	var maxRead time.Duration
	passes := 0
	for pass := 0; pass < 12; pass++ {
		exactDropCaches(t)
		f, err := os.Open(path)
		require.NoError(t, err)
		h := sha256.New()
		buf := make([]byte, 1<<20)
		var n int64
		passStart := time.Now()
		var passMax time.Duration
		triggered := false
		for {
			start := time.Now()
			k, err := f.Read(buf)
			d := time.Since(start)
			passMax = max(passMax, d)
			h.Write(buf[:k])
			n += int64(k)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, "pass %d at offset %d after %v\n%s", pass, n, d, m.Log())
			// Paced, so that each pass lasts a few seconds and a fault
			// started in it lands while it still reads.
			time.Sleep(20 * time.Millisecond)
			if !triggered && n >= 20<<20 {
				triggered = true
				for _, fl := range faults {
					if fl.pass == pass {
						t.Logf("pass %d at %d MiB: %s", pass, n>>20, fl.name)
						started = append(started, fl)
						go func() {
							defer close(fl.done)
							start := time.Now()
							fl.err = fl.run()
							fl.at = time.Now()
							t.Logf("%s: took %v", fl.name, fl.at.Sub(start).Round(time.Millisecond))
						}()
					}
				}
			}
		}
		f.Close()
		passes++
		maxRead = max(maxRead, passMax)
		require.Equal(t, int64(len(data)), n, "pass %d: length", pass)
		var got [32]byte
		h.Sum(got[:0])
		require.Equal(t, want, got, "pass %d: sha256 differs", pass)
		passEnd := time.Now()
		t.Logf("pass %d: 100 MiB exact in %v, slowest read() %v", pass, passEnd.Sub(passStart).Round(time.Millisecond), passMax.Round(time.Millisecond))
		for _, fl := range faults {
			if fl.pass == pass && finished(fl) {
				t.Logf("%s: done %v before the end of pass %d", fl.name, passEnd.Sub(fl.at).Round(time.Millisecond), pass)
			}
			if fl.pass < pass {
				// The next fault starts from a settled state.
				<-fl.done
				require.NoError(t, fl.err, fl.name)
			}
		}
		// Done: every fault over, and a whole pass read after the last.
		if finished(last) && last.at.Before(passStart) {
			break
		}
	}
	require.True(t, finished(last), "%s: still running after %d passes", last.name, passes)
	require.NoError(t, last.err, last.name)
	t.Logf("%d passes; slowest read() %v (bound %v)", passes, maxRead.Round(time.Millisecond), 2*budget)
	require.Less(t, maxRead, 2*budget, "a read() stalled past the retry budget")
}
