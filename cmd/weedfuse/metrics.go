package main

import (
	"github.com/weedfuse/weedfuse/internal/metrics"
	"github.com/weedfuse/weedfuse/internal/volume"
	"github.com/weedfuse/weedfuse/pagecache"
	"github.com/weedfuse/weedfuse/rdma"
)

// addMetricSources exports the counters of the cache and the fetchers; a
// new source (a disk tier, a peer cache) is one more line here.
func addMetricSources(mx *metrics.Mount, cache *pagecache.Cache, http *volume.Reader, rc *rdma.Client) error {
	if err := mx.AddCache(cache); err != nil {
		return err
	}
	if err := mx.AddHTTP(http); err != nil {
		return err
	}
	if rc != nil {
		return mx.AddRDMA(rc)
	}
	return nil
}
