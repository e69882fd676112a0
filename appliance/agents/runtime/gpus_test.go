package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

func grantOfUUIDs(agent string, uuids ...string) *gpu.Grant {
	g := &gpu.Grant{Agent: agent, Mode: gpu.Exclusive}
	for _, u := range uuids {
		g.Units = append(g.Units, gpu.GrantedGPU{UUID: u, CDIName: gpu.CDIVendorClass + "=" + u})
	}
	return g
}

func TestGPUSpecRefusals(t *testing.T) {
	many := grantOfUUIDs("a")
	for i := range 100 {
		many.Units = append(many.Units, grantOfUUIDs("a", fmt.Sprintf("GPU-%08x-1111-4222-8333-%012x", i, i)).Units...)
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Spec)
		want  error
		field string
	}{
		{"sandbox", func(s *Spec) { s.Isolation = Sandbox; s.GPUs = grantOfUUIDs("a", "GPU-1") }, ErrUnsupported,
			"gpus: sandbox isolation cannot have GPUs: gVisor nvproxy is not enabled on this appliance"},
		{"empty grant", func(s *Spec) { s.GPUs = &gpu.Grant{Agent: "a", Mode: gpu.Shared} }, ErrInvalid, "gpus: the grant names no device"},
		{"CDI name of another GPU", func(s *Spec) {
			s.GPUs = grantOfUUIDs("a", "GPU-1")
			s.GPUs.Units[0].CDIName = "nvidia.com/gpu=all"
		}, ErrInvalid, "gpus.units[0]:"},
		{"too large to record", func(s *Spec) { s.GPUs = many }, ErrInvalid, "gpus: a grant of 100 devices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Spec{ID: "a1", Image: "x"}
			tc.edit(&s)
			err := s.normalize()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("err = %v, want %v containing %q", err, tc.want, tc.field)
			}
		})
	}
	s := Spec{ID: "a1", Image: "x", GPUs: grantOfUUIDs("a", "GPU-1", "MIG-2")}
	if err := s.normalize(); err != nil {
		t.Errorf("a valid grant refused: %v", err)
	}
}

func TestGPULabel(t *testing.T) {
	g := grantOfUUIDs("llm", "GPU-1", "MIG-2")
	g.Mode, g.MemoryBytes = gpu.Shared, 40<<30
	v, err := gpuLabel(g)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, grantOf(map[string]string{labelGPUs: v})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if grantOf(map[string]string{}) != nil {
		t.Error("a container without the label has GPUs")
	}
	for _, bad := range []string{"", "{", `{"agent":"a","mode":"shared","uuids":[]}`, `{"agent":"a","uuids":["GPU-1"],"extra":1}`, `{"uuids":["GPU-1",""]}`} {
		if got := grantOf(map[string]string{labelGPUs: bad}); got == nil || got.Problem == "" || len(got.Units) != 0 {
			t.Errorf("label %q read as %+v, want a grant marked with the problem", bad, got)
		}
	}
}

