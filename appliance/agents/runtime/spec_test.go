package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecNormalize(t *testing.T) {
	ok := func() Spec { return Spec{ID: "a1", Image: "omerta.test/x:1"} }
	tests := []struct {
		name  string
		edit  func(*Spec)
		field string // in the error; "" means valid
	}{
		{"minimal", func(*Spec) {}, ""},
		{"bad id", func(s *Spec) { s.ID = "a/b" }, "id"},
		{"empty id", func(s *Spec) { s.ID = "" }, "id"},
		{"no image", func(s *Spec) { s.Image = "" }, "image"},
		{"bad digest", func(s *Spec) { s.Digest = "sha256:zz" }, "digest"},
		{"bad isolation", func(s *Spec) { s.Isolation = "vm" }, "isolation"},
		{"reserved label", func(s *Spec) { s.Labels = map[string]string{labelExitCode: "0"} }, "labels"},
		{"negative cpu", func(s *Spec) { s.CPUMillis = -1 }, "cpu"},
		{"tiny memory", func(s *Spec) { s.MemoryBytes = 1 << 20 }, "memory"},
		{"negative pids", func(s *Spec) { s.Pids = -5 }, "pids"},
		{"negative tmp", func(s *Spec) { s.TmpBytes = -1 }, "tmp"},
		{"NUL in args", func(s *Spec) { s.Args = []string{"a\x00b"} }, "args[0]"},
		{"NUL in command", func(s *Spec) { s.Command = []string{"/a", "b\x00"} }, "command[1]"},
		{"env without =", func(s *Spec) { s.Env = []string{"A=1", "B"} }, "env[1]"},
		{"env empty key", func(s *Spec) { s.Env = []string{"=1"} }, "env[0]"},
		{"root uid", func(s *Spec) { s.User = &User{UID: 0, GID: 1000} }, "user"},
		{"root gid", func(s *Spec) { s.User = &User{UID: 1000, GID: 0} }, "user"},
		{"volume without state dir", func(s *Spec) { s.Volumes = []Volume{{Name: "d", Path: "/d"}} }, "stateDir"},
		{"relative state dir", func(s *Spec) { s.StateDir = "st"; s.Volumes = []Volume{{Name: "d", Path: "/d"}} }, "stateDir"},
		{"volume name escapes", func(s *Spec) { s.StateDir = "/s"; s.Volumes = []Volume{{Name: "..", Path: "/d"}} }, "volumes[0].name"},
		{"volume name with slash", func(s *Spec) { s.StateDir = "/s"; s.Volumes = []Volume{{Name: "a/b", Path: "/d"}} }, "volumes[0].name"},
		{"volume over /proc", func(s *Spec) { s.StateDir = "/s"; s.Volumes = []Volume{{Name: "d", Path: "/proc/x"}} }, "volumes[0].path"},
		{"volume over /", func(s *Spec) { s.StateDir = "/s"; s.Volumes = []Volume{{Name: "d", Path: "/"}} }, "volumes[0].path"},
		{"volume path unclean", func(s *Spec) { s.StateDir = "/s"; s.Volumes = []Volume{{Name: "d", Path: "/a/../etc"}} }, "volumes[0].path"},
		{"volume twice", func(s *Spec) {
			s.StateDir = "/s"
			s.Volumes = []Volume{{Name: "d", Path: "/d"}, {Name: "d", Path: "/e"}}
		}, "volumes[1]"},
		{"volumes fine", func(s *Spec) {
			s.StateDir = "/s"
			s.Volumes = []Volume{{Name: "data", Path: "/data"}, {Name: "cache.v2", Path: "/var/cache", ReadOnly: true}}
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			tc.edit(&s)
			err := s.normalize()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid spec refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("err = %v, want ErrInvalid naming %q", err, tc.field)
			}
		})
	}
	s := ok()
	if err := s.normalize(); err != nil || s.Isolation != Container || s.CPUMillis != DefaultCPUMillis ||
		s.MemoryBytes != DefaultMemory || s.Pids != DefaultPids || s.TmpBytes != DefaultTmp {
		t.Errorf("defaults: %+v, %v", s, err)
	}
}

