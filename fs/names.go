package fs

import (
	"path"
	"strings"
)

// maxNameLen is Linux's NAME_MAX. The kernel lets FUSE names up to 1024
// bytes through (FUSE_NAME_MAX), so the limit is enforced here, as weed
// mount does, with ENAMETOOLONG rather than a look-up that finds nothing.
const maxNameLen = 255

// validName tells whether a name from the filer can be served as one
// component of a path. The filer stores what clients send it; a name with
// a slash, a NUL, or one that is empty, "." or "..", would let a listing
// or a metadata event address another path than its own, so such entries
// are skipped, never served.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxNameLen &&
		!strings.ContainsAny(name, "/\x00")
}

// cleanDir tells whether dir is an absolute, clean filer path, as every
// directory the filer names in an event must be: a path that cleaning
// would change ("/a/../etc") is not resolved at all.
func cleanDir(dir string) bool {
	return strings.HasPrefix(dir, "/") && path.Clean(dir) == dir
}

// systemDirs are the filer's own directories at its root that weed mount
// hides unless -includeSystemEntries (weed/mount/meta_cache's
// IsHiddenSystemEntry): /topics holds message-queue data and the filer's
// logs (SystemLogDir), /etc its configuration, S3 identities with their
// secret keys included (/etc/iam). Only the filer's root is concerned, so
// a mount of -filer.path=/etc shows /etc's contents.
var systemDirs = map[string]bool{"topics": true, "etc": true}

// hidden tells whether the entry name of filer directory dir is hidden:
// left out of listings and answered ENOENT by lookups.
func (f *FS) hidden(dir, name string) bool {
	return !f.opts.IncludeSystemEntries && dir == "/" && systemDirs[name]
}

// served tells whether entry name of filer directory dir is one the mount
// shows.
func (f *FS) served(dir, name string) bool {
	return validName(name) && !f.hidden(dir, name)
}
