package fs

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"f.bin", true},
		{".hidden", true},
		{"...", true},
		{"naïve ✓", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"/", false},
		{"../etc", false},
		{"nul\x00byte", false},
	} {
		assert.Equal(t, tc.want, validName(tc.name), "%q", tc.name)
	}
}

func TestHidden(t *testing.T) {
	for _, tc := range []struct {
		dir, name string
		include   bool
		want      bool
	}{
		{"/", "etc", false, true},
		{"/", "topics", false, true},
		{"/", "etc", true, false},
		{"/", "data", false, false},
		{"/etc", "iam", false, false}, // a mount of -filer.path=/etc shows it
		{"/a", "etc", false, false},
	} {
		f := &FS{opts: Options{IncludeSystemEntries: tc.include}}
		assert.Equal(t, tc.want, f.hidden(tc.dir, tc.name), "%s %s include=%v", tc.dir, tc.name, tc.include)
	}
}

func TestCleanDir(t *testing.T) {
	for dir, want := range map[string]bool{
		"/": true, "/a": true, "/a/b": true,
		"": false, "a": false, "/a/": false, "/a/../etc": false, "/a/./b": false, "//a": false,
	} {
		assert.Equal(t, want, cleanDir(dir), "%q", dir)
	}
}
