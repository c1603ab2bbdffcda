package chunkmap

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

var update = flag.Bool("update", false, "rewrite the output part of testdata/*.golden")

// A golden file is an input part, the separator line, and an output part.
// Input lines:
//
//	chunk <file id> <offset> <size> <modified ts ns>
//	views <offset> <size> <file size>
//
// Blank lines and lines starting with # are comments. The output part lists
// the extent, the intervals, and the views of each "views" line; -update
// rewrites it from the current code.
const goldenSep = "== output =="

type goldenQuery struct{ off, size, fileSize int64 }

func parseGolden(t *testing.T, input string) ([]*filerpb.FileChunk, []goldenQuery) {
	t.Helper()
	var chunks []*filerpb.FileChunk
	var queries []goldenQuery
	sc := bufio.NewScanner(strings.NewReader(input))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		ints := func(fields []string) []int64 {
			out := make([]int64, len(fields))
			for i, s := range fields {
				v, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					t.Fatalf("line %d %q: %v", n, line, err)
				}
				out[i] = v
			}
			return out
		}
		switch {
		case f[0] == "chunk" && len(f) == 5:
			v := ints(f[2:])
			chunks = append(chunks, ch(f[1], v[0], uint64(v[1]), v[2]))
		case f[0] == "views" && len(f) == 4:
			v := ints(f[1:])
			queries = append(queries, goldenQuery{v[0], v[1], v[2]})
		default:
			t.Fatalf("line %d %q: want chunk <fid> <off> <size> <ts> or views <off> <size> <fileSize>", n, line)
		}
	}
	return chunks, queries
}

func renderGolden(m *Map, queries []goldenQuery) string {
	var b strings.Builder
	fmt.Fprintf(&b, "extent %d\n", m.Extent())
	for _, v := range m.Intervals() {
		fmt.Fprintf(&b, "interval [%d,%d) %s chunkoff=%d\n", v.FileOff, v.FileOff+v.Len, v.Chunk.FileID, v.ChunkOff)
	}
	for _, q := range queries {
		fmt.Fprintf(&b, "views %d %d %d\n", q.off, q.size, q.fileSize)
		for _, v := range m.Views(nil, q.off, q.size, q.fileSize) {
			if v.Hole {
				fmt.Fprintf(&b, "  hole [%d,%d)\n", v.FileOff, v.FileOff+v.Len)
			} else {
				fmt.Fprintf(&b, "  data [%d,%d) %s chunkoff=%d\n", v.FileOff, v.FileOff+v.Len, v.Chunk.FileID, v.ChunkOff)
			}
		}
	}
	return b.String()
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.golden files")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			input, want, found := strings.Cut(string(raw), goldenSep+"\n")
			if !found && !*update {
				t.Fatalf("no %q line; run with -update to write the output", goldenSep)
			}
			chunks, queries := parseGolden(t, input)
			m := mustBuild(t, chunks)
			got := renderGolden(m, queries)
			if *update {
				if err := os.WriteFile(path, []byte(input+goldenSep+"\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("got:\n%swant:\n%s(run go test ./chunkmap -run TestGolden -update to accept)", got, want)
			}
		})
	}
}