// fakeRunsc is a runsc that answers `nvproxy list-supported-drivers` with
// out, or fails with exit 3 when out is "fail".
func fakeRunsc(t *testing.T, out string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runsc")
	body := fmt.Sprintf("#!/bin/sh\n[ \"$1 $2\" = 'nvproxy list-supported-drivers' ] || exit 2\ncat <<'EOF'\n%sEOF\n", out)
	if out == "fail" {
		body = "#!/bin/sh\necho 'flag provided but not defined' >&2\nexit 3\n"
	}
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// The list Debian's runsc 0.0~20240729 prints, in its order.
const debianRunscDrivers = "535.104.12\n535.129.03\n535.154.05\n535.161.07\n550.54.14\n550.54.15\n550.90.07\n"

func TestSandboxGPUsReasons(t *testing.T) {
	const base = "sandbox isolation cannot have GPUs: gVisor nvproxy is not enabled on this appliance"
	for _, tc := range []struct {
		name, runsc, driver, want string
	}{
		{"driver unknown", debianRunscDrivers, "", base},
		{"Debian's driver", debianRunscDrivers, "550.163.01",
			base + "; runsc's nvproxy does not support NVIDIA driver \"550.163.01\" either (it supports 7 versions, 535.104.12 to 550.90.07)"},
		{"a listed driver", debianRunscDrivers, "550.54.15",
			base + " (runsc's nvproxy lists NVIDIA driver \"550.54.15\" as supported; enabling it is not yet tested)"},
		{"unsorted, with noise", "Supported drivers:\n570.86.10\n535.104.05\n", "550.163.01",
			base + "; runsc's nvproxy does not support NVIDIA driver \"550.163.01\" either (it supports 2 versions, 535.104.05 to 570.86.10)"},
		{"runsc too old for the subcommand", "fail", "550.163.01",
			base + " (runsc could not say which drivers its nvproxy supports: exit status 3: \"flag provided but not defined\")"},
		{"no runsc", "", "550.163.01", base + " (and gVisor's runsc is not installed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Runtime{runsc: filepath.Join(t.TempDir(), "missing")}
			if tc.runsc != "" {
				r.runsc = fakeRunsc(t, tc.runsc)
			}
			err := r.SandboxGPUs(context.Background(), tc.driver)
			if !errors.Is(err, ErrUnsupported) || err.Error() != "not supported: "+tc.want {
				t.Errorf("got  %v\nwant not supported: %s", err, tc.want)
			}
		})
	}
}

// The installed runsc answers too (CI installs Debian's).
func TestSandboxGPUsRealRunsc(t *testing.T) {
	if _, err := os.Stat(DefaultRunsc); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s is missing", DefaultRunsc)
		}
		t.Skipf("%s is missing", DefaultRunsc)
	}
	r := &Runtime{runsc: DefaultRunsc}
	err := r.SandboxGPUs(context.Background(), "550.163.01")
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "nvproxy") || strings.Contains(err.Error(), "could not say") {
		t.Errorf("SandboxGPUs = %v", err)
	}
	t.Log(err)
}

// gpuHost is a driver root as the appliance has it, with go-nvml's DGX
// H100 mock for NVML: real character devices for the nodes (nvcdi skips
// anything else; the majors are a real host's), the versioned libraries
// with their soname links, and /var/run linking to /run.
type gpuHost struct {
	dir  string
	root rootfs.Root
	lib  *server.Server
}

