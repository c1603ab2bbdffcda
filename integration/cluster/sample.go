package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path"
	"sync"
)

// SampleTree is what PutSampleData uploads, for checking a mount against it.
// Paths are relative to the root given to PutSampleData.
type SampleTree struct {
	Files    map[string][]byte
	Dirs     []string
	Symlinks map[string]string // path -> target
}

// sampleManyFiles is the size of the sample's large directory.
const sampleManyFiles = 1000

// NewSampleTree returns the sample data set: nested directories, small text
// files, a 20 MiB binary file (more than one chunk at any -maxMB up to 16),
// a relative symlink and a directory of 1000 small files. Its content is
// the same on every call.
func NewSampleTree() *SampleTree {
	t := &SampleTree{
		Files: map[string][]byte{
			"README.txt":               []byte("weedfuse demo data\n"),
			"docs/guide.txt":           []byte("Mount the filer, then read these files.\n"),
			"docs/notes/todo.md":       []byte("- read fast\n- read right\n"),
			"docs/notes/deep/leaf.txt": []byte("the bottom of a nested tree\n"),
			"empty.bin":                {},
		},
		Dirs:     []string{"docs", "docs/notes", "docs/notes/deep", "big", "many", "emptydir"},
		Symlinks: map[string]string{"guide-link": "docs/guide.txt"},
	}
	big := make([]byte, 20<<20)
	rng := rand.NewChaCha8([32]byte{'w', 'e', 'e', 'd', 'f', 'u', 's', 'e'})
	_, _ = rng.Read(big) // ChaCha8.Read never fails
	t.Files["big/random-20MiB.bin"] = big
	for i := range sampleManyFiles {
		t.Files[fmt.Sprintf("many/file-%04d.txt", i)] = fmt.Appendf(nil, "small file number %d\n", i)
	}
	return t
}

// PutSampleData uploads NewSampleTree() under root and returns it.
func (c *Cluster) PutSampleData(ctx context.Context, root string) (*SampleTree, error) {
	t := NewSampleTree()
	for _, d := range t.Dirs {
		if err := c.Mkdir(ctx, path.Join(root, d)); err != nil {
			return nil, fmt.Errorf("sample data: %w", err)
		}
	}
	for name, target := range t.Symlinks {
		if err := c.Symlink(ctx, path.Join(root, name), target); err != nil {
			return nil, fmt.Errorf("sample data: %w", err)
		}
	}
	// A few uploads at a time: one by one, 1000 files take seconds.
	const workers = 8
	names := make(chan string)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range names {
				if err := c.Put(ctx, path.Join(root, name), t.Files[name]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for name := range t.Files {
		select {
		case names <- name:
		case err = <-errs:
			break feed
		}
	}
	close(names)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sample data: %w", err)
	}
	return t, nil
}
