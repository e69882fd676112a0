package gpu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"golang.org/x/sys/unix"
)

// migChildEnv marks the copy of the test binary that runs in its own
// mount namespace.
const migChildEnv = "OMERTA_GPU_TEST_MIG_NAMESPACE"

// nvcdi finds the device node of a MIG device's GPU and compute instance
// in /proc/driver/nvidia-caps/mig-minors, always on the host's /proc (it
// takes no root for it), and fails the device when the file is missing.
// The test therefore reruns itself in a private mount namespace with a
// tmpfs over /proc/driver holding the file; nothing outside it changes.
func TestCDISpecMIG(t *testing.T) {
	if os.Getenv(migChildEnv) == "" {
		rerunInMountNamespace(t, "TestCDISpecMIG")
		return
	}
	// GPU 0 (minor 0) holds three GPU instances (IDs 0, 1, 2 in the mock)
	// with one compute instance (ID 0) each; caps 10..15 are theirs.
	minors := "config 1\nmonitor 2\n"
	var caps []int
	for gi := range 3 {
		minors += fmt.Sprintf("gpu0/gi%d/access %d\ngpu0/gi%d/ci0/access %d\n", gi, 10+2*gi, gi, 11+2*gi)
		caps = append(caps, 10+2*gi, 11+2*gi)
	}
	if err := unix.Mount("tmpfs", "/proc/driver", "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mounting a tmpfs over /proc/driver in the test's namespace: %v", err)
	}
	write(t, "/proc/driver/nvidia-caps/mig-minors", minors, 0o444)

	d := newDGX(dgxh100.New(), nil)
	d.enableMIG(t, 0, nil, nvml.GPU_INSTANCE_PROFILE_3_SLICE, nvml.GPU_INSTANCE_PROFILE_2_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE)
	root := driverRoot(t, 8, d.DriverVersion, caps...)
	g := generate(t, d, root)
	golden(t, "cdi-dgx-h100-mig.yaml", root, g.YAML)
	var want []string // nvcdi lists the whole GPUs, then the MIG devices
	for i := 1; i < 8; i++ {
		want = append(want, CDIVendorClass+"="+gpuUUID(i))
	}
	want = append(want, CDIVendorClass+"="+migUUID(0, 0), CDIVendorClass+"="+migUUID(0, 1), CDIVendorClass+"="+migUUID(0, 2))
	if strings.Join(g.Devices, " ") != strings.Join(want, " ") {
		t.Fatalf("devices %v, want the MIG devices of GPU 0 and GPUs 1-7 whole", g.Devices)
	}
	checkDeviceNodes(t, g.YAML, root, map[string][]string{
		migUUID(0, 0): {"/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap10", "/dev/nvidia-caps/nvidia-cap11"},
		migUUID(0, 2): {"/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap14", "/dev/nvidia-caps/nvidia-cap15"},
		gpuUUID(1):    {"/dev/nvidia1"},
	})

	// A MIG device and a whole GPU, admitted and injected together.
	dir, err := CDISpecDir(rootOf(t, root))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rootOf(t, root).WriteFile(CDISpecPath, g.YAML, 0o644); err != nil {
		t.Fatal(err)
	}
	a := NewAllocator(inventoryOf(t, d))
	small, err := a.Admit(Request{Agent: "small", MemoryBytes: gib(15), Mode: Shared, AllowMIG: true})
	if err != nil || small.Units[0].UUID != migUUID(0, 1) {
		t.Fatalf("small = %+v, %v; want the 2g.20gb MIG device", small, err)
	}
	oci := baseSpec()
	if err := InjectDevices(oci, []string{dir}, small.CDIDevices()); err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, n := range oci.Linux.Devices {
		nodes = append(nodes, n.Path)
	}
	if got := strings.Join(nodes, " "); !strings.Contains(got, "/dev/nvidia0 /dev/nvidia-caps/nvidia-cap12 /dev/nvidia-caps/nvidia-cap13") || strings.Contains(got, "cap10") {
		t.Errorf("nodes of the 2g.20gb device: %s", got)
	}
}

// rerunInMountNamespace runs test in a copy of this test binary in a new
// mount namespace (made private, so that its mounts stay in it).
func rerunInMountNamespace(t *testing.T, test string) {
	t.Helper()
	args := []string{"-test.run=^" + test + "$", "-test.count=1", "-test.v"}
	if *update {
		args = append(args, "-update")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), migChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("a mount namespace needs CAP_SYS_ADMIN (run as root, as CI does): %v", err)
	}
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("%s in its namespace: %v", test, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s did not pass in its namespace (skipped?)", test)
	}
}
