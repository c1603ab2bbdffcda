package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// eventually polls cond until it holds or limit passes. The limit bounds a
// hang, it is not a speed assertion.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetadataFollowsFiler changes files on the filer behind the mount's
// back, with the default 60 s metadata TTL: the metadata subscription must
// make each change visible, content and kernel page cache included.
func TestMetadataFollowsFiler(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 2*time.Minute)
	v1 := bytes.Repeat([]byte("version one "), 100_000)
	v2 := bytes.Repeat([]byte("VERSION TWO, LONGER "), 100_000)
	require.NoError(t, c.Put(ctx, "/meta/f.bin", v1))
	require.NoError(t, c.Put(ctx, "/meta/gone.bin", []byte("soon deleted")))
	m := startMount(t, c)
	at := func(name string) string { return filepath.Join(m.Dir, "meta", name) }

	got, err := os.ReadFile(at("f.bin"))
	require.NoError(t, err)
	require.Equal(t, v1, got)
	names := func() string {
		ents, err := os.ReadDir(filepath.Join(m.Dir, "meta"))
		require.NoError(t, err)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return strings.Join(out, " ")
	}
	require.Equal(t, "f.bin gone.bin", names()) // the listing is now cached
	_, err = os.Stat(at("new.bin"))
	require.ErrorIs(t, err, os.ErrNotExist) // caches a negative entry

	require.NoError(t, c.Put(ctx, "/meta/f.bin", v2))
	eventually(t, 30*time.Second, "overwritten content", func() bool {
		got, err := os.ReadFile(at("f.bin"))
		return err == nil && bytes.Equal(got, v2)
	})
	st, err := os.Stat(at("f.bin"))
	require.NoError(t, err)
	if st.Size() != int64(len(v2)) {
		t.Errorf("size after overwrite: got %d, want %d", st.Size(), len(v2))
	}

	require.NoError(t, c.Put(ctx, "/meta/new.bin", []byte("new")))
	eventually(t, 30*time.Second, "created file", func() bool {
		got, err := os.ReadFile(at("new.bin"))
		return err == nil && string(got) == "new"
	})
	eventually(t, 30*time.Second, "created file in the listing", func() bool {
		return names() == "f.bin gone.bin new.bin"
	})

	require.NoError(t, c.Delete(ctx, "/meta/gone.bin"))
	eventually(t, 30*time.Second, "deleted file", func() bool {
		_, err := os.Stat(at("gone.bin"))
		return errors.Is(err, os.ErrNotExist)
	})
	eventually(t, 30*time.Second, "deleted file gone from the listing", func() bool {
		return names() == "f.bin new.bin"
	})
}
