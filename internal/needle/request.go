package needle

import "io"

// Request is one fetch of a chunk's logical bytes [Off, Off+Len()), into
// Dsts in order: a run of the block cache's slots, or one buffer. Passed
// by value; a fetcher neither keeps it nor Dsts past its return.
type Request struct {
	Chunk Chunk
	Off   int64
	Dsts  [][]byte
	// Whole, when not nil, also gets all of the needle's logical bytes
	// (see NeedleSink), verified before the fetch returns nil: the disk
	// tier keeps the needle while the memory tier keeps Dsts, from one
	// fetch. Dsts may then be empty. A fetcher that cannot tee serves
	// Dsts and leaves Whole empty (Reset), and its owner keeps nothing.
	Whole NeedleSink
	// Range asks for just the bytes of Dsts, of a plain chunk (see
	// Chunk.Plain), which nothing can verify: SeaweedFS keeps no checksum
	// over a range, so the caller checks them against what it knows (a
	// table of block checksums) or counts them as unverified. Whole is
	// not used. A fetcher that cannot cut the chunk answers an error
	// wrapping ErrNotServed.
	Range bool
}

// Len is the number of bytes Dsts hold.
func (r Request) Len() int64 {
	n := int64(0)
	for _, d := range r.Dsts {
		n += int64(len(d))
	}
	return n
}

// Scatter copies data across dsts in order, until either runs out, and
// returns how many bytes it copied.
func Scatter(dsts [][]byte, data []byte) int {
	n := 0
	for _, dst := range dsts {
		k := copy(dst, data)
		data, n = data[k:], n+k
	}
	return n
}

// NeedleSink takes the whole logical bytes of a needle, in order, while a
// fetch reads them. Reset starts over: a failed attempt's bytes are void
// and another replica's follow. A fetch that returns nil has verified
// everything it wrote since the last Reset; until then the bytes are
// unchecked, so the sink's owner keeps nothing before the fetch succeeds.
// Write must not fail the fetch: a sink that cannot keep the bytes (a full
// disk) notes that itself and answers len(p), nil. Calls come from one
// goroutine at a time.
type NeedleSink interface {
	io.Writer
	Reset()
}

// KeptWriter is what a NeedleSink also implements to be handed the bytes
// of the request's Dsts by WriteKept instead of Write. Those stay unchanged
// until the fetch returns, so the sink may use them where they lie rather
// than copy them (the disk tier writes the memory tier's slots to its file
// from where they lie). WriteKept is Write otherwise: it cannot fail the fetch.
type KeptWriter interface {
	WriteKept(p []byte)
}

// FillWriter is what a NeedleSink also implements to have the fetch read
// the needle's bytes straight into the sink's own buffer, rather than hand
// them to Write, which copies them there. Fill returns room for the next
// bytes, or nothing when the sink takes no more this way (the fetch then
// goes on with Write); Filled takes the first n bytes of the room Fill
// last returned as written, as Write would. Like Write, neither can fail
// the fetch.
type FillWriter interface {
	Fill() []byte
	Filled(n int)
}
