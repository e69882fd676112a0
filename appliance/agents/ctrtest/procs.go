package ctrtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Proc is a process found by Processes.
type Proc struct {
	PID     int
	Cmdline []string
}

func (p Proc) String() string {
	return fmt.Sprintf("%d %q", p.PID, p.Cmdline)
}

// Processes lists the processes whose command line has an argument
// containing substr: for a daemon's Dir, its shims (-address), runsc
// sandboxes and gofers (--root); for a container id, everything started for
// that container. The test's own process is never listed.
func Processes(substr string) []Proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		for _, a := range args {
			if strings.Contains(a, substr) {
				out = append(out, Proc{PID: pid, Cmdline: args})
				break
			}
		}
	}
	return out
}

// waitGone waits until no process mentions substr, or until d passes.
func waitGone(substr string, d time.Duration) {
	deadline := time.Now().Add(d)
	for len(Processes(substr)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// unmountUnder detaches every mount at or below dir, deepest first: a shim
// killed before it unmounted a rootfs leaves the mount behind, and removing
// a tree through a live mount would reach into what is mounted.
func unmountUnder(dir string) error {
	mps, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("unmounting %s: %w", mp, err)
		}
	}
	if left, err := mountsUnder(dir); err != nil || len(left) > 0 {
		return fmt.Errorf("mounts left under %s after unmounting: %v (%v)", dir, left, err)
	}
	return nil
}

// mountsUnder reads /proc/self/mountinfo: its fifth field is the mount
// point, with space, tab, newline and backslash written as octal escapes.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
