package filer

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// fakeFiler answers GetFilerConfiguration and LookupDirectoryEntry: every
// name exists but "missing"; "secret" is refused. It lists any directory
// as fakeListed entries named e0000…; with breakAfter set, a listing's
// stream breaks as a dying filer's would after that many entries. It has
// no directory /missing.
type fakeFiler struct {
	filerpb.UnimplementedSeaweedFilerServer
	breakAfter int
}

const fakeListed = 100

func (f fakeFiler) ListEntries(r *filerpb.ListEntriesRequest, stream grpc.ServerStreamingServer[filerpb.ListEntriesResponse]) error {
	from := 0
	if r.StartFromFileName != "" {
		fmt.Sscanf(r.StartFromFileName, "e%04d", &from)
		from++
	}
	if r.Directory == "/missing" {
		return status.Error(codes.NotFound, "no such directory")
	}
	sent := 0
	broken := func() bool { return f.breakAfter > 0 && sent == f.breakAfter }
	for i := from; i < fakeListed && uint32(sent) < r.Limit; i++ {
		if broken() {
			return status.Error(codes.Unavailable, "connection reset")
		}
		if err := stream.Send(&filerpb.ListEntriesResponse{Entry: &filerpb.Entry{Name: fmt.Sprintf("e%04d", i)}}); err != nil {
			return err
		}
		sent++
	}
	if broken() { // even after the last entry asked for
		return status.Error(codes.Unavailable, "connection reset")
	}
	return nil
}

func (fakeFiler) GetFilerConfiguration(context.Context, *filerpb.GetFilerConfigurationRequest) (*filerpb.GetFilerConfigurationResponse, error) {
	return &filerpb.GetFilerConfigurationResponse{}, nil
}

func (fakeFiler) LookupDirectoryEntry(_ context.Context, r *filerpb.LookupDirectoryEntryRequest) (*filerpb.LookupDirectoryEntryResponse, error) {
	switch r.Name {
	case "missing":
		return nil, status.Error(codes.NotFound, "no entry is found in filer store")
	case "secret":
		return nil, status.Error(codes.PermissionDenied, "no")
	}
	return &filerpb.LookupDirectoryEntryResponse{Entry: &filerpb.Entry{Name: r.Name}}, nil
}

// fakeLocations is what fakeFiler's LookupVolume answers, by volume id.
var fakeLocations sync.Map

func (fakeFiler) LookupVolume(_ context.Context, r *filerpb.LookupVolumeRequest) (*filerpb.LookupVolumeResponse, error) {
	resp := &filerpb.LookupVolumeResponse{LocationsMap: map[string]*filerpb.Locations{}}
	for _, id := range r.VolumeIds {
		locs, _ := fakeLocations.Load(id)
		l, _ := locs.([]*filerpb.Location)
		resp.LocationsMap[id] = &filerpb.Locations{Locations: l}
	}
	return resp, nil
}

// serveFake serves a fakeFiler on addr (":0" picks a port) until the test
// ends or stop is called.
func serveFake(t *testing.T, addr string) (gotAddr string, stop func(), err error) {
	return serveFiler(t, addr, fakeFiler{})
}

// serveFiler serves f on addr as serveFake does.
func serveFiler(t *testing.T, addr string, f fakeFiler) (gotAddr string, stop func(), err error) {
	var ln net.Listener
	for i := 0; i < 50; i++ { // a just-closed port may linger a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer()
	filerpb.RegisterSeaweedFilerServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), srv.Stop, nil
}

// spec is the weed filer address whose gRPC port is grpcAddr's.
func spec(t *testing.T, grpcAddr string) string {
	host, port, err := net.SplitHostPort(grpcAddr)
	require.NoError(t, err)
	return fmt.Sprintf("%s:1.%s", host, port)
}

