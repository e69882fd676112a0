package runtime

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func nul(args ...string) []byte { return []byte(strings.Join(args, "\x00") + "\x00") }

func TestParseShimCmdline(t *testing.T) {
	const shim = "/usr/bin/containerd-shim-runc-v2"
	want := shimArgs{Namespace: "omerta", ID: "a0-g1", Address: "/run/containerd/containerd.sock"}
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"1.6 daemon", nul(shim, "-namespace", "omerta", "-id", "a0-g1", "-address", "/run/containerd/containerd.sock"), true},
		{"debug, any order", nul(shim, "-debug", "-address", "/run/containerd/containerd.sock", "-id", "a0-g1", "-namespace", "omerta"), true},
		{"double dash and =", nul(shim, "--namespace=omerta", "-id=a0-g1", "--address", "/run/containerd/containerd.sock"), true},
		{"publish-binary", nul(shim, "-namespace", "omerta", "-id", "a0-g1", "-address", "/run/containerd/containerd.sock", "-publish-binary", "/usr/bin/containerd"), true},
		{"the start invocation", nul(shim, "-namespace", "omerta", "-id", "a0-g1", "-address", "/run/containerd/containerd.sock", "start"), false},
		{"the delete invocation", nul(shim, "-namespace", "omerta", "-id", "a0-g1", "-address", "/run/containerd/containerd.sock", "delete"), false},
		{"not a shim", nul("/usr/bin/sleep", "-namespace", "omerta", "-id", "a0-g1", "-address", "/x"), false},
		{"no address", nul(shim, "-namespace", "omerta", "-id", "a0-g1"), false},
		{"flag without value", nul(shim, "-namespace", "omerta", "-address", "/x", "-id"), false},
		{"twice", nul(shim, "-namespace", "omerta", "-id", "a0-g1", "-id", "a1-g1", "-address", "/x"), false},
		{"unknown flag", nul(shim, "-namespace", "omerta", "-id", "a0-g1", "-address", "/x", "-other", "y"), false},
		{"bad id", nul(shim, "-namespace", "omerta", "-id", "../x", "-address", "/x"), false},
		{"empty", nil, false},
		{"too long", append(nul(shim, "-namespace", "omerta", "-id", "a0-g1", "-address", "/x"), make([]byte, maxCmdline)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseShimCmdline(tc.in)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tc.ok, got)
			}
			if ok && got.Namespace != want.Namespace || ok && got.ID != want.ID || ok && !strings.HasPrefix(got.Address, "/") {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	// Fields 7 to 21, then the start time (22) and two more.
	tail := strings.Repeat(" 0", 15) + " 123456 0 0"
	for _, tc := range []struct {
		name string
		in   string
		want procStat
		err  bool
	}{
		{"plain", "42 (containerd-shim) S 1 42 42" + tail, procStat{State: 'S', PPid: 1, StartTime: 123456}, false},
		{"parens and spaces in the name", "42 (a) (b c) Z 7 42 42" + tail, procStat{State: 'Z', PPid: 7, StartTime: 123456}, false},
		{"no name", "42 S 1", procStat{}, true},
		{"short", "42 (x) S 1 2 3", procStat{}, true},
		{"bad ppid", "42 (x) S -1 42 42" + tail, procStat{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("parseStat = %+v, %v; want %+v (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseRuncList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ids  []string
		fail bool
	}{
		{"null", nil, false},
		{`[{"ociVersion":"1.0.2-dev","id":"c1","pid":18893,"status":"running","bundle":"/b/c1","rootfs":"/r","created":"2026-12-01T07:48:07Z","owner":"root"}]`, []string{"c1"}, false},
		{`[{"id":"c2","status":"running","pid":20548,"bundle":"/b/c2"}]`, []string{"c2"}, false},
		{`[{"id":"../x"}]`, nil, true},
		{`[{"id":"c1","pid":-1}]`, nil, true},
		{`[] []`, nil, true},
		{`{"id":"c1"}`, nil, true},
	} {
		got, err := parseRuncList([]byte(tc.in))
		var ids []string
		for _, c := range got {
			ids = append(ids, c.ID)
		}
		if (err != nil) != tc.fail || !slices.Equal(ids, tc.ids) {
			t.Errorf("parseRuncList(%s) = %v, %v", tc.in, ids, err)
		}
	}
}

func TestParseCgroupMounts(t *testing.T) {
	in := `25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
27 25 0:24 / /sys/fs/cgroup/cpu\054cpuacct rw - cgroup cgroup rw,cpu,cpuacct
28 30 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
29 30 0:26 / relative rw - cgroup cgroup rw
garbage
`
	got, err := parseCgroupMounts([]byte(in))
	want := []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/unified"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseCgroupMounts = %v, %v; want %v", got, err, want)
	}
}

// TestScanShims reads a /proc of files: only long-running shims of the
// namespace and address asked for are listed; a zombie, the start
// invocation and another program are not.
func TestScanShims(t *testing.T) {
	proc := t.TempDir()
	const shim = "/usr/bin/containerd-shim-runc-v2"
	stat := func(state string) string {
		return "1 (containerd-shim) " + state + " 1 1 1" + strings.Repeat(" 0", 15) + " 777 0 0"
	}
	for pid, p := range map[int]struct {
		cmdline []byte
		stat    string
	}{
		10: {nul(shim, "-namespace", "omerta", "-id", "a0-g1", "-address", "/run/c.sock"), stat("S")},
		11: {nul(shim, "-namespace", "omerta", "-id", "a1-g1", "-address", "/run/other.sock"), stat("S")},
		12: {nul(shim, "-namespace", "other", "-id", "a2-g1", "-address", "/run/c.sock"), stat("S")},
		13: {nul(shim, "-namespace", "omerta", "-id", "a3-g1", "-address", "/run/c.sock"), stat("Z")},
		14: {nul(shim, "-namespace", "omerta", "-id", "a4-g1", "-address", "/run/c.sock", "start"), stat("S")},
		15: {nul("/bin/sleep", "3600"), stat("S")},
	} {
		dir := filepath.Join(proc, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "cmdline"), p.cmdline, 0o644)
		os.WriteFile(filepath.Join(dir, "stat"), []byte(p.stat), 0o644)
	}
	os.Mkdir(filepath.Join(proc, "self"), 0o755)
	got, truncated, err := scanShims(proc, func(sa shimArgs) bool { return sa.Namespace == "omerta" && sa.Address == "/run/c.sock" })
	if err != nil || truncated || len(got) != 1 || got[0].PID != 10 || got[0].ID != "a0-g1" || got[0].Start != 777 {
		t.Errorf("scanShims = %+v, %v, %v; want pid 10 only", got, truncated, err)
	}
}