func newGPUHost(t *testing.T) *gpuHost {
	t.Helper()
	h := &gpuHost{dir: t.TempDir(), lib: dgxh100.New()}
	node := func(p string, major, minor uint32) {
		full := filepath.Join(h.dir, p)
		mustMkdir(t, filepath.Dir(full))
		if err := unix.Mknod(full, unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))); err != nil {
			if errors.Is(err, unix.EPERM) && os.Getenv("CI") != "true" {
				t.Skipf("creating device nodes needs CAP_MKNOD (run as root, as CI does): %v", err)
			}
			t.Fatal(err)
		}
	}
	for i := range 8 {
		node(fmt.Sprintf("dev/nvidia%d", i), 195, uint32(i))
	}
	node("dev/nvidiactl", 195, 255)
	node("dev/nvidia-modeset", 195, 254)
	node("dev/nvidia-uvm", 510, 0)
	node("dev/nvidia-uvm-tools", 510, 1)
	libs := filepath.Join(h.dir, "usr/lib/x86_64-linux-gnu")
	mustMkdir(t, libs)
	v := h.lib.DriverVersion
	for _, l := range []string{"libcuda.so", "libnvidia-ml.so"} {
		if err := os.WriteFile(filepath.Join(libs, l+"."+v), []byte("driver library "+l+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l+"."+v, filepath.Join(libs, l+".1")); err != nil {
			t.Fatal(err)
		}
	}
	mustMkdir(t, filepath.Join(h.dir, "run"))
	mustMkdir(t, filepath.Join(h.dir, "var"))
	if err := os.Symlink("/run", filepath.Join(h.dir, "var/run")); err != nil {
		t.Fatal(err)
	}
	var err error
	if h.root, err = rootfs.New(h.dir); err != nil {
		t.Fatal(err)
	}
	// What the mock leaves out and nvcdi and admission ask: free memory,
	// MIG handles (none), nothing running.
	for _, d := range h.lib.Devices {
		dev := d.(*server.Device)
		dev.MemoryInfo.Free = dev.MemoryInfo.Total
		dev.IsMigDeviceHandleFunc = func() (bool, nvml.Return) { return false, nvml.SUCCESS }
		dev.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
		dev.GetMigDeviceHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) { return nil, nvml.ERROR_NOT_FOUND }
	}
	t.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") // nvcdi looks up binaries under the root
	return h
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// admit writes the CDI spec from NVML and admits agent to count GPUs
// while another agent holds GPU 0: the grant is what the runtime injects.
func (h *gpuHost) admit(t *testing.T, agent string, count int) gpu.Grant {
	t.Helper()
	res, err := gpu.RefreshCDISpec(h.root, h.lib, gpu.OpenModules, gpu.CDIOptions{DriverRoot: h.dir})
	if err != nil {
		t.Fatal(err)
	}
	a := gpu.NewAllocator(res.Inventory)
	if err := a.Restore(gpu.Grant{Agent: "holder", Mode: gpu.Exclusive, Units: []gpu.GrantedGPU{{UUID: res.Inventory.Units[0].UUID}}}); err != nil {
		t.Fatal(err)
	}
	g, err := a.Admit(gpu.Request{Agent: agent, Count: count, Mode: gpu.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// testGPUs creates, in the private containerd, a container admitted to
// two GPUs and one without: the stored OCI specs differ by exactly the
// granted GPUs' nodes (GPU 0, held by another agent, is not among them),
// the spec's common nodes and driver libraries, their device cgroup rules
// and NVIDIA's environment; inside, /dev has those nodes and no other
// GPU's, and the library is readable under its soname.
func testGPUs(t *testing.T, s *suite) {
	h := newGPUHost(t)
	e := s.newEnv(t, WithCDIRoot(h.root))
	ctx := context.Background()
	g := h.admit(t, "llm", 2)
	plain := e.spec("plain", Container, "sleep", "3600")
	withGPU := e.spec("with-gpus", Container, "sleep", "3600")
	withGPU.GPUs = &g
	for _, sp := range []Spec{plain, withGPU} {
		if err := e.rt.Create(ctx, sp); err != nil {
			t.Fatalf("create %s: %v", sp.ID, err)
		}
		t.Cleanup(func() { e.rt.Delete(context.Background(), sp.ID) })
	}
	base, got := storedSpec(t, e, "plain"), storedSpec(t, e, "with-gpus")
	var granted []string
	for _, u := range g.Units {
		idx := slices.IndexFunc(h.lib.Devices, func(d nvml.Device) bool { return d.(*server.Device).UUID == u.UUID })
		granted = append(granted, fmt.Sprintf("/dev/nvidia%d", idx))
	}
	wantNodes := append(slices.Clone(granted), "/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidiactl")
	slices.Sort(wantNodes)
	if slices.Contains(granted, "/dev/nvidia0") || len(granted) != 2 {
		t.Fatalf("granted %v: GPU 0 is another agent's", granted)
	}
	checkGPUEdits(t, h, base, got, wantNodes)

	st, err := e.rt.Status(ctx, "with-gpus")
	if err != nil || st.GPUs == nil || !slices.Equal(st.GPUs.CDIDevices(), g.CDIDevices()) || st.GPUs.Agent != "llm" {
		t.Errorf("status GPUs %+v, %v; want the grant %v", st.GPUs, err, g.CDIDevices())
	}
	if st, _ := e.rt.Status(ctx, "plain"); st.GPUs != nil {
		t.Errorf("the plain container has GPUs %+v", st.GPUs)
	}
	if err := e.rt.Start(ctx, "with-gpus"); err != nil {
		t.Fatal(err)
	}
	inside := strings.Fields(e.sh(t, "with-gpus", "cd /dev && ls -d nvidia*"))
	var want []string
	for _, n := range wantNodes {
		want = append(want, strings.TrimPrefix(n, "/dev/"))
	}
	if !slices.Equal(inside, want) {
		t.Errorf("/dev in the container: %v, want %v", inside, want)
	}
	if out := e.sh(t, "with-gpus", "cat /usr/lib/x86_64-linux-gnu/libcuda.so.1"); out != "driver library libcuda.so" {
		t.Errorf("libcuda.so.1 in the container: %q", out)
	}

	sandboxed := e.spec("sandboxed", Sandbox, "sleep", "3600")
	sandboxed.GPUs = &g
	if err := e.rt.Create(ctx, sandboxed); !errors.Is(err, ErrUnsupported) {
		t.Errorf("sandbox with GPUs: %v, want ErrUnsupported", err)
	}
	if _, err := e.rt.Status(ctx, "sandboxed"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused sandbox exists: %v", err)
	}
	// A grant the spec no longer defines (its GPU lost since) is refused
	// by name, and nothing is created.
	stale := e.spec("stale", Container, "sleep", "3600")
	stale.GPUs = grantOfUUIDs("llm", "GPU-00000000-dead-4bad-8bad-000000000000")
	if err := e.rt.Create(ctx, stale); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "GPU-00000000-dead") {
		t.Errorf("stale grant: %v, want ErrState naming the device", err)
	}
	if _, err := e.rt.Status(ctx, "stale"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused container exists: %v", err)
	}
}

func storedSpec(t *testing.T, e *env, id string) *specs.Spec {
	t.Helper()
	ctr, err := e.rt.c.LoadContainer(e.rt.ctx(context.Background()), id)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ctr.Spec(e.rt.ctx(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// checkGPUEdits checks that got is base plus exactly the GPU edits.
func checkGPUEdits(t *testing.T, h *gpuHost, base, got *specs.Spec, wantNodes []string) {
	t.Helper()
	var nodes []string
	for _, d := range got.Linux.Devices {
		nodes = append(nodes, d.Path)
		if d.Type != "c" || d.UID == nil || *d.UID != got.Process.User.UID || d.GID == nil || *d.GID != got.Process.User.GID {
			t.Errorf("device %+v: not a character device owned by the agent", d)
		}
	}
	slices.Sort(nodes)
	if !slices.Equal(nodes, wantNodes) {
		t.Errorf("device nodes %v, want %v", nodes, wantNodes)
	}
	rules := got.Linux.Resources.Devices[len(base.Linux.Resources.Devices):]
	if len(rules) != len(wantNodes) || !slices.Equal(got.Linux.Resources.Devices[:len(base.Linux.Resources.Devices)], base.Linux.Resources.Devices) {
		t.Errorf("device cgroup rules %+v on top of %+v", rules, base.Linux.Resources.Devices)
	}
	for _, r := range rules {
		if !r.Allow || r.Type != "c" || r.Major == nil || r.Access != "rwm" {
			t.Errorf("rule %+v", r)
		}
	}
	// The CDI library orders the mounts parents first, so the base's may
	// move: they are compared as sets.
	var mounts []string
	var others []specs.Mount
	for _, m := range got.Mounts {
		if !strings.HasPrefix(m.Source, h.dir+"/") {
			others = append(others, m)
			continue
		}
		mounts = append(mounts, strings.TrimPrefix(m.Source, h.dir)+" "+m.Destination)
		if !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "nosuid") {
			t.Errorf("mount %+v is not read-only and nosuid", m)
		}
	}
	slices.Sort(mounts)
	byDest := func(a, b specs.Mount) int { return strings.Compare(a.Destination, b.Destination) }
	baseMounts := slices.Clone(base.Mounts)
	slices.SortStableFunc(others, byDest)
	slices.SortStableFunc(baseMounts, byDest)
	libs, v := "/usr/lib/x86_64-linux-gnu/", h.lib.DriverVersion
	wantMounts := []string{libs + "libcuda.so." + v + " " + libs + "libcuda.so." + v, libs + "libcuda.so.1 " + libs + "libcuda.so.1",
		libs + "libnvidia-ml.so." + v + " " + libs + "libnvidia-ml.so." + v, libs + "libnvidia-ml.so.1 " + libs + "libnvidia-ml.so.1"}
	slices.Sort(wantMounts)
	if !slices.Equal(mounts, wantMounts) {
		t.Errorf("mounts added %v, want %v", mounts, wantMounts)
	}
	// Nothing else differs but what the container's ID names.
	rest := *got
	restLinux, restProc := *got.Linux, *got.Process
	restRes := *got.Linux.Resources
	restRes.Devices = base.Linux.Resources.Devices
	restLinux.Devices, restLinux.Resources, restLinux.CgroupsPath = base.Linux.Devices, &restRes, base.Linux.CgroupsPath
	restProc.Env = slices.DeleteFunc(slices.Clone(got.Process.Env), func(e string) bool { return strings.HasPrefix(e, "NVIDIA_") })
	rest.Linux, rest.Process, rest.Mounts, rest.Hostname = &restLinux, &restProc, others, base.Hostname
	plain := *base
	plain.Mounts = baseMounts
	if diff := cmp.Diff(&plain, &rest); diff != "" {
		t.Errorf("the GPU container's spec differs beyond the GPU edits (-plain +gpu):\n%s", diff)
	}
	if !slices.Contains(got.Process.Env, "NVIDIA_VISIBLE_DEVICES=void") {
		t.Errorf("env %v lacks the spec's NVIDIA_VISIBLE_DEVICES=void", got.Process.Env)
	}
}

// testCgroups: the map Cgroups gives names the cgroup the running
// container's process is really in, as /proc/PID/cgroup shows it, which
// is what appliance/gpu matches NVML's processes against.
func testCgroups(t *testing.T, s *suite) {
	e := s.newEnv(t)
	ctx := context.Background()
	sp := e.spec("agent-x-g1", Container, "sleep", "3600")
	sp.Labels = map[string]string{"omerta.test/agent": "agent-x"}
	e.run(t, sp)
	other := e.spec("unlabelled", Container, "sleep", "3600")
	if err := e.rt.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rt.Delete(context.Background(), other.ID) })
	m, err := e.rt.Cgroups(ctx, "omerta.test/agent")
	if err != nil {
		t.Fatal(err)
	}
	cg := gpu.ContainerCgroup(e.rt.ns, sp.ID)
	if !cmp.Equal(m, map[string]string{cg: "agent-x"}) {
		t.Fatalf("cgroups %v, want %s → agent-x only", m, cg)
	}
	st, err := e.rt.Status(ctx, sp.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := gpu.ParseCgroupFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(entries, func(en gpu.CgroupEntry) bool { return en.Path == cg || strings.HasPrefix(en.Path, cg+"/") }) {
		t.Errorf("process %d is in %+v, none within %s", st.Pid, entries, cg)
	}
}

// The GPU label is read back from containerd on every Status: whatever
// it holds, grantOf returns nil only without it, never panics, and a
// grant it returns either has a problem or names devices by their UUID.
func FuzzGrantOf(f *testing.F) {
	v, _ := gpuLabel(grantOfUUIDs("llm", "GPU-1", "MIG-2"))
	for _, s := range []string{v, "", "{", "null", `{"uuids":[""]}`, `{"agent":"a","mode":"shared","uuids":["GPU-1"],"x":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, label string) {
		g := grantOf(map[string]string{labelGPUs: label})
		if g == nil {
			t.Fatal("a labelled container read as one without GPUs")
		}
		if g.Problem != "" {
			return
		}
		for _, u := range g.Units {
			if u.UUID == "" || u.CDIName != gpu.CDIVendorClass+"="+u.UUID {
				t.Fatalf("unit %+v", u)
			}
		}
	})
}
