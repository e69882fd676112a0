package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/omertaos/omertaos/appliance/atomicfile"
)

// runscFlags are passed to runsc ahead of the runc-style arguments the
// shim gives. --network=none: the sandbox gets loopback only, and without
// it runsc refuses to start in the shim's (the host's) network namespace.
// --oci-seccomp: runsc applies the spec's seccomp profile to the
// sandboxed processes too (by default it ignores it).
var runscFlags = []string{"--network=none", "--oci-seccomp"}

// wrapperPath is the script the runc shim runs in place of runc for
// sandboxed agents: Debian ships runsc but no containerd shim for it.
func (r *Runtime) wrapperPath() string { return filepath.Join(r.runDir, "runsc-shim-wrapper") }

func (r *Runtime) runscRoot() string {
	if r.runtimeRoot != "" {
		return filepath.Join(r.runtimeRoot, "runsc")
	}
	return "/run/containerd/runsc"
}

// SandboxBinary is the wrapper given to the runc shim as its runc binary
// for sandboxed agents (and to `ctr run --runc-binary` for comparisons).
func (r *Runtime) SandboxBinary() string { return r.wrapperPath() }

func (r *Runtime) writeWrapper() error {
	script := fmt.Sprintf("#!/bin/sh\n# Written by omerta's agent runtime: gVisor under containerd's runc v2 shim.\nexec %s %s \"$@\"\n",
		shellQuote(r.runsc), strings.Join(runscFlags, " "))
	if _, err := atomicfile.WriteFile(r.wrapperPath(), []byte(script), 0o755); err != nil {
		return fmt.Errorf("writing the gVisor wrapper: %w", err)
	}
	return nil
}

// shellQuote quotes s for sh: inside single quotes nothing is special but
// the single quote itself.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// HasSandbox reports whether runsc is installed where the Runtime expects.
func (r *Runtime) HasSandbox() bool {
	fi, err := os.Stat(r.runsc)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
