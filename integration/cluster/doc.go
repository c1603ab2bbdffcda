// Package cluster runs a real SeaweedFS cluster on loopback for tests,
// benchmarks and the demo: one master, N volume servers and one filer, each a
// separate `weed` process, so that a test can kill and restart a single
// volume server. It also runs the stock `weed mount` as the peer that weedfuse
// is compared against.
//
// Every process runs in its own process group with Pdeathsig set, so nothing
// outlives the test binary, and Stop (idempotent) ends all of them: SIGTERM,
// a grace period, then SIGKILL. Each process logs to <Dir>/<name>.log, and
// errors quote the tail of the relevant log.
//
// Ports are chosen so that every server's gRPC port is its HTTP port + 10000,
// the convention SeaweedFS clients assume, so a plain "host:port" address
// works wherever SeaweedFS accepts one.
package cluster
