package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseIDMap reads weed mount's -map.uid / -map.gid value: comma-separated
// <local>:<filer> pairs. It returns the map from filer id to local id,
// which is the direction a read-only mount needs: the attributes it shows.
// Unlike weed mount, which panics on a pair without a colon, a malformed
// value is an error.
func parseIDMap(flag, s string) (map[uint32]uint32, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := map[uint32]uint32{}
	for _, pair := range strings.Split(s, ",") {
		local, filer, ok := strings.Cut(strings.TrimSpace(pair), ":")
		if !ok {
			return nil, fmt.Errorf("-%s %q: want <local>:<filer> pairs, comma-separated", flag, s)
		}
		l, err := strconv.ParseUint(local, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("-%s %q: local id %q: %w", flag, s, local, err)
		}
		f, err := strconv.ParseUint(filer, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("-%s %q: filer id %q: %w", flag, s, filer, err)
		}
		m[uint32(f)] = uint32(l)
	}
	return m, nil
}