// generate builds the OCI spec the Runtime would give containerd, without
// containerd (no option here reads the image's files).
func generate(t *testing.T, s Spec, ic ocispec.ImageConfig) *oci.Spec {
	t.Helper()
	if err := s.normalize(); err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "omerta")
	sp, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: s.ID}, specOpts(s, ic, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func TestLockedDownSpec(t *testing.T) {
	s := Spec{ID: "a1", Image: "x", Env: []string{"PATH=/opt/bin", "MODE=fast"}, CPUMillis: 500,
		MemoryBytes: 256 << 20, Pids: 50, TmpBytes: 8 << 20}
	ic := ocispec.ImageConfig{Entrypoint: []string{"/agent"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/bin", "HOME=/"},
		WorkingDir: "/work", User: "0"}
	sp := generate(t, s, ic)
	p := sp.Process
	if !slices.Equal(p.Args, []string{"/agent", "--serve"}) || p.Cwd != "/work" || p.Terminal {
		t.Errorf("process %v in %s", p.Args, p.Cwd)
	}
	if !slices.Equal(p.Env, []string{"PATH=/opt/bin", "HOME=/", "MODE=fast"}) {
		t.Errorf("env %v", p.Env)
	}
	// The image asked for root: it runs as nobody.
	if p.User.UID != NobodyID || p.User.GID != NobodyID || !slices.Equal(p.User.AdditionalGids, []uint32{NobodyID}) {
		t.Errorf("user %+v", p.User)
	}
	c := p.Capabilities
	if c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("capabilities %+v, want all five empty", c)
	}
	if !p.NoNewPrivileges || !sp.Root.Readonly {
		t.Errorf("noNewPrivileges %v, read-only root %v", p.NoNewPrivileges, sp.Root.Readonly)
	}
	if sp.Linux.Seccomp == nil || sp.Linux.Seccomp.DefaultAction != specs.ActErrno || len(sp.Linux.Seccomp.Syscalls) == 0 {
		t.Error("no default seccomp profile")
	}
	checkNamespaces(t, sp)
	checkResources(t, sp, 50_000, 256<<20, 50)
	checkTmp(t, sp, "size=8388608", "uid=65534")
	for _, m := range append(requiredMasks, "/proc/sched_debug", "/proc/scsi") {
		if !slices.Contains(sp.Linux.MaskedPaths, m) {
			t.Errorf("%s is not masked", m)
		}
	}
	if !slices.Contains(sp.Linux.ReadonlyPaths, "/proc/sys") {
		t.Error("/proc/sys is not read-only")
	}
	if sp.Hostname != "a1" {
		t.Errorf("hostname %q", sp.Hostname)
	}
}

// TestProcessArgs: spec.command replaces the image's ENTRYPOINT (and
// drops its CMD), spec.args replaces its CMD, as in Kubernetes. Before,
// a command was put after the image's entrypoint.
func TestProcessArgs(t *testing.T) {
	ic := ocispec.ImageConfig{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"--serve"}}
	for _, tc := range []struct {
		name          string
		command, args []string
		image         ocispec.ImageConfig
		want          []string
	}{
		{"image's", nil, nil, ic, []string{"/entry", "-x", "--serve"}},
		{"command", []string{"/bin/sh", "-c", "echo hi"}, nil, ic, []string{"/bin/sh", "-c", "echo hi"}},
		{"args", nil, []string{"--once"}, ic, []string{"/entry", "-x", "--once"}},
		{"command and args", []string{"/agent"}, []string{"--port", "8080"}, ic, []string{"/agent", "--port", "8080"}},
		{"args, no entrypoint", nil, []string{"/bin/sleep", "1"}, ocispec.ImageConfig{Cmd: []string{"/bin/true"}}, []string{"/bin/sleep", "1"}},
		{"empty command is none", []string{}, nil, ic, []string{"/entry", "-x", "--serve"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := generate(t, Spec{ID: "a1", Image: "x", Command: tc.command, Args: tc.args}, tc.image)
			if !slices.Equal(sp.Process.Args, tc.want) {
				t.Errorf("process args %q, want %q", sp.Process.Args, tc.want)
			}
		})
	}
	s := Spec{ID: "a1", Image: "x"}
	if err := s.normalize(); err != nil {
		t.Fatal(err)
	}
	if _, err := oci.GenerateSpec(namespaces.WithNamespace(context.Background(), "omerta"), nil,
		&containers.Container{ID: "a1"}, specOpts(s, ocispec.ImageConfig{}, nil)...); !errors.Is(err, ErrInvalid) {
		t.Errorf("no command at all: %v, want ErrInvalid", err)
	}
}

