package metrics

import (
	"github.com/weedfuse/weedfuse/fs"
	"github.com/weedfuse/weedfuse/internal/volume"
	"github.com/weedfuse/weedfuse/pagecache"
	"github.com/weedfuse/weedfuse/rdma"
)

// The tables below are the exposition: one line per Stats field. Names that
// predate this package (weedfuse_http_*, weedfuse_rdma_*, weedfuse_cache_*)
// are kept as they were, since scripts (integration/rxe) read them; the
// families that span tiers carry a tier label instead of a name per tier.

// Help texts shared by several tiers' samples of one family.
const (
	helpHits   = "Block look-ups a cache tier answered."
	helpMisses = "Block look-ups a cache tier could not answer."
)

var cacheStats = []Stat[pagecache.Stats]{
	counter("weedfuse_cache_hits_total", helpHits, tier("memory"), func(s pagecache.Stats) uint64 { return s.Hits }),
	counter("weedfuse_cache_misses_total", helpMisses, tier("memory"), func(s pagecache.Stats) uint64 { return s.Misses }),
	counter("weedfuse_cache_fetches_total", "Fetches the cache started for missing blocks, for readers and readahead.", nil, func(s pagecache.Stats) uint64 { return s.Fetches }),
	counter("weedfuse_cache_fetch_errors_total", "Cache fetches that failed.", nil, func(s pagecache.Stats) uint64 { return s.FetchErrs }),
	counter("weedfuse_cache_fetched_bytes_total", "Bytes the cache fetched, for readers and readahead.", nil, func(s pagecache.Stats) uint64 { return s.FetchedBytes }),
	counter("weedfuse_cache_uncached_blocks_total", "Blocks fetched to the heap because the cache's memory was full.", nil, func(s pagecache.Stats) uint64 { return s.Uncached }),
	counter("weedfuse_readahead_bytes_total", "Bytes fetched ahead of readers.", nil, func(s pagecache.Stats) uint64 { return s.PrefetchedBytes }),
	counter("weedfuse_readahead_used_bytes_total", "Prefetched bytes that a reader then took.", nil, func(s pagecache.Stats) uint64 { return s.PrefetchUsedBytes }),
	counter("weedfuse_readahead_dropped_blocks_total", "Prefetched blocks dropped unread.", nil, func(s pagecache.Stats) uint64 { return s.PrefetchDropped }),
	gauge("weedfuse_cache_capacity_bytes", "A cache tier's capacity: the memory tier's mapped memory (-readerCacheSizeMB).", tier("memory"), func(s pagecache.Stats) int64 { return s.MemoryCapacity }),
	gauge("weedfuse_cache_used_bytes", "What a cache tier holds now: in memory, cached blocks, readahead and fetches in flight.", tier("memory"), func(s pagecache.Stats) int64 { return s.MemoryUsed }),
	gauge("weedfuse_readahead_pending_bytes", "Prefetched bytes waiting for their readers: the readahead windows' sum.", nil, func(s pagecache.Stats) int64 { return s.ReadaheadBytes }),
	counter("weedfuse_cache_range_fetches_total", "Ranged fetches of random misses (needles in no tier).", nil, func(s pagecache.Stats) uint64 { return s.RangeFetches }),
	counter("weedfuse_cache_verified_range_bytes_total", "Bytes of ranged fetches checked against a needle's block table.", nil, func(s pagecache.Stats) uint64 { return s.VerifiedRangeBytes }),
	counter("weedfuse_cache_unverified_bytes_total", "Bytes of ranged fetches that nothing could check, served as weed mount serves them.", nil, func(s pagecache.Stats) uint64 { return s.UnverifiedBytes }),
	counter("weedfuse_disk_fills_total", "Needles fetched whole into the disk cache ahead of readers (after a ranged read, by a scan or a prefetch round, or at the open of a small file).", nil, func(s pagecache.Stats) uint64 { return s.Fills }),
	counter("weedfuse_memory_fills_total", "Needles fetched whole into the memory cache after a ranged read, while the disk cache had no room.", nil, func(s pagecache.Stats) uint64 { return s.MemoryFills }),
	gauge("weedfuse_cache_capacity_bytes", "A cache tier's capacity: the memory tier's mapped memory (-readerCacheSizeMB).", tier("disk"), func(s pagecache.Stats) int64 { return s.Disk.Capacity }),
	gauge("weedfuse_cache_used_bytes", "What a cache tier holds now: in memory, cached blocks, readahead and fetches in flight.", tier("disk"), func(s pagecache.Stats) int64 { return s.Disk.Used }),
	gauge("weedfuse_disk_entries", "Needles the disk cache knows: their bytes, or only their block tables.", nil, func(s pagecache.Stats) int64 { return s.Disk.Entries }),
	counter("weedfuse_cache_hits_total", helpHits, tier("disk"), func(s pagecache.Stats) uint64 { return s.Disk.Hits }),
	counter("weedfuse_cache_misses_total", helpMisses, tier("disk"), func(s pagecache.Stats) uint64 { return s.Disk.Misses }),
	counter("weedfuse_disk_hit_bytes_total", "Bytes served from the disk cache, each block checked against its table (a file the kernel reads itself, with FUSE passthrough: when opened, unless unchanged since its last check).", nil, func(s pagecache.Stats) uint64 { return s.Disk.HitBytes }),
	counter("weedfuse_disk_checked_bytes_total", "Bytes of disk cache files read to check them before the kernel reads them itself (FUSE passthrough); a file unchanged since it last passed is not read again.", nil, func(s pagecache.Stats) uint64 { return s.Disk.CheckedBytes }),
	counter("weedfuse_disk_writes_total", "Needles written whole to the disk cache.", nil, func(s pagecache.Stats) uint64 { return s.Disk.Writes }),
	counter("weedfuse_disk_written_bytes_total", "Bytes written to the disk cache.", nil, func(s pagecache.Stats) uint64 { return s.Disk.WrittenBytes }),
	counter("weedfuse_disk_write_errors_total", "Needles that could not be written to the disk cache (a full disk, a vanished directory).", nil, func(s pagecache.Stats) uint64 { return s.Disk.WriteErrors }),
	counter("weedfuse_disk_corrupt_total", "Disk cache files that failed their checksums and were removed.", nil, func(s pagecache.Stats) uint64 { return s.Disk.Corrupt }),
	counter("weedfuse_disk_evictions_total", "Disk cache files removed to stay within capacity.", nil, func(s pagecache.Stats) uint64 { return s.Disk.Evictions }),
}

