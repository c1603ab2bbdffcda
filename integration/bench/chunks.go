package main

// The chunk-size workload: the rest of the bench writes 4 MiB chunks (the
// filer's -maxMB=4), and SeaweedFS writers also use 1, 2 and 8 MiB, and
// `weed upload -maxMB` / `weed filer.copy -maxMB` go up to 64 MiB. A
// mount tuned for one size can fall off a cliff at another: a whole-needle
// fetch of 64 MiB for a 4 KiB read, or a readahead window that a 1 MiB
// chunk size turns into many small requests.

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"time"
)

const (
	chunksDir  = "/bench/chunks"
	chunksSize = 1 << 30
)

// chunkSizes are the chunk sizes, in MiB, of the workload's files (4 MiB
// is every other workload's).
var chunkSizes = []int{1, 16, 64}

func chunksName(mb int) string { return fmt.Sprintf("c%02dm", mb) }

// chunksStep reads a 1 GiB file of each chunk size at random, 4 KiB × 4
// jobs, O_DIRECT, from a cold start (the file is larger than every cache
// at default flags, so this is "beyond every cache" at that chunk size),
// and then each sequentially, 1 MiB buffered, after dropping the kernel's
// caches. Both mounts run at their default cache flags.
func chunksStep(randTime time.Duration) step {
	id := "chunks"
	var ms []metric
	for _, mb := range chunkSizes {
		ms = append(ms, metric{id: fmt.Sprintf("chunks-%dm-rand", mb),
			label: fmt.Sprintf("random 4 KiB, O_DIRECT, 4 jobs, 1 GiB file of %d MiB chunks, default cache flags", mb),
			short: fmt.Sprintf("rand 4k, %d MiB chunks", mb), unit: "IOPS"})
	}
	for _, mb := range chunkSizes {
		ms = append(ms, metric{id: fmt.Sprintf("chunks-%dm-seq", mb),
			label: fmt.Sprintf("sequential 1 GiB of %d MiB chunks, buffered, cold, default cache flags", mb),
			short: fmt.Sprintf("seq cold, %d MiB chunks", mb), unit: "MB/s"})
	}
	rand := fioJob{rw: "randread", engine: "psync", direct: true, bs: "4k", jobs: 4, runtime: max(randTime/2, 5*time.Second)}
	seq := fioJob{rw: "read", engine: "psync", bs: "1M"}
	return step{
		id:        id,
		cacheArgs: []string{},
		metrics:   ms,
		prepare: func(ctx context.Context, x *stepCtx) error {
			began := time.Now()
			for i, mb := range chunkSizes {
				data := randomBytes(uint64(3000+i), chunksSize)
				if err := x.c.PutChunked(ctx, onFiler(chunksDir+"/"+chunksName(mb)), data, mb); err != nil {
					return err
				}
				// The workload is worth its name only if the file is
				// made of chunks of that size (the filer's HTTP upload
				// writes larger ones past 1000 chunks, and before
				// 2026-12-05 this file of "1 MiB chunks" was made of 256
				// of 4 MiB).
				e, err := x.c.Entry(ctx, onFiler(chunksDir), chunksName(mb))
				if err != nil {
					return err
				}
				if n, want := len(e.GetChunks()), chunksSize/(mb<<20); n != want {
					return fmt.Errorf("%s: %d chunks, not %d of %d MiB", chunksName(mb), n, want, mb)
				}
			}
			log.Printf("data: %s, 1 GiB in chunks of %v MiB, in %v", chunksDir, chunkSizes, time.Since(began).Round(time.Millisecond))
			return nil
		},
		run: func(ctx context.Context, root string, cpu *cpuMeter, x *stepCtx) ([]float64, error) {
			var vals []float64
			// Random first, each file cold: the sequential reads after
			// them drop the kernel's caches, while the mount's own hold
			// what the random reads left, as a mount in use would.
			for _, mb := range chunkSizes {
				r, err := runFio(ctx, filepath.Join(root, chunksDir, chunksName(mb)), chunksSize, rand)
				if err != nil {
					return nil, err
				}
				vals = append(vals, r.iops)
			}
			for _, mb := range chunkSizes {
				if err := dropCaches(); err != nil {
					return nil, err
				}
				r, err := runFio(ctx, filepath.Join(root, chunksDir, chunksName(mb)), chunksSize, seq)
				if err != nil {
					return nil, err
				}
				vals = append(vals, r.bw/1e6)
			}
			return vals, nil
		},
	}
}
