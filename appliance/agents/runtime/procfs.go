package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// Bounds on what is read from /proc: a scan reads at most maxProcs
// entries, a command line at most maxCmdline bytes, and a process's
// children from at most maxThreads threads.
const (
	maxProcs      = 1 << 17
	maxCmdline    = 16 << 10
	maxStat       = 4 << 10
	maxThreads    = 4096
	maxChildren   = 1 << 14
	maxMountinfo  = 4 << 20
	maxCgroupFile = 16 << 10
)

// errProcGone: the process ended while it was being read.
var errProcGone = errors.New("process is gone")

// shimArgs are the flags of a long-running containerd shim:
// containerd-shim-runc-v2 -namespace NS -id ID -address ADDR [-debug].
type shimArgs struct {
	Namespace, ID, Address string
}

// shimValueFlags are the shim flags that take a value; shimBoolFlags
// those that take none. Any other flag, or a positional argument (the
// short-lived "start" and "delete" invocations containerd runs itself),
// means the command line is not one of a running shim, and it is left
// alone.
var (
	shimValueFlags = map[string]bool{"namespace": true, "id": true, "address": true, "publish-binary": true,
		"bundle": true, "socket": true}
	shimBoolFlags = map[string]bool{"debug": true, "v": true}
)

// parseShimCmdline reads a NUL-separated command line. It accepts only a
// program named containerd-shim-* with each of -namespace, -id and
// -address given once (as "-flag value", "--flag value" or "-flag=value").
func parseShimCmdline(b []byte) (shimArgs, bool) {
	if len(b) == 0 || len(b) > maxCmdline {
		return shimArgs{}, false
	}
	args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim-") {
		return shimArgs{}, false
	}
	vals := map[string]string{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return shimArgs{}, false
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		switch {
		case shimBoolFlags[name]:
			continue
		case !shimValueFlags[name]:
			return shimArgs{}, false
		case !hasVal:
			if i+1 >= len(args) {
				return shimArgs{}, false
			}
			i++
			val = args[i]
		}
		if _, dup := vals[name]; dup {
			return shimArgs{}, false
		}
		vals[name] = val
	}
	s := shimArgs{Namespace: vals["namespace"], ID: vals["id"], Address: vals["address"]}
	if s.Namespace == "" || s.ID == "" || s.Address == "" || validateID(s.ID) != nil || validateID(s.Namespace) != nil {
		return shimArgs{}, false
	}
	return s, true
}

// procStat is what the Runtime reads from /proc/PID/stat.
type procStat struct {
	State     byte
	PPid      int
	StartTime uint64 // clock ticks after boot: tells a pid's reuse apart
}

