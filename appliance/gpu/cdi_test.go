package gpu

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxb200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/omertaos/omertaos/appliance/rootfs"
)

func generate(t *testing.T, d *dgx, root string) *GeneratedSpec {
	t.Helper()
	g, err := GenerateCDISpec(d, inventoryOf(t, d), OpenModules, CDIOptions{DriverRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCDISpecGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server *server.Server
	}{
		{"cdi-dgx-h100.yaml", dgxh100.New()},
		{"cdi-dgx-h200.yaml", dgxh200.New()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDGX(tc.server, nil)
			root := driverRoot(t, 8, d.DriverVersion)
			g := generate(t, d, root)
			golden(t, tc.name, root, g.YAML)
			if err := ValidateCDISpec(g.YAML); err != nil {
				t.Fatal(err)
			}
			if len(g.Devices) != 8 || len(g.Skipped) != 0 {
				t.Fatalf("devices %v, skipped %v", g.Devices, g.Skipped)
			}
			// What nvcdi could not find reaches the caller, not stderr.
			if !slices.ContainsFunc(g.Warnings, func(w string) bool { return strings.Contains(w, "nvidia-persistenced/socket") }) {
				t.Errorf("warnings %q lack the missing persistenced socket", g.Warnings)
			}
			checkDeviceNodes(t, g.YAML, root, map[string][]string{
				gpuUUID(0): {"/dev/nvidia0"}, gpuUUID(7): {"/dev/nvidia7"},
			})
		})
	}
}

