package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/internal/filer"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// TestReaddirentOutlivesInterrupt interrupts a readdir while the next page
// is on its way: the page must still come, in order, with no error, since
// go-fuse would turn an error after some entries into lost entries.
func TestReaddirentOutlivesInterrupt(t *testing.T) {
	meta := &streamMeta{n: dirPage + 10, holdAt: dirPage, release: make(chan struct{})}
	d := testDir(t, meta, Options{}, false)
	s := openDir(t, d)

	var got []string
	for len(got) < dirPage+2 {
		r, errno := readReply(t, s, dirPage+2-len(got))
		require.Zero(t, errno)
		require.NotEmpty(t, r, "after %d entries", len(got))
		got = append(got, r...)
	}
	require.Equal(t, append([]string{".", ".."}, names(0, dirPage)...), got)

	interrupted, cancel := context.WithCancel(context.Background())
	cancel()
	time.AfterFunc(50*time.Millisecond, func() { close(meta.release) })
	for i := dirPage; i < meta.n; i++ {
		e, errno := s.Readdirent(interrupted)
		if errno != 0 || e == nil || e.Name != fmt.Sprintf("e%04d", i) {
			t.Fatalf("entry %d after an interrupt: got %v, %v", i, e, errno)
		}
	}
	if e, errno := s.Readdirent(interrupted); e != nil || errno != 0 {
		t.Errorf("after the last entry: got %v, %v, want the end", e, errno)
	}
}

// streamMeta lists n entries named e0000…, streaming them: entries from
// index holdAt on wait until release is closed, and with err set the
// listing fails with it at index failAt. It counts its List calls.
type streamMeta struct {
	Meta
	n       int
	holdAt  int
	release chan struct{}
	failAt  int
	err     error
	calls   atomic.Int32
}