// TestRemoveShimSockets: a socket nothing listens on is removed, one a
// process listens on stays, and what is not a socket is refused.
func TestRemoveShimSockets(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "sock-") // short: a socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := &Runtime{ns: "omerta", socketDir: dir}
	dead := shimSocketPath(dir, "/run/a.sock", "omerta", "dead")
	l, err := net.Listen("unix", dead)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	live := shimSocketPath(dir, "/run/a.sock", "omerta", "live")
	l2, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	plain := shimSocketPath(dir, "/run/a.sock", "omerta", "plain")
	os.WriteFile(plain, nil, 0o600)
	if err := r.removeShimSockets("dead", []string{"/run/a.sock", ""}); err != nil {
		t.Error(err)
	}
	if _, err := os.Lstat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead shim's socket is still there: %v", err)
	}
	if err := r.removeShimSockets("live", []string{"/run/a.sock"}); err != nil {
		t.Error(err)
	}
	if _, err := os.Lstat(live); err != nil {
		t.Errorf("a socket a process listens on was removed: %v", err)
	}
	if err := r.removeShimSockets("plain", []string{"/run/a.sock"}); err == nil {
		t.Error("a regular file in the socket's place was not refused")
	}
	if _, err := os.Lstat(plain); err != nil {
		t.Errorf("a regular file was removed: %v", err)
	}
}

func FuzzParseShimCmdline(f *testing.F) {
	f.Add(nul("/usr/bin/containerd-shim-runc-v2", "-namespace", "omerta", "-id", "a0-g1", "-address", "/run/c.sock"))
	f.Add(nul("containerd-shim-runc-v2", "--namespace=x", "-id=y", "-address", "/a", "-debug"))
	f.Add(nul("containerd-shim-runc-v2", "-namespace", "x", "start"))
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sa, ok := parseShimCmdline(b)
		if ok && (validateID(sa.ID) != nil || validateID(sa.Namespace) != nil || sa.Address == "") {
			t.Fatalf("accepted %+v", sa)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (containerd-shim) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 9 0 123456 0 0"))
	f.Add([]byte("42 (a) (b) Z 7 1 1 0 0 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err == nil && st.PPid < 0 {
			t.Fatalf("accepted %+v", st)
		}
	})
}

func FuzzParseRuncList(f *testing.F) {
	f.Add([]byte("null"))
	f.Add([]byte(`[{"id":"c1","pid":1,"status":"running","bundle":"/b"}]`))
	f.Add([]byte(`[{"id":""}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := parseRuncList(b)
		if err != nil {
			return
		}
		for _, c := range cs {
			if validateID(c.ID) != nil || c.Pid < 0 {
				t.Fatalf("accepted %+v", c)
			}
		}
	})
}

func FuzzParseCgroupMounts(f *testing.F) {
	f.Add([]byte("26 25 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"))
	f.Add([]byte("1 1 0:1 / /a\\040b rw - cgroup2 cgroup2 rw\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := parseCgroupMounts(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			if !filepath.IsAbs(m) || filepath.Clean(m) != m {
				t.Fatalf("accepted %q", m)
			}
		}
	})
}

// TestStateIDs reads the ids from runc's and runsc's state roots without
// running either: runc keeps a directory per container, runsc a .state
// file per container; anything else is ignored, a missing root is empty.
func TestStateIDs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"runc/c1", "runc/c2", "runc/bad..id"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "runc", "stray-file"), nil, 0o600)
	os.MkdirAll(filepath.Join(root, "runsc"), 0o700)
	for _, f := range []string{"s1_sandbox:s1.state", "s1_sandbox:s1.lock", "runsc-s1.sock", "s2_sandbox:s1.state"} {
		os.WriteFile(filepath.Join(root, "runsc", f), nil, 0o600)
	}
	for _, tc := range []struct {
		kind, dir string
		want      []string
	}{
		{kindRunc, "runc", []string{"c1", "c2"}},
		{kindRunsc, "runsc", []string{"s1", "s2"}},
		{kindRunc, "missing", nil},
	} {
		got, err := stateIDs(tc.kind, filepath.Join(root, tc.dir))
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("stateIDs(%s, %s) = %v, %v; want %v", tc.kind, tc.dir, got, err, tc.want)
		}
	}
	if _, err := stateIDs(kindRunc, filepath.Join(root, "runc", "stray-file")); err == nil {
		t.Error("a file in the root's place was read as an empty root")
	}
}
