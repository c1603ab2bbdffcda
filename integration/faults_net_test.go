//go:build faults

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// netDelay is the delay added to the packets into a volume server's
// namespace.
const netDelay = 200 * time.Millisecond

const (
	netDelayFault = "volume server slowed by 200 ms of network delay (into its namespace)"
	netMoveFault  = "volume moved (volume.move) to a server in another namespace, while read"
)

// netFaults runs the faults that need volume servers on addresses of their
// own, which weed refuses to move volumes between on loopback: a second
// cluster whose master and filer are on a bridge this test makes, and two
// volume servers, each in a network namespace linked to the bridge. The
// files are on the first server; both mounts read them through the bridge.
// It returns the rows and a sentence on how the faults were made, or, where
// namespaces cannot be made, rows that say why not.
func netFaults(t *testing.T, ctx context.Context, files map[string][]byte) ([]faultRow, string) {
	names := []string{"weedfuse", "weed mount"}
	notRun := func(why string) ([]faultRow, string) {
		t.Logf("network faults not run: %s", why)
		var rows []faultRow
		for _, f := range []string{netDelayFault, netMoveFault} {
			for _, m := range names {
				rows = append(rows, faultRow{fault: f, mount: m, notRun: why})
			}
		}
		return rows, ""
	}
	if err := cluster.NetAvailable(); err != nil {
		return notRun(err.Error())
	}
	nt, err := cluster.NewNet(2, t.Logf)
	if err != nil {
		return notRun(err.Error())
	}
	// Registered before the cluster's: cleanups run last first, so the
	// servers are stopped before their namespaces go.
	t.Cleanup(func() {
		if err := nt.Close(); err != nil {
			t.Errorf("remove net: %v", err)
		}
	})
	c := cluster.StartT(t, cluster.Options{Net: nt, StopGrace: 500 * time.Millisecond})
	counts := map[uint32]int{}
	for name, data := range files {
		if err := c.PutOn(ctx, 0, "faultnet", "/faults/"+name, data); err != nil {
			t.Fatal(err)
		}
		vids, err := c.Volumes(ctx, "/faults/"+name)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vids {
			counts[v]++
		}
	}
	// The volume that holds the most of the files' chunks moves.
	var vids []uint32
	for v := range counts {
		vids = append(vids, v)
	}
	slices.Sort(vids)
	moved := vids[0]
	for _, v := range vids {
		if counts[v] > counts[moved] {
			moved = v
		}
	}
	wf := startMountAt(t, c, filepath.Join(t.TempDir(), "wf"), "-filer.path=/faults",
		"-cacheCapacityMB=0", "-readerCacheSizeMB=16")
	wm, err := c.StartWeedMount(ctx, filepath.Join(t.TempDir(), "wm"), "-filer.path=/faults",
		"-cacheDir="+t.TempDir(), "-cacheCapacityMB=0")
	if err != nil {
		t.Fatal(err)
	}
	mounts := []campaignMount{{names[0], wf.Dir}, {names[1], wm.Dir()}}
	ns := nt.Spaces()[0]
	faults := []fault{
		{name: netDelayFault,
			inject: func(t *testing.T) { must(t, ns.SetDelay(netDelay)) },
			heal:   func(t *testing.T) { must(t, ns.SetDelay(0)) }},
		{name: netMoveFault,
			inject: func(t *testing.T) {
				began := time.Now()
				must(t, c.MoveVolume(ctx, moved, 0, 1))
				t.Logf("moved volume %d (%d of the files' chunks) from %s to %s in %v", moved, counts[moved],
					c.VolumeAddrs()[0], c.VolumeAddrs()[1], time.Since(began).Round(time.Millisecond))
			},
			// The move is the fault: it has ended when MoveVolume returns.
			hold: time.Millisecond,
			heal: func(*testing.T) {}},
	}
	rows := runFaults(t, mounts, files, faults)
	note := fmt.Sprintf("The last two faults run on a second cluster: master and filer on a bridge that the test "+
		"makes (%s.0/24), and two volume servers, each in a network namespace of its own linked to the bridge "+
		"by a veth pair; the files are on the first (weed 4.48 refuses volume.move between servers on "+
		"loopback). The delay is %v on every packet into the first server's namespace, by %s. "+
		"The move takes volume %d, which holds %d of the files' %d chunks, to the second server; the "+
		"fault lasts as long as the move (the copy, the tail of new writes, the source's copy deleted), and "+
		"\"recovered after\" counts from its end.",
		nt.HostIP()[:len(nt.HostIP())-2], netDelay, ns.DelayMethod(), moved, counts[moved], len(files)*faultFileSize/(4<<20))
	return rows, note
}
