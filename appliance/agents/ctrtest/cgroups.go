package ctrtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// removeCgroups removes the cgroups containerd's default spec made for
// namespace ns (/<ns>/<id> in every hierarchy): runc deletes /<ns>/<id>
// with its container but never /<ns>, so each test namespace would leave
// an empty directory per controller on the host. A /<ns>/<id> still there
// is reported: its container's runtime did not clean up after itself.
func removeCgroups(ns string) error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	var left []string
	var errs []error
	for _, root := range roots {
		dir := filepath.Join(root, ns)
		children, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		for _, c := range children {
			if c.IsDir() {
				left = append(left, filepath.Join(dir, c.Name()))
				errs = append(errs, os.Remove(filepath.Join(dir, c.Name())))
			}
		}
		errs = append(errs, os.Remove(dir))
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left by containers: %v", left))
	}
	return errors.Join(errs...)
}

// cgroupRoots lists the mount points of the cgroup (v1) and cgroup2
// hierarchies, from /proc/self/mountinfo ("... - fstype source opts").
func cgroupRoots() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 {
			continue
		}
		if g[0] == "cgroup" || g[0] == "cgroup2" {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out, sc.Err()
}
