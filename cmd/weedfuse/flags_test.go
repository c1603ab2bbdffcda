package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestCutOption: -options lines split as weed's reader splits them.
func TestCutOption(t *testing.T) {
	for _, tc := range []struct {
		line, name, value string
		ok                bool
	}{
		{"umask=077", "umask", "077", true},
		{"umask 077", "umask", "077", true},
		{"cacheCapacityMB: 64", "cacheCapacityMB", "64", true},
		{"map.uid 1000:0", "map.uid", "1000:0", true},
		{"nonempty=", "nonempty", "", true},
		{"-nonempty", "-nonempty", "", false},
		{"volumeName=a b", "volumeName", "a b", true},
	} {
		name, value, ok := cutOption(tc.line)
		if name != tc.name || value != tc.value || ok != tc.ok {
			t.Errorf("cutOption(%q) = %q, %q, %v; want %q, %q, %v", tc.line, name, value, ok, tc.name, tc.value, tc.ok)
		}
	}
}

func TestExpandHome(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home directory:", err)
	}
	for in, want := range map[string]string{
		"~":         home,
		"~/cache":   filepath.Join(home, "cache"),
		"/tmp/~/x":  "/tmp/~/x",
		"~other/x":  "~other/x",
		"rel/~":     "rel/~",
		"/var/tmp":  "/var/tmp",
		"~/a/../b/": filepath.Join(home, "b"),
	} {
		if got := expandHome(in); got != want {
			t.Errorf("expandHome(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFlagsMeanWeedMounts: the flags that size df and metadata are read,
// not ignored, and -cacheDirMaxEntries=0 keeps every listing as in weed.
func TestFlagsMeanWeedMounts(t *testing.T) {
	c, err := parseFlags([]string{"-collection=c", "-replication=001", "-ttl=60", "-disk=ssd",
		"-collectionQuotaMB=5", "-memoryLimitMB=512", "-cacheDirMaxEntries=0", "-dirIdleEvictSec=30"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.collection != "c" || c.replication != "001" || c.ttlSec != 60 || c.diskType != "ssd" ||
		c.collectionQuotaMB != 5 || c.memoryLimitMB != 512 || c.cacheDirMaxEntries != 0 || c.dirIdleEvictSec != 30 {
		t.Errorf("parsed %+v", c)
	}
	if got := maxCachedListing(c.cacheDirMaxEntries); got != math.MaxInt {
		t.Errorf("-cacheDirMaxEntries=0 keeps at most %d entries, want every listing", got)
	}
	if got := maxCachedListing(1000); got != 1000 {
		t.Errorf("maxCachedListing(1000) = %d", got)
	}
}

// TestOptionsFile: weed's three line forms, a bare or empty boolean, and
// the command line winning over the file.
func TestOptionsFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "options")
	body := "# weed mount options\numask 077\ncacheCapacityMB: 64\nnonempty=\nallowOthers=false\nreadOnly\nfiler.path=/file\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseFlags([]string{"-options=" + file, "-filer.path=/cli"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.umask != "077" || c.cacheCapacityMB != 64 || !c.nonempty || c.allowOthers || !c.readOnly || c.filerPath != "/cli" {
		t.Errorf("parsed %+v", c)
	}
	if err := os.WriteFile(file, []byte("cacheCapacity=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parseFlags([]string{"-options=" + file}, os.Stderr); err == nil {
		t.Error("an unknown option in the file is no error")
	}
}
