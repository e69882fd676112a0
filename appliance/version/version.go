// Package version holds the build's identity, stamped by the linker
// (see the Makefile's LDFLAGS).
package version

import "runtime"

// Set with -ldflags "-X github.com/omertaos/omertaos/appliance/version.Version=...".
var (
	Version = "dev"
	Commit  = "unknown"
)

// Info is the build identity as served by the API and printed by `omerta version`.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Get returns the running binary's identity.
func Get() Info {
	return Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
}
