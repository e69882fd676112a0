package gpu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// CgroupEntry is one line of /proc/PID/cgroup: "hierarchy:controllers:path",
// "0::/omerta/agent-g3" on cgroup v2, "4:memory:/omerta/agent-g3" on v1.
type CgroupEntry struct {
	Hierarchy   int
	Controllers []string
	Path        string
	// Deleted: the kernel marks a cgroup v2 path " (deleted)" once the
	// cgroup was removed while the process still sat in it.
	Deleted bool
}

// Bounds on /proc/PID/cgroup: a cgroup v1 host has about a dozen
// hierarchies, and a path is at most PATH_MAX.
const (
	maxCgroupFile  = 16 << 10
	maxCgroupLines = 64
	maxCgroupPath  = 4096
)

// ParseCgroupFile reads /proc/PID/cgroup. It refuses the whole file, with
// the line and the reason, on a line that is not "number:list:/path", so
// that a forged file cannot put a process in an agent's cgroup by a line
// the kernel would never write.
func ParseCgroupFile(b []byte) ([]CgroupEntry, error) {
	if len(b) > maxCgroupFile {
		return nil, fmt.Errorf("%w: cgroup file is larger than %d bytes", ErrInvalid, maxCgroupFile)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) > maxCgroupLines {
		return nil, fmt.Errorf("%w: cgroup file has more than %d lines", ErrInvalid, maxCgroupLines)
	}
	var out []CgroupEntry
	for i, l := range lines {
		if l == "" && len(lines) == 1 {
			break // an empty file: a kernel thread or a zombie
		}
		e, err := parseCgroupLine(l)
		if err != nil {
			return nil, fmt.Errorf("%w: cgroup line %d %s: %s", ErrInvalid, i+1, quote(shorten(l)), err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseCgroupLine(l string) (CgroupEntry, error) {
	h, rest, ok := strings.Cut(l, ":")
	ctl, p, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return CgroupEntry{}, fmt.Errorf("is not hierarchy:controllers:path")
	}
	n, err := strconv.Atoi(h)
	if err != nil || n < 0 || n > 1<<16 || strings.HasPrefix(h, "+") {
		return CgroupEntry{}, fmt.Errorf("hierarchy %s is not a small number", quote(h))
	}
	e := CgroupEntry{Hierarchy: n}
	if ctl != "" {
		e.Controllers = strings.Split(ctl, ",")
	}
	if p, e.Deleted = strings.CutSuffix(p, " (deleted)"); !strings.HasPrefix(p, "/") {
		return CgroupEntry{}, fmt.Errorf("path %s is not absolute", quote(p))
	}
	if len(p) > maxCgroupPath {
		return CgroupEntry{}, fmt.Errorf("path is longer than %d bytes", maxCgroupPath)
	}
	// No agent's cgroup has a control byte, a bidi override or invalid
	// UTF-8 in its name; a path with one is nobody's, and refusing it
	// keeps it out of every log line.
	if i, _ := terminal.FirstUnsafe(p); i >= 0 || hasDotSegment(p) {
		return CgroupEntry{}, fmt.Errorf("path %s has a control byte, invalid UTF-8 or a . or .. segment", quote(p))
	}
	e.Path = p
	return e, nil
}

func hasDotSegment(p string) bool {
	for _, s := range strings.Split(p, "/") {
		if s == "." || s == ".." {
			return true
		}
	}
	return false
}

// ContainerCgroup is the cgroup path containerd gives a container of the
// agents runtime: containerd's default "/<namespace>/<container ID>" (the
// runtime sets no cgroupsPath of its own, and its lost-task cleanup looks
// for the same path).
func ContainerCgroup(namespace, containerID string) string {
	return "/" + namespace + "/" + containerID
}

// within reports whether path is cg or below it.
func within(path, cg string) bool {
	return path == cg || strings.HasPrefix(path, cg+"/")
}

// matchCgroup returns the agent whose cgroup holds the process: the
// longest cgroup path that one of its entries is within, so that a nested
// cgroup (a sandbox's) is not taken for its parent's.
func matchCgroup(entries []CgroupEntry, cgroups map[string]string) (agent string, ok bool) {
	best := ""
	for _, e := range entries {
		for cg, a := range cgroups {
			if within(e.Path, cg) && len(cg) > len(best) {
				best, agent = cg, a
			}
		}
	}
	return agent, best != ""
}
