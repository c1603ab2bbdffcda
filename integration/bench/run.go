package main

import (
	"context"
	"fmt"
	"log"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// results are every value measured, one per run.
type results struct {
	runs  int
	steps []step                         // those that ran, in order
	val   [numKinds]map[string][]float64 // metric id → values
	rss   [numKinds]map[string][]float64 // step id → peak RSS in MiB
	cpu   [numKinds]map[string][]cpuUse  // step id → mount's and volume server's use
	// cacheDisk is the bytes the mount's cache directory held on disk at
	// the end of each run of a workload, by step id.
	cacheDisk [numKinds]map[string][]float64
	// mounts are the mounts that every workload ran on, in order: the two,
	// then the peers that mounted.
	mounts []kind
	// peers describes the peers (-peers): how each was mounted, or why
	// it could not be; nil without -peers.
	peers     *peerReport
	http      map[httpCase][]float64 // MB/s
	httpCPU   map[httpCase][]cpuUse  // this process's and the volume server's use
	cacheMB   int
	readAhead [numKinds]string // each mount's kernel readahead in KiB
	// refs are what the machine itself does on a workload (a local
	// directory, a bare HTTP client), by metric id, one per run.
	refs map[string][]float64
	// notes are lines for the report that only one mount can tell (how
	// much of what weedfuse served it could verify).
	notes []string
}

// stepCtx is what a workload may use beyond its mount's directory.
type stepCtx struct {
	k    kind
	m    *mounter
	c    *cluster.Cluster
	res  *results
	work string // a scratch directory on the same disk as the cluster
	o    *options
}

// metrics lists the metrics of the steps that ran, in order.
func (r *results) metrics() []metric {
	var ms []metric
	for _, s := range r.steps {
		ms = append(ms, s.metrics...)
	}
	return ms
}

// newResults returns empty results for the workloads o selects.
func newResults(o *options) *results {
	res := &results{runs: o.runs, http: map[httpCase][]float64{}, httpCPU: map[httpCase][]cpuUse{}, cacheMB: o.cacheMB, refs: map[string][]float64{}}
	for _, s := range steps(o.randTime) {
		if o.only.MatchString(s.id) {
			res.steps = append(res.steps, s)
		}
	}
	for k := range numKinds {
		res.val[k], res.rss[k], res.cpu[k], res.cacheDisk[k] = map[string][]float64{}, map[string][]float64{}, map[string][]cpuUse{}, map[string][]float64{}
	}
	return res
}

// prepareSteps loads the data of res.steps, the selected workloads.
func prepareSteps(ctx context.Context, o *options, c *cluster.Cluster, m *mounter, res *results) error {
	for _, s := range res.steps {
		if s.prepare != nil {
			if err := s.prepare(ctx, &stepCtx{m: m, c: c, res: res, work: m.root, o: o}); err != nil {
				return fmt.Errorf("prepare %s: %w", s.id, err)
			}
		}
	}
	return nil
}

// runAll runs every selected workload o.runs times. Each run measures the
// raw HTTP ceiling, then takes the workloads one by one, each on weed mount
// and then on weedfuse, so that both see the same conditions as nearly as
// a shared machine allows.
func runAll(ctx context.Context, o *options, c *cluster.Cluster, m *mounter, ds *dataset) (*results, error) {
	res := newResults(o)
	var chunks []chunkURL
	if o.only.MatchString("http") {
		var err error
		if chunks, err = seqChunks(ctx, c); err != nil {
			return nil, err
		}
	}
	if err := prepareSteps(ctx, o, c, m, res); err != nil {
		return nil, err
	}
	// After the prepares: JuiceFS copies what they stored.
	if o.peers {
		res.peers = m.setupPeers(ctx, ds)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	res.mounts = m.active()
	for run := 1; run <= o.runs; run++ {
		log.Printf("run %d of %d", run, o.runs)
		if chunks != nil {
			if err := measureHTTP(ctx, chunks, volumePid(c), res); err != nil {
				return nil, fmt.Errorf("run %d: %w", run, err)
			}
		}
		for _, s := range res.steps {
			for _, k := range res.mounts {
				if k.isPeer() {
					// A peer's failure is reported, not fatal.
					runPeerStep(ctx, m, s, k, res, o, run)
					continue
				}
				if err := runStep(ctx, m, s, k, res, o); err != nil {
					return nil, fmt.Errorf("run %d, %s on %s: %w%s", run, s.id, k, err, m.logTail(k))
				}
			}
		}
	}
	res.readAhead = m.readAhead
	return res, nil
}

// runStep runs s once on a fresh k and records its values and the mount's
// peak RSS.
func runStep(ctx context.Context, m *mounter, s step, k kind, res *results, o *options) error {
	m.cacheArgs = s.cacheArgs
	if err := m.fresh(ctx, k, s.wfArgs...); err != nil {
		return err
	}
	pid, err := m.pid(k)
	if err != nil {
		return err
	}
	cpu := newCPUMeter(pid, volumePid(m.c))
	vals, err := s.run(ctx, m.dir(k), cpu, &stepCtx{k: k, m: m, c: m.c, res: res, work: m.root, o: o})
	if err != nil {
		return err
	}
	cpu.stop()
	res.cpu[k][s.id] = append(res.cpu[k][s.id], *cpu.use)
	if len(vals) != len(s.metrics) {
		return fmt.Errorf("%d values for %d metrics", len(vals), len(s.metrics))
	}
	hwm, err := m.peakRSS(k)
	if err != nil {
		return err
	}
	res.rss[k][s.id] = append(res.rss[k][s.id], hwm)
	if b, err := diskUsage(m.cache[k]); err == nil {
		res.cacheDisk[k][s.id] = append(res.cacheDisk[k][s.id], b)
	}
	for i, mt := range s.metrics {
		res.val[k][mt.id] = append(res.val[k][mt.id], vals[i])
		log.Printf("  %-16s %-10s %10.4g %s", mt.id, k, vals[i], mt.unit)
	}
	log.Printf("  %-16s %-10s %10.0f MiB peak RSS", s.id, k, hwm)
	return nil
}

// volumePid is the volume server's process id (the cluster has one), or 0.
func volumePid(c *cluster.Cluster) int {
	if pids := c.VolumePids(); len(pids) > 0 {
		return pids[0]
	}
	return 0
}
