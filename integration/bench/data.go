package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// filerRoot is the filer directory that every mount shows at its root:
// weed mount and weedfuse mount it (-filer.path), and the S3 gateway
// serves each directory in it as a bucket, so /bench is the bucket "bench"
// and the S3 peers (peers.go) read the very bytes the two mounts read.
const filerRoot = "/buckets"

// onFiler is the filer path of p, a path as the mounts show it.
func onFiler(p string) string { return filerRoot + p }

// The data set, as paths under a mount's root; onFiler gives the filer's.
const (
	seqDir   = "/bench"
	seqName  = "seq1g"
	seqPath  = seqDir + "/" + seqName
	seqSize  = 1 << 30
	smallDir = "/bench/small"
	smallN   = 2000
	smallLen = 128 << 10
	bigDir   = "/bench/big"
	bigN     = 10_000
	hugeDir  = "/bench/huge"
	hugeN    = 100_000
)

// dataset is what loadData stored, for checking reads through a mount.
type dataset struct {
	seqSum [sha256.Size]byte
}

// randomBytes returns n pseudo-random bytes determined by seed, so that a
// file's content can be made again to check it. Random bytes do not
// compress, so neither the filer nor the volume server can shrink them.
func randomBytes(seed uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	// ChaCha8.Read never fails.
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func smallName(i int) string { return fmt.Sprintf("f%04d", i) }
func bigName(i int) string   { return fmt.Sprintf("e%05d", i) }
func hugeName(i int) string  { return fmt.Sprintf("h%06d", i) }

// loadHuge stores hugeN entries with inline content in hugeDir, as loadData
// stores bigDir's.
func loadHuge(ctx context.Context, c *cluster.Cluster) error {
	began := time.Now()
	err := forEach(ctx, hugeN, 16, func(ctx context.Context, i int) error {
		return c.PutInline(ctx, onFiler(hugeDir+"/"+hugeName(i)), []byte(hugeName(i)+"\n"))
	})
	if err != nil {
		return fmt.Errorf("load %s: %w", hugeDir, err)
	}
	log.Printf("data: %d entries in %s in %v", hugeN, hugeDir, time.Since(began).Round(time.Millisecond))
	return nil
}

// loadData stores the benchmark's files: a 1 GiB file of random bytes, 2000
// files of 128 KiB in one directory, and 10,000 tiny entries in another.
func loadData(ctx context.Context, c *cluster.Cluster) (*dataset, error) {
	began := time.Now()
	ds := &dataset{}
	sum, err := putSeq(ctx, c)
	if err != nil {
		return nil, err
	}
	ds.seqSum = sum
	// Hand the 1 GiB back rather than keep it in this process, beside the
	// mounts, for the rest of the run.
	debug.FreeOSMemory()
	log.Printf("data: %s (1 GiB) in %v", seqPath, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	err = forEach(ctx, smallN, 8, func(ctx context.Context, i int) error {
		return c.Put(ctx, onFiler(smallDir+"/"+smallName(i)), randomBytes(uint64(1+i), smallLen))
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", smallDir, err)
	}
	log.Printf("data: %d files of 128 KiB in %s in %v", smallN, smallDir, time.Since(began).Round(time.Millisecond))

	// Entries with inline content, created over gRPC: one round trip each
	// and no volume server, so 10,000 take seconds rather than minutes.
	began = time.Now()
	err = forEach(ctx, bigN, 16, func(ctx context.Context, i int) error {
		err := c.PutInline(ctx, onFiler(bigDir+"/"+bigName(i)), []byte(bigName(i)+"\n"))
		if err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", bigDir, err)
	}
	log.Printf("data: %d entries in %s in %v", bigN, bigDir, time.Since(began).Round(time.Millisecond))
	return ds, nil
}

// putSeq stores the 1 GiB file and returns its sha256.
func putSeq(ctx context.Context, c *cluster.Cluster) ([sha256.Size]byte, error) {
	seq := randomBytes(0, seqSize)
	return sha256.Sum256(seq), c.Put(ctx, onFiler(seqPath), seq)
}

// verify reads the data through the mount at root and compares it with
// what was stored: a benchmark of a mount that reads wrong bytes is void.
func (ds *dataset) verify(root string) error {
	f, err := os.Open(filepath.Join(root, seqPath))
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("verify %s: %w", seqPath, err)
	}
	if n != seqSize || !bytes.Equal(h.Sum(nil), ds.seqSum[:]) {
		return fmt.Errorf("verify %s: read %d bytes whose sha256 differs from the %d stored", seqPath, n, seqSize)
	}
	for _, i := range []int{0, smallN / 2, smallN - 1} {
		p := filepath.Join(root, smallDir, smallName(i))
		got, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if !bytes.Equal(got, randomBytes(uint64(1+i), smallLen)) {
			return fmt.Errorf("verify %s: %d bytes that differ from the %d stored", p, len(got), smallLen)
		}
	}
	ents, err := os.ReadDir(filepath.Join(root, bigDir))
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if len(ents) != bigN {
		return fmt.Errorf("verify %s: %d entries, want %d", bigDir, len(ents), bigN)
	}
	return nil
}
