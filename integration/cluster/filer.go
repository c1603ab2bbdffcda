package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// ErrNotFound is wrapped by Get and Entry when the path does not exist.
var ErrNotFound = errors.New("not found")

// Put stores data at path (absolute, e.g. "/dir/file") through the filer's
// HTTP API, creating missing parent directories. Files larger than the
// filer's -maxMB are split into chunks of that size.
func (c *Cluster) Put(ctx context.Context, path string, data []byte) error {
	return c.put(ctx, path, bytes.NewReader(data), int64(len(data)))
}

// PutChunked is Put with chunks of maxMB MiB, as `weed upload -maxMB` or
// `weed filer.copy -maxMB` write them. The filer's HTTP upload writes
// larger chunks than maxMB asks for where they would number 1000 or more
// (weed 4.48: 900 MiB with maxMB=1 came out as 900 chunks of 1 MiB, 1000
// MiB as 250 chunks of 4 MiB), so longer data goes up in parts of at most
// maxUploadChunks chunks, under names of their own, and the file is then
// made over gRPC of all their chunks, as `weed filer.copy` makes its
// files; the parts' entries are deleted, not their chunks.
func (c *Cluster) PutChunked(ctx context.Context, p string, data []byte, maxMB int) error {
	q := url.Values{"maxMB": {strconv.Itoa(maxMB)}}
	chunk := maxMB << 20
	part := maxUploadChunks * chunk
	if len(data) <= part {
		return c.putQuery(ctx, p, bytes.NewReader(data), int64(len(data)), q)
	}
	dir, name := splitPath(p)
	var chunks []*filerpb.FileChunk
	var attrs *filerpb.FuseAttributes
	var parts []string
	for off := 0; off < len(data); off += part {
		end := min(off+part, len(data))
		partName := fmt.Sprintf(".%s.part%d", name, len(parts))
		parts = append(parts, path.Join(dir, partName))
		if err := c.putQuery(ctx, path.Join(dir, partName), bytes.NewReader(data[off:end]), int64(end-off), q); err != nil {
			return err
		}
		e, err := c.Entry(ctx, dir, partName)
		if err != nil {
			return fmt.Errorf("put %s: %w", p, err)
		}
		for _, ch := range e.GetChunks() {
			if ch.GetSize() > uint64(chunk) || ch.GetIsChunkManifest() {
				return fmt.Errorf("put %s: the filer wrote a chunk of %d bytes, over %d MiB", p, ch.GetSize(), maxMB)
			}
			ch.Offset += int64(off)
			chunks = append(chunks, ch)
		}
		if attrs == nil {
			attrs = e.GetAttributes()
		}
	}
	// The parts' whole-file MD5 describes none of the file.
	attrs.FileSize, attrs.Md5 = uint64(len(data)), nil
	resp, err := c.filer.CreateEntry(ctx, &filerpb.CreateEntryRequest{
		Directory: dir,
		Entry:     &filerpb.Entry{Name: name, Chunks: chunks, Attributes: attrs},
	})
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	for _, pp := range parts {
		if err := c.delete(ctx, pp, url.Values{"skipChunkDeletion": {"true"}}); err != nil {
			return err
		}
	}
	return nil
}

// maxUploadChunks is how many chunks PutChunked has the filer write in
// one upload at most (see PutChunked); a test lowers it to cut small data
// into parts.
var maxUploadChunks = 900

// PutOn is Put with the file's chunks on volume server i: the filer asks
// the master for file ids there (dataNode), in volumes of collection (""
// for the default), which the master grows there if it has none.
func (c *Cluster) PutOn(ctx context.Context, i int, collection, path string, data []byte) error {
	if i < 0 || i >= len(c.volumePorts) {
		return fmt.Errorf("put %s: the cluster has no volume server %d", path, i)
	}
	q := url.Values{"dataNode": {c.VolumeAddrs()[i]}}
	if collection != "" {
		q.Set("collection", collection)
	}
	return c.putQuery(ctx, path, bytes.NewReader(data), int64(len(data)), q)
}

// PutFile streams the local file localFile to path, as Put does.
func (c *Cluster) PutFile(ctx context.Context, path, localFile string) error {
	f, err := os.Open(localFile)
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	return c.put(ctx, path, f, st.Size())
}

// put sends a raw-body PUT: the filer takes the body as the file content
// (a POST would have to be multipart/form-data). No Content-Type is set, so
// the filer decides from the name, as for any upload, whether to gzip a
// chunk (it does for .txt and other text types).
func (c *Cluster) put(ctx context.Context, p string, body io.Reader, size int64) error {
	return c.putQuery(ctx, p, body, size, url.Values{})
}