func (m *streamMeta) List(ctx context.Context, dir, after string, limit int, fn func(*filerpb.Entry)) error {
	m.calls.Add(1)
	from := 0
	if after != "" {
		from, _ = strconv.Atoi(after[1:]) // past 9999, names grow a digit
		from++
	}
	for i := from; i < m.n && i < from+limit; i++ {
		if i == m.failAt && m.err != nil {
			return m.err
		}
		if i == m.holdAt && m.release != nil {
			select {
			case <-m.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		fn(&filerpb.Entry{Name: fmt.Sprintf("e%04d", i), Attributes: &filerpb.FuseAttributes{FileMode: 0o644}})
	}
	return nil
}

// testDir is a directory /d of a file system over meta, closed when the
// test ends; watched says whether the file system trusts its listings.
func testDir(t *testing.T, meta Meta, opts Options, watched bool) *dir {
	fsys := New(meta, nil, nil, opts)
	t.Cleanup(fsys.Close)
	fsys.watched.Store(watched)
	d := &dir{}
	d.init(fsys, "/d", "/d", &filerpb.Entry{Name: "d", IsDirectory: true})
	return d
}

// openDir opens d for listing until the test ends.
func openDir(t *testing.T, d *dir) *dirStream {
	s := newDirStream(d)
	t.Cleanup(func() { s.Releasedir(context.Background(), 0) })
	return s
}

// readReply calls Readdirent as go-fuse does for one READDIRPLUS request:
// with one context, until it returns nil or max entries came.
func readReply(t *testing.T, s *dirStream, max int) (names []string, errno syscall.Errno) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for len(names) < max {
		e, errno := s.Readdirent(ctx)
		if errno != 0 || e == nil {
			return names, errno
		}
		names = append(names, e.Name)
	}
	return names, 0
}

func names(from, to int) []string {
	var l []string
	for i := from; i < to; i++ {
		l = append(l, fmt.Sprintf("e%04d", i))
	}
	return l
}

// TestReplyEndsEarly: once a reply has minReply entries, it ends with
// what has come instead of waiting for the filer, and the next reply goes
// on where it stopped; before that, a reply waits.
func TestReplyEndsEarly(t *testing.T) {
	meta := &streamMeta{n: 300, holdAt: 200, release: make(chan struct{})}
	d := testDir(t, meta, Options{}, false)
	s := openDir(t, d)

	// The first 200 come; the reply holds them all and ends, the filer
	// being held.
	require.Eventually(t, func() bool { return s.feed.waiting() == 200 }, 5*time.Second, time.Millisecond)
	got, errno := readReply(t, s, 1000)
	require.Zero(t, errno)
	assert.Equal(t, append([]string{".", ".."}, names(0, 200)...), got)

	// The next reply waits, having no entries yet.
	time.AfterFunc(20*time.Millisecond, func() { close(meta.release) })
	got, errno = readReply(t, s, 1000)
	require.Zero(t, errno)
	assert.Equal(t, names(200, 300), got)
	got, errno = readReply(t, s, 1000)
	assert.Zero(t, errno)
	assert.Empty(t, got, "the end")
}

// TestFeedWaitsForItsReader: the feed holds about two pages at most, so
// that a large directory read slowly is not held whole.
func TestFeedWaitsForItsReader(t *testing.T) {
	meta := &streamMeta{n: 5 * dirPage}
	d := testDir(t, meta, Options{}, false)
	f := startListFeed(d)
	defer f.stop()

	require.Eventually(t, func() bool { return f.waiting() == dirPage }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, meta.calls.Load(), "one page, untaken, stops the feed")
	var all []*filerpb.Entry
	for {
		got, end, err := f.take(true)
		require.NoError(t, err)
		all = append(all, got...)
		if end {
			break
		}
		assert.LessOrEqual(t, len(got), 2*dirPage)
	}
	assert.Len(t, all, 5*dirPage)
	assert.EqualValues(t, 6, meta.calls.Load(), "five full pages, then an empty one")
}

// TestListingEnds lists to the end in the ways a listing ends: whole (it
// is then kept), cut short by an error after some entries (they come, then
// the error, and nothing is kept), and failed at once with the filer
// unreachable and a listing kept from before (it stands in whole).
func TestListingEnds(t *testing.T) {
	down := fmt.Errorf("list: %w", filer.ErrUnavailable)
	for _, tc := range []struct {
		name      string
		failAt    int
		err       error
		kept      []*filerpb.Entry
		want      []string
		wantErrno syscall.Errno
		keeps     bool
	}{
		{name: "whole", want: names(0, 300), keeps: true},
		{name: "cut short", failAt: 150, err: down, kept: []*filerpb.Entry{{Name: "old"}}, want: names(0, 150), wantErrno: syscall.EIO},
		{name: "refused", failAt: 150, err: fmt.Errorf("list: %w", iofs.ErrPermission), want: names(0, 150), wantErrno: syscall.EACCES},
		{name: "down, a listing kept", err: down, kept: []*filerpb.Entry{{Name: "old"}}, want: []string{"old"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := &streamMeta{n: 300, failAt: tc.failAt, err: tc.err}
			d := testDir(t, meta, Options{MetaTTL: time.Hour}, true)
			if tc.kept != nil {
				d.listing = newKept(d.path, tc.kept, d.fsys.listings.gen(d.path))
				d.listing.at = time.Time{} // old: not fresh
			}
			s := openDir(t, d)
			var got []string
			var errno syscall.Errno
			for {
				r, e := readReply(t, s, 1000)
				got = append(got, r...)
				if errno = e; e != 0 || len(r) == 0 {
					break
				}
			}
			assert.Equal(t, append([]string{".", ".."}, tc.want...), got)
			assert.Equal(t, tc.wantErrno, errno)
			k, ok := d.cachedListing()
			assert.Equal(t, tc.keeps, ok)
			if tc.keeps {
				assert.Len(t, k.entries, 300)
			}
		})
	}
}

// TestListingNotKept: a listing read while the directory changed, or one
// larger than Options.MaxCachedListing, is not kept.
func TestListingNotKept(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		change bool
	}{
		{"changed meanwhile", 10, true},
		{"too large", defaultMaxCachedListing + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := &streamMeta{n: tc.n}
			d := testDir(t, meta, Options{MetaTTL: time.Hour}, true)
			s := openDir(t, d)
			if tc.change {
				d.fsys.dirChanged(d.path)
			}
			n := 0
			for {
				r, errno := readReply(t, s, 1<<20)
				require.Zero(t, errno)
				if len(r) == 0 {
					break
				}
				n += len(r)
			}
			assert.Equal(t, tc.n+2, n)
			_, ok := d.cachedListing()
			assert.False(t, ok)
		})
	}
}

// TestSeekdir: a seek back restarts the listing and skips to the offset.
func TestSeekdir(t *testing.T) {
	meta := &streamMeta{n: 300}
	d := testDir(t, meta, Options{}, false)
	s := openDir(t, d)
	got, errno := readReply(t, s, 100)
	require.Zero(t, errno)
	require.Len(t, got, 100)
	// Offset 52: ".", "..", e0000…e0049 were taken.
	require.Zero(t, s.Seekdir(context.Background(), 52))
	got, errno = readReply(t, s, 10)
	require.Zero(t, errno)
	assert.Equal(t, names(50, 60), got)
}
