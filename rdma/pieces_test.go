package rdma

import "testing"

func TestSplitPieces(t *testing.T) {
	for _, tc := range []struct {
		n, maxPieces, maxMsg int
		piece, count         int
	}{
		{1, 8, 1 << 30, 4096, 1},                  // tiny: one piece
		{minCRCPiece, 8, 1 << 30, minCRCPiece, 1}, // one minimum piece
		{256 << 10, 8, 1 << 30, 128 << 10, 2},
		{1 << 20, 8, 1 << 30, 128 << 10, 8},
		{1 << 20, 1, 1 << 30, 1 << 20, 1}, // the unpipelined path
		{4 << 20, 8, 1 << 30, 512 << 10, 8},
		{4<<20 + 5, 8, 1 << 30, 512<<10 + 4096, 8},
		{4 << 20, 8, 256 << 10, 256 << 10, 16}, // a small max message: more, smaller pieces
		{1 << 20, 100, 1 << 30, 128 << 10, 8},
	} {
		piece, count := splitPieces(tc.n, tc.maxPieces, tc.maxMsg)
		if piece != tc.piece || count != tc.count {
			t.Errorf("splitPieces(%d, %d, %d) = %d×%d, want %d×%d", tc.n, tc.maxPieces, tc.maxMsg, count, piece, tc.count, tc.piece)
		}
		if piece*count < tc.n || piece*(count-1) >= tc.n || count > maxChain || piece > tc.maxMsg && count < maxChain {
			t.Errorf("splitPieces(%d, %d, %d) = %d×%d does not tile the read", tc.n, tc.maxPieces, tc.maxMsg, count, piece)
		}
	}
}