var treeStats = []Stat[fs.Stats]{
	gauge("weedfuse_metadata_subscribed", "1 while the filer's metadata subscription keeps cached entries fresh, 0 while it is down.", nil, func(s fs.Stats) int {
		if s.Watched {
			return 1
		}
		return 0
	}),
	gauge("weedfuse_metadata_lag_seconds", "How old the last metadata event was when it arrived.", nil, func(s fs.Stats) float64 { return s.LagSeconds }),
}

var httpStats = []Stat[volume.Stats]{
	counter("weedfuse_http_reads_total", "Chunk reads served over the volume servers' HTTP.", nil, func(s volume.Stats) int64 { return s.Reads }),
	counter("weedfuse_http_errors_total", "Chunk reads over HTTP that failed after every replica and retry.", nil, func(s volume.Stats) int64 { return s.Errors }),
	counter("weedfuse_http_bytes_total", "Logical bytes that chunk reads over HTTP returned.", nil, func(s volume.Stats) int64 { return s.Bytes }),
	counter("weedfuse_http_retries_total", "HTTP requests after the first within one read: replica failovers and later rounds.", nil, func(s volume.Stats) int64 { return s.Retries }),
	counter("weedfuse_http_replica_failures_total", "HTTP requests that put a replica in the penalty box.", nil, func(s volume.Stats) int64 { return s.ReplicaFailures }),
	counter("weedfuse_http_corrupt_total", "HTTP replies whose bytes failed a check (CRC32C, e_tag, AES-GCM, gzip, length).", nil, func(s volume.Stats) int64 { return s.Corrupt }),
	counter("weedfuse_http_fetches_total", "Needles received whole over HTTP.", nil, func(s volume.Stats) int64 { return s.Fetches }),
	counter("weedfuse_http_fetched_bytes_total", "Stored bytes of the needles received over HTTP.", nil, func(s volume.Stats) int64 { return s.FetchedBytes }),
	counter("weedfuse_http_range_fetches_total", "Ranged GETs (random misses), whose bytes this layer cannot verify.", nil, func(s volume.Stats) int64 { return s.RangeFetches }),
	counter("weedfuse_http_range_bytes_total", "Bytes of ranged GETs.", nil, func(s volume.Stats) int64 { return s.RangeBytes }),
}

var rdmaClientStats = []Stat[rdma.ClientStats]{
	counter("weedfuse_rdma_reads_total", "Chunk reads served over RDMA.", nil, func(s rdma.ClientStats) uint64 { return s.Reads }),
	counter("weedfuse_rdma_bytes_total", "Logical bytes that chunk reads over RDMA returned.", nil, func(s rdma.ClientStats) uint64 { return s.Bytes }),
	counters("weedfuse_rdma_fallbacks_total", "Reads RDMA left to HTTP, by reason.", nil, "reason", func(s rdma.ClientStats) map[string]uint64 { return s.Fallbacks }),
	counter("weedfuse_rdma_fetches_total", "Whole stored needles moved by RDMA READ and checked.", nil, func(s rdma.ClientStats) uint64 { return s.Fetches }),
	counter("weedfuse_rdma_fetched_bytes_total", "Stored bytes of the needles moved by RDMA READ.", nil, func(s rdma.ClientStats) uint64 { return s.FetchedBytes }),
	counter("weedfuse_rdma_unchecked_total", "Needles moved by RDMA without the volume server's CRC32C (checked by e_tag MD5 instead).", nil, func(s rdma.ClientStats) uint64 { return s.Unchecked }),
	counter("weedfuse_rdma_crc_failures_total", "RDMA transfers whose bytes did not match weedrdma's CRC32C.", nil, func(s rdma.ClientStats) uint64 { return s.CRCFailures }),
	counter("weedfuse_rdma_needle_crc_failures_total", "RDMA transfers whose bytes did not match the volume server's needle CRC32C.", nil, func(s rdma.ClientStats) uint64 { return s.NeedleCRCFailures }),
	counter("weedfuse_rdma_reconnects_total", "Connections to a weedrdma established after the first.", nil, func(s rdma.ClientStats) uint64 { return s.Reconnects }),
	gauge("weedfuse_rdma_peers", "weedrdma servers known.", nil, func(s rdma.ClientStats) int { return s.Peers }),
	gauge("weedfuse_rdma_connected", "weedrdma servers connected now.", nil, func(s rdma.ClientStats) int { return s.Connected }),
	gauge("weedfuse_rdma_open_circuits", "weedrdma servers whose circuit breaker is open.", nil, func(s rdma.ClientStats) int { return s.OpenCircuit }),
}
