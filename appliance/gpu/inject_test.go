package gpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/google/go-cmp/cmp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// baseSpec is the kind of OCI spec the agents runtime builds: a non-root
// user, a few mounts, a deny-all device cgroup.
func baseSpec() *rspec.Spec {
	return &rspec.Spec{
		Version: rspec.Version,
		Process: &rspec.Process{User: rspec.User{UID: 1000, GID: 1000}, Args: []string{"/agent"}, Env: []string{"PATH=/usr/bin:/bin"}},
		Root:    &rspec.Root{Path: "rootfs", Readonly: true},
		Mounts: []rspec.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev"}},
		},
		Linux: &rspec.Linux{Resources: &rspec.LinuxResources{Devices: []rspec.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}},
	}
}

// specFixture writes the DGX H100 spec where the runtime reads it and
// returns the driver root and the spec directory.
func specFixture(t *testing.T, d *dgx) (string, string) {
	t.Helper()
	dir := driverRoot(t, 8, d.DriverVersion)
	root := rootOf(t, dir)
	if _, err := RefreshCDISpec(root, d, OpenModules, CDIOptions{DriverRoot: dir}); err != nil {
		t.Fatal(err)
	}
	specDir, err := CDISpecDir(root)
	if err != nil {
		t.Fatal(err)
	}
	return dir, specDir
}

// An agent admitted to GPUs 1 and 2 gets exactly their nodes, the spec's
// common nodes and mounts, and nothing else: no other GPU, nothing of the
// base spec lost.
func TestInjectAdmittedDevices(t *testing.T) {
	d := newDGX(dgxh100.New(), nil)
	root, specDir := specFixture(t, d)
	a := NewAllocator(inventoryOf(t, d))
	if err := a.Restore(Grant{Agent: "holder", Mode: Exclusive, Units: []GrantedGPU{{UUID: gpuUUID(0)}}}); err != nil {
		t.Fatal(err)
	}
	g, err := a.Admit(Request{Agent: "agent", Count: 2, Mode: Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	oci := baseSpec()
	if err := InjectDevices(oci, []string{specDir}, g.CDIDevices()); err != nil {
		t.Fatal(err)
	}
	var nodes, rules []string
	for _, n := range oci.Linux.Devices {
		nodes = append(nodes, fmt.Sprintf("%s c %d:%d uid %d", n.Path, n.Major, n.Minor, *n.UID))
	}
	for _, r := range oci.Linux.Resources.Devices[1:] {
		rules = append(rules, fmt.Sprintf("%v %s %d:%d %s", r.Allow, r.Type, *r.Major, *r.Minor, r.Access))
	}
	slices.Sort(nodes)
	slices.Sort(rules)
	wantNodes := []string{"/dev/nvidia-modeset c 195:254 uid 1000", "/dev/nvidia-uvm c 510:0 uid 1000",
		"/dev/nvidia-uvm-tools c 510:1 uid 1000", "/dev/nvidia1 c 195:1 uid 1000", "/dev/nvidia2 c 195:2 uid 1000",
		"/dev/nvidiactl c 195:255 uid 1000"}
	wantRules := []string{"true c 195:1 rwm", "true c 195:2 rwm", "true c 195:254 rwm", "true c 195:255 rwm",
		"true c 510:0 rwm", "true c 510:1 rwm"}
	if diff := cmp.Diff(wantNodes, nodes); diff != "" {
		t.Errorf("device nodes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantRules, rules); diff != "" {
		t.Errorf("device cgroup rules (-want +got):\n%s", diff)
	}
	var mounts []string
	for _, m := range oci.Mounts[2:] {
		mounts = append(mounts, strings.TrimPrefix(m.Source, root)+" "+m.Destination)
		if m.Source != root+m.Destination || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "nosuid") {
			t.Errorf("mount %+v", m)
		}
	}
	if len(mounts) != 11 || !slices.Contains(mounts, "/usr/lib/x86_64-linux-gnu/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1") {
		t.Errorf("mounts: %v", mounts)
	}
	// Nothing else changed.
	want := baseSpec()
	oci.Linux.Devices, oci.Linux.Resources.Devices = nil, oci.Linux.Resources.Devices[:1]
	oci.Mounts = oci.Mounts[:2]
	want.Process.Env = append(want.Process.Env, "NVIDIA_CTK_LIBCUDA_DIR=/usr/lib/x86_64-linux-gnu", "NVIDIA_VISIBLE_DEVICES=void")
	if diff := cmp.Diff(want, oci); diff != "" {
		t.Errorf("the rest of the spec changed (-want +got):\n%s", diff)
	}
}

func TestInjectRefuses(t *testing.T) {
	d := newDGX(dgxh100.New(), nil)
	_, specDir := specFixture(t, d)
	for _, tc := range []struct {
		name    string
		devices []string
		want    error
	}{
		{"every GPU at once", []string{"nvidia.com/gpu=all"}, ErrDenied},
		{"another vendor's device", []string{"example.com/disk=root"}, ErrDenied},
		{"not a qualified name", []string{"GPU-0"}, ErrInvalid},
		{"a GPU no spec defines", []string{"nvidia.com/gpu=" + gpuUUID(1), "nvidia.com/gpu=GPU-gone"}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oci := baseSpec()
			err := InjectDevices(oci, []string{specDir}, tc.devices)
			if !errors.Is(err, tc.want) {
				t.Fatalf("InjectDevices = %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(baseSpec(), oci); diff != "" {
				t.Errorf("a refused injection changed the spec:\n%s", diff)
			}
		})
	}
	if err := InjectDevices(baseSpec(), []string{specDir}, nil); err != nil {
		t.Errorf("no devices: %v", err)
	}
}

// The CDI library reads every spec file whole and follows links; the
// directory is checked first so that a FIFO or a huge file is refused.
func TestInjectRefusesHostileSpecDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, p string)
	}{
		{"fifo", func(t *testing.T, p string) {
			if err := unix.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"link to /dev/zero", func(t *testing.T, p string) {
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}},
		{"huge", func(t *testing.T, p string) {
			write(t, p, strings.Repeat("#", maxSpecBytes+1), 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.make(t, filepath.Join(dir, "evil.yaml"))
			err := InjectDevices(baseSpec(), []string{dir}, []string{"nvidia.com/gpu=" + gpuUUID(0)})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("InjectDevices = %v", err)
			}
		})
	}
}