// fakeClient is a Client of a fakeFiler served until the test ends.
func fakeClient(t *testing.T) *Client {
	t.Helper()
	addr, _, err := serveFake(t, "127.0.0.1:0")
	require.NoError(t, err)
	c, err := New(context.Background(), Options{Addresses: []string{spec(t, addr)}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestErrors(t *testing.T) {
	c := fakeClient(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		want error
	}{
		{"here", nil},
		{"missing", iofs.ErrNotExist},
		{"secret", iofs.ErrPermission},
	} {
		_, err := c.LookupEntry(ctx, "/d", tc.name)
		if tc.want == nil {
			assert.NoError(t, err, tc.name)
		} else {
			assert.ErrorIs(t, err, tc.want, tc.name)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := c.LookupEntry(cancelled, "/d", "here")
	assert.ErrorIs(t, err, context.Canceled)
}

// TestListResumes lists through a filer whose streams break after a few
// entries, with a sound one beside it: the call goes on from the entry
// after the last one it passed on, so each entry comes once and in order,
// and the limit counts the entries of every stream together.
func TestListResumes(t *testing.T) {
	flaky, _, err := serveFiler(t, "127.0.0.1:0", fakeFiler{breakAfter: 7})
	require.NoError(t, err)
	sound, _, err := serveFake(t, "127.0.0.1:0")
	require.NoError(t, err)
	c, err := New(context.Background(), Options{Addresses: []string{spec(t, flaky), spec(t, sound)}})
	require.NoError(t, err)
	defer c.Close()
	for _, tc := range []struct {
		from  string
		limit int
		first int
		n     int
	}{
		{"", 5, 0, 5},           // within the first stream
		{"", 7, 0, 7},           // all asked for, then the stream breaks
		{"", 30, 0, 30},         // the rest from the sound filer
		{"e0010", 1000, 11, 89}, // to the end of the listing
		{"e0099", 10, 0, 0},     // nothing after the last
	} {
		var got []string
		c.cur.Store(0) // the flaky filer first, each time
		err := c.List(context.Background(), "/d", tc.from, tc.limit, func(e *filerpb.Entry) { got = append(got, e.Name) })
		require.NoError(t, err, "from %q", tc.from)
		var want []string
		for i := tc.first; i < tc.first+tc.n; i++ {
			want = append(want, fmt.Sprintf("e%04d", i))
		}
		assert.Equal(t, want, got, "from %q, limit %d", tc.from, tc.limit)
	}
	err = c.List(context.Background(), "/missing", "", 10, func(*filerpb.Entry) {})
	assert.ErrorIs(t, err, iofs.ErrNotExist)
}

// TestOutage stops the filer under a client: a call waits up to ReadyWait
// for it, then fails with ErrUnavailable; a call made while it restarts
// waits for it and succeeds.
func TestOutage(t *testing.T) {
	addr, stop, err := serveFake(t, "127.0.0.1:0")
	require.NoError(t, err)
	c, err := New(context.Background(), Options{Addresses: []string{spec(t, addr)}, ReadyWait: time.Second})
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	_, err = c.LookupEntry(ctx, "/d", "f")
	require.NoError(t, err)
	assert.True(t, c.Up())

	stop()
	start := time.Now()
	_, err = c.LookupEntry(ctx, "/d", "f")
	took := time.Since(start)
	require.ErrorIs(t, err, ErrUnavailable)
	assert.False(t, errors.Is(err, iofs.ErrNotExist))
	assert.False(t, c.Up())
	assert.InDelta(t, time.Second, took, float64(700*time.Millisecond), "the wait is ReadyWait")

	// The filer comes back while a call waits: the call gets its answer.
	c.opts.ReadyWait = 5 * time.Second
	go func() {
		time.Sleep(500 * time.Millisecond)
		if _, _, err := serveFake(t, addr); err != nil {
			t.Errorf("restart the filer: %v", err)
		}
	}()
	start = time.Now()
	_, err = c.LookupEntry(ctx, "/d", "f")
	require.NoError(t, err)
	t.Logf("a call made during the outage answered %v later", time.Since(start).Round(time.Millisecond))
	assert.Less(t, time.Since(start), 4*time.Second, "reconnects within about 2 s")
	assert.True(t, c.Up())
}

// TestLocationsWhileRestarting: a volume the filer lists on no server, as
// while its only server restarts, is looked for at its last known address
// once its cached locations went stale; one never seen is an error.
func TestLocationsWhileRestarting(t *testing.T) {
	c := fakeClient(t)
	ctx := context.Background()
	fakeLocations.Store("7", []*filerpb.Location{{Url: "127.0.0.1:8080"}})
	t.Cleanup(func() { fakeLocations.Delete("7") })
	got, err := c.Locations(ctx, 7)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:8080"}, got)

	fakeLocations.Store("7", []*filerpb.Location(nil)) // the server went down
	c.Invalidate(7)
	got, err = c.Locations(ctx, 7)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:8080"}, got, "the last known address")

	fakeLocations.Store("7", []*filerpb.Location{{Url: "127.0.0.1:8081"}}) // moved meanwhile
	got, err = c.Locations(ctx, 7)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:8081"}, got, "stale locations were served instead of the filer's")

	_, err = c.Locations(ctx, 8)
	require.Error(t, err, "a volume listed nowhere and never seen")
}