// checkDeviceNodes reads the spec back with the CDI library and checks
// that each named device carries exactly the nodes listed, and that the
// spec's common edits carry the control nodes and the driver's files.
func checkDeviceNodes(t *testing.T, spec []byte, root string, want map[string][]string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nvidia.yaml")
	if err := os.WriteFile(p, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := cdi.ReadSpec(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, nodes := range want {
		d := s.GetDevice(name)
		if d == nil {
			t.Fatalf("no device %s", name)
		}
		var got []string
		for _, n := range d.ContainerEdits.DeviceNodes {
			got = append(got, n.Path)
			if n.HostPath != root+n.Path || n.Major == 0 {
				t.Errorf("%s: node %+v", name, *n)
			}
		}
		if !slices.Equal(got, nodes) {
			t.Errorf("%s: nodes %v, want %v", name, got, nodes)
		}
	}
	var common []string
	for _, n := range s.ContainerEdits.DeviceNodes {
		common = append(common, n.Path)
	}
	for _, n := range []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"} {
		if !slices.Contains(common, n) {
			t.Errorf("common edits lack %s: %v", n, common)
		}
	}
	var mounts []string
	for _, m := range s.ContainerEdits.Mounts {
		mounts = append(mounts, m.ContainerPath)
	}
	for _, m := range []string{"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15", "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "/usr/bin/nvidia-smi",
		"/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"} {
		if !slices.Contains(mounts, m) {
			t.Errorf("common edits lack the mount %s: %v", m, mounts)
		}
	}
	if slices.Contains(mounts, "/usr/lib/x86_64-linux-gnu/libcuda.so") {
		t.Errorf("the development link was mounted: %v", mounts)
	}
	if len(s.ContainerEdits.Hooks) != 0 {
		t.Errorf("hooks in a spec without nvidia-cdi-hook: %+v", s.ContainerEdits.Hooks)
	}
}

// A Blackwell B200 on a driver that predates it: every GPU is refused
// with the branch it needs, and no spec is written; a spec left from
// before is removed, since it would name GPUs the driver cannot run.
func TestCDISpecB200Unsupported(t *testing.T) {
	for _, version := range []string{"", "550.163.01"} { // the mock's 560, Debian's 550
		d := newDGX(dgxb200.New(), nil)
		if version != "" {
			d.DriverVersion = version
		}
		t.Run(d.DriverVersion, func(t *testing.T) {
			dr := driverRoot(t, 8, d.DriverVersion)
			_, err := GenerateCDISpec(d, inventoryOf(t, d), OpenModules, CDIOptions{DriverRoot: dr})
			var de *DriverError
			if !errors.Is(err, ErrUnsupported) || !errors.As(err, &de) || de.Architecture != Blackwell ||
				!strings.Contains(err.Error(), "GPU 0 (NVIDIA B200 180GB HBM3e): blackwell needs driver branch 570 or later") {
				t.Fatalf("GenerateCDISpec = %v", err)
			}
			host := rootOf(t, t.TempDir())
			if _, err := host.WriteFile(CDISpecPath, []byte("stale"), 0o644); err != nil {
				t.Fatal(err)
			}
			res, err := RefreshCDISpec(host, d, OpenModules, CDIOptions{DriverRoot: dr})
			if !errors.Is(err, ErrUnsupported) || !res.Removed || host.Exists(CDISpecPath) {
				t.Fatalf("RefreshCDISpec = %+v, %v; want the stale spec removed", res, err)
			}
		})
	}
}

func rootOf(t testing.TB, dir string) rootfs.Root {
	t.Helper()
	r, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The spec is rewritten only when what it says changes, atomically, at
// /var/run/cdi inside the root (the root's /var/run is a link to /run).
func TestRefreshCDISpecOnlyOnChange(t *testing.T) {
	d := newDGX(dgxh100.New(), nil)
	dir := driverRoot(t, 8, d.DriverVersion)
	root := rootOf(t, dir)
	refresh := func(d *dgx) RefreshResult {
		t.Helper()
		res, err := RefreshCDISpec(root, d, ProprietaryModules, CDIOptions{DriverRoot: dir})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := refresh(d); !res.Changed || len(res.Spec.Devices) != 8 {
		t.Fatalf("first refresh = %+v", res)
	}
	onDisk := filepath.Join(dir, "run/cdi/nvidia.yaml")
	fi, err := os.Stat(onDisk)
	if err != nil {
		t.Fatal(err)
	}
	if res := refresh(newDGX(dgxh100.New(), nil)); res.Changed {
		t.Fatal("the same GPUs rewrote the spec")
	}
	if fi2, _ := os.Stat(onDisk); !fi2.ModTime().Equal(fi.ModTime()) || !os.SameFile(fi, fi2) {
		t.Error("the file was replaced although nothing changed")
	}
	lost := newDGX(dgxh100.New(), nil)
	lose(5)(t, lost)
	res := refresh(lost)
	b, _ := os.ReadFile(onDisk)
	if !res.Changed || len(res.Spec.Devices) != 7 || strings.Contains(string(b), gpuUUID(5)) || !strings.Contains(string(b), gpuUUID(6)) {
		t.Fatalf("after losing GPU 5: %+v\n%s", res, b)
	}
	if ents, _ := os.ReadDir(filepath.Dir(onDisk)); len(ents) != 1 {
		t.Errorf("leftovers in the spec directory: %v", ents)
	}
}

// Without a driver, NVML's Init fails and nothing else may be called.
func TestRefreshCDISpecNoDriver(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	res, err := RefreshCDISpec(rootOf(t, t.TempDir()), lib, "", CDIOptions{})
	if !errors.Is(err, ErrNoDriver) || res.Changed {
		t.Fatalf("= %+v, %v", res, err)
	}
}

func TestValidateCDISpecRefuses(t *testing.T) {
	for name, spec := range map[string]string{
		"no devices":    "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n",
		"unknown field": "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\nroot: /\ndevices:\n- name: a\n  containerEdits:\n    env: [A=1]\n",
		"other kind":    "cdiVersion: 0.5.0\nkind: example.com/disk\ndevices:\n- name: a\n  containerEdits:\n    env: [A=1]\n",
		"bad name":      "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"a/../b\"\n  containerEdits:\n    env: [A=1]\n",
		"too large":     strings.Repeat("#", maxSpecBytes+1),
	} {
		if err := ValidateCDISpec([]byte(spec)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ValidateCDISpec = %v", name, err)
		}
	}
}

// The real library on a machine without the NVIDIA driver: every entry
// point answers ErrNoDriver instead of killing the test binary.
func TestRealNVMLWithoutDriver(t *testing.T) {
	lib := nvml.New()
	if _, err := ReadInventory(lib); err == nil {
		t.Skip("this machine has a working NVIDIA driver; nothing to test")
	} else if !errors.Is(err, ErrNoDriver) {
		t.Fatalf("ReadInventory = %v", err)
	}
	if _, err := RefreshCDISpec(rootOf(t, t.TempDir()), lib, "", CDIOptions{}); !errors.Is(err, ErrNoDriver) {
		t.Errorf("RefreshCDISpec = %v", err)
	}
	if _, err := CollectUsage(lib, "/proc", nil, 0); !errors.Is(err, ErrNoDriver) {
		t.Errorf("CollectUsage = %v", err)
	}
}
