// Package metrics exports weedfuse's and weedrdma's counters to Prometheus.
//
// It is a package of its own, above every package whose counters it reads,
// so that those stay free of Prometheus: each keeps plain atomic counters
// and a Stats() method returning a struct of them, and the collectors here
// call Stats() once per scrape and turn the struct into samples. Both
// commands (cmd/weedfuse, cmd/weedrdma) use it, and its exposition is
// tested once, here, with promtool.
//
// Adding a counter to a Stats struct is one line in the table of that
// struct (tables.go), e.g.
//
//	counter("weedfuse_cache_hits_total", helpHits, tier("disk"), func(s pagecache.Stats) uint64 { return s.Disk.Hits }),
//
// Samples that share a name must share their help text and label names; the
// registry refuses the collector otherwise, which TestExposition catches.
//
// What the lower packages cannot count without being edited, this package
// measures from outside: FUSE operation latency through fs.OpObserver
// (Mount.ObserveOp) and fetch latency per path by wrapping each step of the
// fetch chain (Mount.Fetcher).
package metrics