func (c *Cluster) putQuery(ctx context.Context, p string, body io.Reader, size int64, q url.Values) error {
	// Without mode, HTTP uploads get 0660, which other users could not read
	// through a mount.
	q.Set("mode", "0644")
	u := c.filerURL(p, q)
	if size == 0 {
		// An empty non-nil body would be sent chunked, of unknown length.
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
	if err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	req.ContentLength = size
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	defer resp.Body.Close()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("put %s: read answer: %w", p, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("put %s: %s: %s", p, resp.Status, bytes.TrimSpace(msg))
	}
	var r struct {
		Size  int64  `json:"size"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(msg, &r); err != nil {
		return fmt.Errorf("put %s: decode answer %q: %w", p, msg, err)
	}
	if r.Error != "" {
		return fmt.Errorf("put %s: filer: %s", p, r.Error)
	}
	if r.Size != size {
		return fmt.Errorf("put %s: filer stored %d bytes of %d", p, r.Size, size)
	}
	return nil
}

// Get reads the whole file at path through the filer's HTTP API.
func (c *Cluster) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.filerURL(path, nil), nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("get %s: %w", path, ErrNotFound)
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("get %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	return data, nil
}

// Delete removes path, recursively if it is a directory. A missing path is
// not an error.
func (c *Cluster) Delete(ctx context.Context, path string) error {
	return c.delete(ctx, path, url.Values{"recursive": {"true"}})
}

// delete is Delete with the query q.
func (c *Cluster) delete(ctx context.Context, path string, q url.Values) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.filerURL(path, q), nil)
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("delete %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Mkdir creates the directory path with mode 0755, and any missing parents.
// It goes through gRPC because the HTTP API makes directories 0660.
func (c *Cluster) Mkdir(ctx context.Context, path string) error {
	if err := c.createEntry(ctx, path, true, os.ModeDir|0o755, ""); err != nil {
		return fmt.Errorf("mkdir %s: %w", path, err)
	}
	return nil
}

// Symlink creates a symbolic link at path pointing to target. The filer's
// HTTP API cannot make one, so it is a gRPC CreateEntry, as weed mount does:
// the mode carries Go's os.ModeSymlink bit and the target its own field.
func (c *Cluster) Symlink(ctx context.Context, path, target string) error {
	if err := c.createEntry(ctx, path, false, os.ModeSymlink|0o777, target); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", path, target, err)
	}
	return nil
}

// createEntry creates or replaces one entry; the filer creates missing
// parent directories.
func (c *Cluster) createEntry(ctx context.Context, p string, isDir bool, mode os.FileMode, target string) error {
	dir, name := splitPath(p)
	if name == "" {
		return errors.New("no name in path")
	}
	now := time.Now().Unix()
	resp, err := c.filer.CreateEntry(ctx, &filerpb.CreateEntryRequest{
		Directory: dir,
		Entry: &filerpb.Entry{
			Name:        name,
			IsDirectory: isDir,
			Attributes: &filerpb.FuseAttributes{
				FileMode:      uint32(mode),
				Mtime:         now,
				Crtime:        now,
				SymlinkTarget: target,
			},
		},
	})
	if err != nil {
		return err
	}
	if resp.Error != "" {
		return errors.New(resp.Error)
	}
	return nil
}

// PutInline stores a small file at path with its content inline in the
// entry, as the filer keeps small files, over gRPC: no volume server
// write, so thousands take seconds.
func (c *Cluster) PutInline(ctx context.Context, path string, content []byte) error {
	dir, name := splitPath(path)
	now := time.Now().Unix()
	resp, err := c.filer.CreateEntry(ctx, &filerpb.CreateEntryRequest{
		Directory: dir,
		Entry: &filerpb.Entry{
			Name:    name,
			Content: content,
			Attributes: &filerpb.FuseAttributes{
				FileMode: 0o644, FileSize: uint64(len(content)), Mtime: now, Crtime: now,
			},
		},
	})
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		return fmt.Errorf("put inline %s: %w", path, err)
	}
	return nil
}

// Entry looks up the filer entry name in directory dir over gRPC.
func (c *Cluster) Entry(ctx context.Context, dir, name string) (*filerpb.Entry, error) {
	resp, err := c.filer.LookupDirectoryEntry(ctx, &filerpb.LookupDirectoryEntryRequest{Directory: dir, Name: name})
	if err != nil {
		// The filer reports a missing entry as an error whose text says so.
		if status.Code(err) == codes.NotFound || strings.Contains(err.Error(), "no entry is found") {
			return nil, fmt.Errorf("entry %s: %w", path.Join(dir, name), ErrNotFound)
		}
		return nil, fmt.Errorf("entry %s: %w", path.Join(dir, name), err)
	}
	return resp.Entry, nil
}

// Volumes returns the ids of the volumes that hold the chunks of the file
// at path (manifest chunks included, their sub-chunks not), in chunk order,
// each once.
func (c *Cluster) Volumes(ctx context.Context, p string) ([]uint32, error) {
	e, err := c.Entry(ctx, path.Dir(path.Clean("/"+p)), path.Base(p))
	if err != nil {
		return nil, err
	}
	seen := map[uint32]bool{}
	var vids []uint32
	for _, ch := range e.GetChunks() {
		vid := ch.GetFid().GetVolumeId()
		if id := ch.GetFileId(); id != "" {
			v, _, ok := strings.Cut(id, ",")
			n, err := strconv.ParseUint(v, 10, 32)
			if !ok || err != nil {
				return nil, fmt.Errorf("volumes of %s: file id %q", p, id)
			}
			vid = uint32(n)
		}
		if !seen[vid] {
			seen[vid] = true
			vids = append(vids, vid)
		}
	}
	return vids, nil
}

// filerURL escapes p into a filer HTTP URL.
func (c *Cluster) filerURL(p string, q url.Values) string {
	u := url.URL{Scheme: "http", Host: c.FilerAddr(), Path: path.Clean("/" + p), RawQuery: q.Encode()}
	return u.String()
}

// splitPath splits an absolute filer path into its directory and name.
func splitPath(p string) (dir, name string) {
	p = path.Clean("/" + p)
	if p == "/" {
		return "/", ""
	}
	return path.Dir(p), path.Base(p)
}
