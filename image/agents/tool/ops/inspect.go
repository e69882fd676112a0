package ops

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// InspectResult is what the agent sees of its own sandbox. The runtime's
// tests run it inside a container to check the locked-down spec from the
// inside; the image has no shell or cat to do that with.
type InspectResult struct {
	Op           string `json:"op"`
	UID          int    `json:"uid"`
	GID          int    `json:"gid"`
	CapEff       string `json:"capEff"`
	NoNewPrivs   int    `json:"noNewPrivs"`
	Seccomp      int    `json:"seccomp"`
	Kernel       string `json:"kernel"`
	RootWritable bool   `json:"rootWritable"`
	RootError    string `json:"rootError,omitempty"`
	TmpWritable  bool   `json:"tmpWritable"`
	TmpError     string `json:"tmpError,omitempty"`
}

const procLimit = 64 << 10

func runInspect(env Env, _ []byte) (any, error) {
	res := &InspectResult{Op: "inspect", UID: -1, GID: -1, NoNewPrivs: -1, Seccomp: -1}
	status, err := safeio.ReadFile(filepath.Join(env.Proc, "self", "status"), procLimit)
	if err != nil {
		return nil, errorf(CodeInternal, "", "reading the process status: %v", err)
	}
	parseStatus(string(status), res)
	if rel, err := safeio.ReadFile(filepath.Join(env.Proc, "sys", "kernel", "osrelease"), procLimit); err == nil {
		res.Kernel = strings.TrimSpace(string(rel))
	}
	res.RootWritable, res.RootError = probeWrite(env.Root)
	res.TmpWritable, res.TmpError = probeWrite(env.Tmp)
	return res, nil
}

// parseStatus reads the effective ids and the security fields; a field the
// kernel does not report stays -1 (or empty for CapEff).
func parseStatus(status string, res *InspectResult) {
	for _, line := range strings.Split(status, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			continue
		}
		switch key {
		case "Uid":
			res.UID = atoiField(f, 1)
		case "Gid":
			res.GID = atoiField(f, 1)
		case "CapEff":
			res.CapEff = f[0]
		case "NoNewPrivs":
			res.NoNewPrivs = atoiField(f, 0)
		case "Seccomp":
			res.Seccomp = atoiField(f, 0)
		}
	}
}

func atoiField(f []string, i int) int {
	if i >= len(f) {
		return -1
	}
	n, err := strconv.Atoi(f[i])
	if err != nil {
		return -1
	}
	return n
}

// probeWrite creates and removes a file in dir; the reason it could not is
// the error's innermost text ("read-only file system").
func probeWrite(dir string) (bool, string) {
	f, err := os.CreateTemp(dir, ".omerta-probe-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return false, pe.Err.Error()
		}
		return false, err.Error()
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return true, "removing the probe: " + err.Error()
	}
	return true, ""
}
