package config

import (
	_ "embed" // REFERENCE.md
	"path/filepath"
	"strings"
)

// Reference is REFERENCE.md, the file's reference: every key, its type,
// default and meaning. `macvsw config reference` prints it, so the
// reference of the binary at hand is always one command away.
//
//go:embed REFERENCE.md
var Reference string

// ReferenceURL is where REFERENCE.md lives in macvsw's repository.
const ReferenceURL = "https://github.com/macvsw/macvsw/blob/main/config/REFERENCE.md"

// NetnsDir is where `ip netns add NAME` mounts named network namespaces
// (iproute2's NETNS_RUN_DIR): a netns given as a bare NAME means
// NetnsDir/NAME, as `ip -n NAME` does.
const NetnsDir = "/var/run/netns"

// NetnsPath turns a netns as a user gives it into a path: a bare name
// (no '/') is the named namespace NetnsDir/NAME, anything else is taken
// as a path and returned as it is (validation wants it absolute); ""
// stays "" (the daemon's own namespace, where that is allowed).
func NetnsPath(s string) string {
	if s == "" || strings.ContainsRune(s, '/') || s == "." || s == ".." {
		return s
	}
	return filepath.Join(NetnsDir, s)
}