// parseStat reads "pid (comm) state ppid ... starttime(22nd) ...". The
// command name may hold spaces and parentheses, so the fields are counted
// from the last ')'.
func parseStat(b []byte) (procStat, error) {
	if len(b) > maxStat {
		return procStat{}, fmt.Errorf("stat: longer than %d bytes", maxStat)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("stat: too few fields")
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil || ppid < 0 {
		return procStat{}, fmt.Errorf("stat: parent pid %q", f[1])
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: start time %q", f[19])
	}
	return procStat{State: f[0][0], PPid: ppid, StartTime: start}, nil
}

// readStat reads the stat of pid under procDir; errProcGone when there is
// no such process.
func readStat(procDir string, pid int) (procStat, error) {
	b, err := safeio.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "stat"), maxStat)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrProcessDone) {
		return procStat{}, errProcGone
	}
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// alive reports whether pid runs (a zombie has ended: only its parent's
// wait is missing).
func alive(procDir string, pid int) bool {
	st, err := readStat(procDir, pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

// exited reports whether pid has ended entirely: gone, or a zombie with
// no thread left but its leader (the leader turns zombie while its other
// threads still exit, holding the files, sockets included, they share).
func exited(procDir string, pid int) bool {
	st, err := readStat(procDir, pid)
	if errors.Is(err, errProcGone) {
		return true
	}
	if err != nil || (st.State != 'Z' && st.State != 'X') {
		return false
	}
	d, err := os.Open(filepath.Join(procDir, strconv.Itoa(pid), "task"))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	defer d.Close()
	names, _ := d.Readdirnames(2)
	return len(names) <= 1
}

// readCmdline reads the command line of pid (nil when it is gone, a
// kernel thread, or longer than maxCmdline).
func readCmdline(procDir string, pid int) []byte {
	b, err := safeio.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cmdline"), maxCmdline)
	if err != nil {
		return nil
	}
	return b
}

// procShim is a running shim found in /proc.
type procShim struct {
	shimArgs
	PID   int
	Start uint64
}

// scanShims lists the running shims under procDir whose flags match
// keep. At most maxProcs entries are read; truncated says when there
// were more.
func scanShims(procDir string, keep func(shimArgs) bool) (out []procShim, truncated bool, err error) {
	d, err := os.Open(procDir)
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", procDir, err)
	}
	defer d.Close()
	seen := 0
	for seen < maxProcs {
		ents, err := d.ReadDir(1024)
		for _, e := range ents {
			seen++
			pid, perr := strconv.Atoi(e.Name())
			if perr != nil || pid <= 0 || pid == os.Getpid() {
				continue
			}
			sa, ok := parseShimCmdline(readCmdline(procDir, pid))
			if !ok || !keep(sa) {
				continue
			}
			st, serr := readStat(procDir, pid)
			if serr != nil || st.State == 'Z' {
				continue
			}
			out = append(out, procShim{shimArgs: sa, PID: pid, Start: st.StartTime})
		}
		if errors.Is(err, io.EOF) {
			return out, false, nil
		}
		if err != nil {
			return out, false, fmt.Errorf("reading %s: %w", procDir, err)
		}
	}
	return out, true, nil
}

// liveChildren lists the children of pid that have not ended, from every
// thread's children file (a Go shim forks from any of its threads).
func liveChildren(procDir string, pid int) ([]int, error) {
	tdir := filepath.Join(procDir, strconv.Itoa(pid), "task")
	d, err := os.Open(tdir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errProcGone
		}
		return nil, err
	}
	defer d.Close()
	tids, err := d.Readdirnames(maxThreads + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: %w", tdir, err)
	}
	if len(tids) > maxThreads {
		return nil, fmt.Errorf("%s: more than %d threads", tdir, maxThreads)
	}
	var out []int
	for _, tid := range tids {
		b, err := safeio.ReadFile(filepath.Join(tdir, tid, "children"), maxChildren)
		if err != nil {
			continue // the thread ended
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil && alive(procDir, c) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// inCgroup reports whether pid is in cgroup path (or below it) in some
// hierarchy, from /proc/PID/cgroup ("hierarchy:controllers:path" lines).
func inCgroup(procDir string, pid int, path string) bool {
	b, err := safeio.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cgroup"), maxCgroupFile)
	return err == nil && cgroupListHas(b, path)
}

func cgroupListHas(b []byte, path string) bool {
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && (f[2] == path || strings.HasPrefix(f[2], path+"/")) {
			return true
		}
	}
	return false
}

// cgroupMounts lists the mount points of the cgroup (v1) and cgroup2
// hierarchies in a mountinfo file ("... mountpoint ... - fstype ...").
func cgroupMounts(mountinfo string) ([]string, error) {
	b, err := safeio.ReadFile(mountinfo, maxMountinfo)
	if err != nil {
		return nil, fmt.Errorf("reading the cgroup mounts: %w", err)
	}
	return parseCgroupMounts(b)
}

func parseCgroupMounts(b []byte) ([]string, error) {
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
			if mp := unescapeMountinfo(f[4]); filepath.IsAbs(mp) {
				out = append(out, filepath.Clean(mp))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the cgroup mounts: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
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
