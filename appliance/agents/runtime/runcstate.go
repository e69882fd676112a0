package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Bounds on the runtimes' state: entries read from a state root, bytes of
// a tool's output, the time a tool may run.
const (
	maxStateEntries = 4096
	maxToolOutput   = 4 << 20
	toolTimeout     = 15 * time.Second
)

// Names of the low-level runtimes whose state roots the Runtime reads.
const (
	kindRunc  = "runc"
	kindRunsc = "runsc"
)

// runcContainer is one entry of `runc list --format json`; runsc prints
// the same fields.
type runcContainer struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
}

// parseRuncList reads a list's JSON ("null" when the root is empty),
// refusing more than maxStateEntries entries or an invalid id.
func parseRuncList(b []byte) ([]runcContainer, error) {
	if len(b) > maxToolOutput {
		return nil, fmt.Errorf("container list: longer than %d bytes", maxToolOutput)
	}
	var out []runcContainer
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("container list: %w", err)
	}
	if dec.More() {
		return nil, errors.New("container list: data after the list")
	}
	if len(out) > maxStateEntries {
		return nil, fmt.Errorf("container list: more than %d containers", maxStateEntries)
	}
	for i, c := range out {
		if err := validateID(c.ID); err != nil {
			return nil, fmt.Errorf("container list: [%d].id %s: %w", i, quote(c.ID), err)
		}
		if c.Pid < 0 {
			return nil, fmt.Errorf("container list: [%d].pid %d is negative", i, c.Pid)
		}
	}
	return out, nil
}

// runcRoot is where runc keeps the state of the namespace's containers:
// the runc shim adds the namespace to the root it is given.
func (r *Runtime) runcRoot() string {
	if r.runtimeRoot != "" {
		return filepath.Join(r.runtimeRoot, "runc", r.ns)
	}
	return filepath.Join("/run/containerd/runc", r.ns)
}

// stateRoot is the program the shim runs for kind and the root it gives
// it (runsc through the wrapper, with the flags the shim used).
func (r *Runtime) stateRoot(kind string) (bin, root string) {
	if kind == kindRunsc {
		return r.wrapperPath(), filepath.Join(r.runscRoot(), r.ns)
	}
	return r.runcBin, r.runcRoot()
}

// stateIDs lists the container ids a state root holds, without running
// anything: runc keeps a directory per container, runsc a file
// ID_sandbox:SANDBOX.state. A missing root holds nothing.
func stateIDs(kind, root string) ([]string, error) {
	d, err := os.Open(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the %s state in %s: %w", kind, quote(root), err)
	}
	defer d.Close()
	ents, err := d.ReadDir(maxStateEntries + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading the %s state in %s: %w", kind, quote(root), err)
	}
	if len(ents) > maxStateEntries {
		return nil, fmt.Errorf("the %s state in %s: more than %d entries", kind, quote(root), maxStateEntries)
	}
	var out []string
	for _, e := range ents {
		id := ""
		switch {
		case kind == kindRunc && e.IsDir():
			id = e.Name()
		case kind == kindRunsc && e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".state"):
			id, _, _ = strings.Cut(e.Name(), "_sandbox:")
		}
		if id != "" && validateID(id) == nil {
			out = append(out, id)
		}
	}
	return out, nil
}

// listState runs `BIN --root ROOT list --format json`.
func (r *Runtime) listState(ctx context.Context, kind string) ([]runcContainer, error) {
	bin, root := r.stateRoot(kind)
	out, err := runTool(ctx, bin, "--root", root, "list", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("listing the %s containers in %s: %w", kind, quote(root), err)
	}
	return parseRuncList(out)
}

// runTool runs a runtime's command line tool with a time limit and a cap
// on its output. It returns the standard output; a failure carries the
// standard error.
func runTool(ctx context.Context, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr cappedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", quote(bin), strings.Join(args, " "), err,
			quote(strings.TrimSpace(stderr.b.String())))
	}
	return stdout.b.Bytes(), nil
}

// cappedBuffer fails a write that would take it past maxToolOutput.
type cappedBuffer struct{ b bytes.Buffer }

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.b.Len()+len(p) > maxToolOutput {
		return 0, fmt.Errorf("output longer than %d bytes", maxToolOutput)
	}
	return c.b.Write(p)
}
