//go:build rdmafault

package main

import (
	"flag"
	"log"

	"github.com/weedfuse/weedfuse/rdma"
)

// Fault injection, compiled in only with -tags rdmafault (integration/rxe
// builds such a binary for its tests); a production build has none of it.
type faults struct{ corruptEvery, corruptStored, forge *int }

func faultFlags() faults {
	return faults{
		corruptEvery:  flag.Int("fault.corruptEvery", 0, "FAULT INJECTION, TESTS ONLY: flip a byte of every Nth reply after its CRC32C was computed (0: off)"),
		corruptStored: flag.Int("fault.corruptStoredEvery", 0, "FAULT INJECTION, TESTS ONLY: flip a byte of every Nth reply before its CRC32C is computed (0: off)"),
		forge:         flag.Int("fault.forgeEvery", 0, "FAULT INJECTION, TESTS ONLY: flip a byte of every Nth reply and send CRC32Cs of the flipped bytes, as a forger would (0: off)"),
	}
}

func (f faults) apply(o *rdma.ServerOptions) {
	o.CorruptEveryN, o.CorruptStoredEveryN, o.ForgeEveryN = *f.corruptEvery, *f.corruptStored, *f.forge
}

func (f faults) log() {
	if n := *f.corruptEvery; n > 0 {
		log.Printf("FAULT INJECTION (-fault.corruptEvery=%d): one reply in %d gets a byte flipped after its CRC; for tests only", n, n)
	}
	if n := *f.corruptStored; n > 0 {
		log.Printf("FAULT INJECTION (-fault.corruptStoredEvery=%d): one reply in %d gets a byte flipped before its CRC; for tests only", n, n)
	}
	if n := *f.forge; n > 0 {
		log.Printf("FAULT INJECTION (-fault.forgeEvery=%d): one reply in %d is forged, CRCs and all; for tests only", n, n)
	}
}