func checkNamespaces(t *testing.T, sp *oci.Spec) {
	t.Helper()
	var types []specs.LinuxNamespaceType
	for _, ns := range sp.Linux.Namespaces {
		if ns.Path != "" {
			t.Errorf("namespace %s joins %s", ns.Type, ns.Path)
		}
		types = append(types, ns.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace,
		specs.MountNamespace, specs.NetworkNamespace, specs.CgroupNamespace} {
		if !slices.Contains(types, want) {
			t.Errorf("no new %s namespace", want)
		}
	}
	if slices.Contains(types, specs.UserNamespace) {
		t.Error("a user namespace without mappings")
	}
}

func checkResources(t *testing.T, sp *oci.Spec, quota, memory, pids int64) {
	t.Helper()
	r := sp.Linux.Resources
	if r.CPU == nil || *r.CPU.Quota != quota || *r.CPU.Period != cfsPeriod {
		t.Errorf("cpu %+v, want quota %d", r.CPU, quota)
	}
	if r.Memory == nil || *r.Memory.Limit != memory || *r.Memory.Swap != memory {
		t.Errorf("memory %+v, want limit = swap = %d", r.Memory, memory)
	}
	if r.Pids == nil || r.Pids.Limit == nil || *r.Pids.Limit != pids {
		t.Errorf("pids %+v, want %d", r.Pids, pids)
	}
	if len(r.Devices) == 0 || r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
		t.Errorf("device cgroup %+v, want deny-all first", r.Devices)
	}
}

func checkTmp(t *testing.T, sp *oci.Spec, opts ...string) {
	t.Helper()
	for _, m := range sp.Mounts {
		if m.Destination == "/tmp" {
			for _, o := range append([]string{"nosuid", "nodev", "noexec"}, opts...) {
				if !slices.Contains(m.Options, o) {
					t.Errorf("/tmp options %v lack %s", m.Options, o)
				}
			}
			return
		}
	}
	t.Error("no /tmp mount")
}

func TestSpecUserAndVolumes(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name      string
		user      *User
		imageUser string
		uid, gid  uint32
	}{
		{"no user anywhere", nil, "", NobodyID, NobodyID},
		{"image uid", nil, "1000", 1000, 1000},
		{"image uid:gid", nil, "1000:2000", 1000, 2000},
		{"image root by number", nil, "0:0", NobodyID, NobodyID},
		{"image root gid", nil, "1000:0", NobodyID, NobodyID},
		{"caller wins", &User{UID: 4000, GID: 4001}, "1000", 4000, 4001},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Spec{ID: "u", Image: "x", Args: []string{"/a"}, User: tc.user}
			if os.Geteuid() == 0 {
				s.StateDir = filepath.Join(dir, tc.name)
				s.Volumes = []Volume{{Name: "data", Path: "/data"}, {Name: "ro", Path: "/ro", ReadOnly: true}}
			}
			sp := generate(t, s, ocispec.ImageConfig{User: tc.imageUser})
			if u := sp.Process.User; u.UID != tc.uid || u.GID != tc.gid {
				t.Errorf("user %d:%d, want %d:%d", u.UID, u.GID, tc.uid, tc.gid)
			}
			if len(s.Volumes) > 0 {
				checkVolumes(t, sp, s, tc.uid, tc.gid)
			}
		})
	}
	if rw := generate(t, Spec{ID: "w", Image: "x", Args: []string{"/a"}, WritableRoot: true}, ocispec.ImageConfig{}); rw.Root.Readonly {
		t.Error("WritableRoot still read-only")
	}
	sandbox := generate(t, Spec{ID: "s", Image: "x", Args: []string{"/a"}, Pids: 10, Isolation: Sandbox}, ocispec.ImageConfig{})
	if got := *sandbox.Linux.Resources.Pids.Limit; got != 10+sandboxPidsOverhead {
		t.Errorf("sandbox pids limit %d, want 10 + gVisor's %d", got, sandboxPidsOverhead)
	}
}

func checkVolumes(t *testing.T, sp *oci.Spec, s Spec, uid, gid uint32) {
	t.Helper()
	found := 0
	for _, m := range sp.Mounts {
		for _, v := range s.Volumes {
			if m.Destination != v.Path {
				continue
			}
			found++
			if m.Source != filepath.Join(s.StateDir, v.Name) || m.Type != "bind" || !slices.Contains(m.Options, "noexec") ||
				slices.Contains(m.Options, "ro") != v.ReadOnly {
				t.Errorf("volume mount %+v", m)
			}
			fi, err := os.Stat(m.Source)
			if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Errorf("volume dir %s: %v %v", m.Source, fi, err)
			}
		}
	}
	if found != len(s.Volumes) {
		t.Errorf("%d of %d volumes mounted", found, len(s.Volumes))
	}
}

// A volume directory replaced by a symbolic link would mount whatever it
// points at: refused.
func TestVolumeSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	err := prepareVolumes(Spec{StateDir: dir, Volumes: []Volume{{Name: "data", Path: "/data"}}}, 1000, 1000)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("symlinked volume: %v", err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2"}, []string{"B=3", "C=4", "A=5"})
	if !slices.Equal(got, []string{"A=5", "B=3", "C=4"}) {
		t.Errorf("mergeEnv = %v", got)
	}
}

func TestNumericUser(t *testing.T) {
	tests := []struct {
		in       string
		uid, gid uint32
		ok       bool
	}{
		{"1000", 1000, 1000, true},
		{"1000:50", 1000, 50, true},
		{"agent", 0, 0, false},
		{"1000:staff", 0, 0, false},
		{"-1", 0, 0, false},
		{"4294967296", 0, 0, false},
		{"2147483648", 0, 0, false}, // above runc's MaxInt32
		{"", 0, 0, false},
	}
	for _, tc := range tests {
		uid, gid, ok := numericUser(tc.in)
		if uid != tc.uid || gid != tc.gid || ok != tc.ok {
			t.Errorf("numericUser(%q) = %d, %d, %v", tc.in, uid, gid, ok)
		}
	}
}

func FuzzNumericUser(f *testing.F) {
	for _, s := range []string{"1000", "1000:1000", "0", "a:b", ":", "1:", "99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		uid, gid, ok := numericUser(s)
		if ok && (uid > 1<<31-1 || gid > 1<<31-1) {
			t.Errorf("%q: %d:%d is beyond runc's range", s, uid, gid)
		}
	})
}

// FuzzSpecNormalize: whatever the input, normalize either refuses it as
// ErrInvalid or leaves a spec whose volumes stay inside the state
// directory and whose limits are positive.
func FuzzSpecNormalize(f *testing.F) {
	f.Add("a1", "img", "data", "/data", "/state", "1000:1000", int64(500))
	f.Add("../x", "", "..", "/proc", "rel", "0", int64(-1))
	f.Add("a", "i", "x/../../etc", "/a/../b", "/s", "", int64(0))
	f.Fuzz(func(t *testing.T, id, image, vname, vpath, state, env string, cpu int64) {
		s := Spec{ID: id, Image: image, StateDir: state, Env: []string{env}, CPUMillis: cpu,
			Volumes: []Volume{{Name: vname, Path: vpath}}}
		err := s.normalize()
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal %v does not wrap ErrInvalid", err)
			}
			return
		}
		src := filepath.Join(s.StateDir, vname)
		if filepath.Dir(src) != s.StateDir {
			t.Errorf("volume %q leaves %q: %s", vname, s.StateDir, src)
		}
		if s.CPUMillis <= 0 || s.MemoryBytes <= 0 || s.Pids <= 0 {
			t.Errorf("limits %+v", s)
		}
	})
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/runsc": `'/usr/bin/runsc'`,
		"/opt/it's":      `'/opt/it'\''s'`,
		"/a b/$(x)":      `'/a b/$(x)'`,
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
