package agents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/store"
)

// cdiHost is a driver root as the appliance has it, for go-nvml's DGX
// H100 mock: character devices for the nodes (nvcdi skips anything
// else), the driver's libraries with their soname links, and /var/run
// linking to /run, where the CDI spec goes.
func cdiHost(t *testing.T, lib *server.Server) (string, rootfs.Root) {
	t.Helper()
	dir := t.TempDir()
	mkdir := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	node := func(p string, major, minor uint32) {
		full := filepath.Join(dir, p)
		mkdir(filepath.Dir(full))
		if err := unix.Mknod(full, unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))); err != nil {
			if errors.Is(err, unix.EPERM) && os.Getenv("CI") != "true" {
				t.Skipf("creating device nodes needs CAP_MKNOD (run as root, as CI does): %v", err)
			}
			t.Fatal(err)
		}
	}
	for i := range lib.Devices {
		node(fmt.Sprintf("dev/nvidia%d", i), 195, uint32(i))
	}
	node("dev/nvidiactl", 195, 255)
	node("dev/nvidia-uvm", 510, 0)
	libs := filepath.Join(dir, "usr/lib/x86_64-linux-gnu")
	mkdir(libs)
	for _, l := range []string{"libcuda.so", "libnvidia-ml.so"} {
		if err := os.WriteFile(filepath.Join(libs, l+"."+lib.DriverVersion), []byte("driver library "+l+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l+"."+lib.DriverVersion, filepath.Join(libs, l+".1")); err != nil {
			t.Fatal(err)
		}
	}
	mkdir(filepath.Join(dir, "run"))
	mkdir(filepath.Join(dir, "var"))
	if err := os.Symlink("/run", filepath.Join(dir, "var/run")); err != nil {
		t.Fatal(err)
	}
	root, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	// What nvcdi asks and the mock leaves out: no MIG device anywhere.
	for _, d := range lib.Devices {
		dev := d.(*server.Device)
		dev.IsMigDeviceHandleFunc = func() (bool, nvml.Return) { return false, nvml.SUCCESS }
		dev.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
		dev.GetMigDeviceHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) { return nil, nvml.ERROR_NOT_FOUND }
	}
	t.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") // nvcdi looks binaries up under the root
	return dir, root
}

// TestRealGPUs: an agent asking for 2 GPUs, deployed through the Service
// on the real runtime in a private containerd, with the CDI spec written
// from NVML (the DGX H100 mock) and another agent holding GPU 0, gets
// exactly the devices admission chose: inside its container /dev has the
// two granted GPUs' nodes and the driver's common ones, no other GPU's;
// its container records the grant, and a restarted Service restores it.
func TestRealGPUs(t *testing.T) {
	suite := newRealSuite(t)
	lib := h100()
	hostDir, host := cdiHost(t, lib)
	res, err := gpu.RefreshCDISpec(host, lib, gpu.OpenModules, gpu.CDIOptions{DriverRoot: hostDir})
	if err != nil {
		t.Fatal(err)
	}
	alloc := gpu.NewAllocator(res.Inventory)
	holder := res.Inventory.Units[0].UUID
	if err := alloc.Restore(gpu.Grant{Agent: "holder", Mode: gpu.Exclusive, Units: []gpu.GrantedGPU{{UUID: holder}}}); err != nil {
		t.Fatal(err)
	}
	dir, ns := t.TempDir(), suite.d.Namespace(t)
	rt, err := runtime.New(suite.d.Client(t), runtime.WithNamespace(ns), runtime.WithLogDir(filepath.Join(dir, "logs")),
		runtime.WithRunDir(filepath.Join(dir, "run")), runtime.WithRuntimeRoot(suite.d.RuntimeRoot), runtime.WithCDIRoot(host))
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := rt.ImportArchive(context.Background(), suite.archive.Path)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("importing busybox: %v %v", imgs, err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	newService := func(a *gpu.Allocator) *Service {
		s, err := New(st, rt, WithStateDir(filepath.Join(dir, "agents")), WithStopGrace(time.Second),
			WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil))), gpuOptions(a))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		if err := s.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	e := &realEnv{d: suite.d, ns: ns, dir: dir, rt: rt, st: st, s: newService(alloc), image: imgs[0].Name}
	ctx := context.Background()
	m := busyboxManifest(t, e.image, runtime.Container, "exec sleep 3600")
	m.Spec.Resources.GPUs = 2
	a, err := e.s.Deploy(ctx, DeployRequest{Manifest: m, Actor: testActor, Secrets: map[string]any{"token": testSecret}})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	t.Cleanup(func() { e.s.Delete(context.Background(), "bb", true, testActor) })
	held, _ := alloc.Grant("bb")
	var want []string
	for _, u := range held.Units {
		i := slices.IndexFunc(lib.Devices, func(d nvml.Device) bool { return d.(*server.Device).UUID == u.UUID })
		want = append(want, fmt.Sprintf("nvidia%d", i))
	}
	if a.Status.State != StateRunning || len(want) != 2 || slices.Contains(uuidsOf(&held), holder) {
		t.Fatalf("agent %s with grant %v; want running with 2 GPUs, not the holder's %s", a.Status.State, uuidsOf(&held), holder)
	}
	want = append(want, "nvidia-uvm", "nvidiactl")
	slices.Sort(want)
	if got := strings.Fields(e.sh(t, "bb", "cd /dev && ls -d nvidia*")); !slices.Equal(got, want) {
		t.Errorf("/dev in the agent's container: %v, want exactly %v", got, want)
	}
	if out := e.sh(t, "bb", "cat /usr/lib/x86_64-linux-gnu/libcuda.so.1"); out != "driver library libcuda.so" {
		t.Errorf("libcuda.so.1 in the container: %q", out)
	}
	cst, err := rt.Status(ctx, "bb-g1")
	if err != nil || cst.GPUs == nil || !slices.Equal(cst.GPUs.CDIDevices(), held.CDIDevices()) {
		t.Fatalf("the container records %+v, %v; want %v", cst.GPUs, err, held.CDIDevices())
	}
	// omertad restarts: a fresh allocator over the same GPUs gets the
	// running agent's grant back from its container.
	alloc2 := gpu.NewAllocator(res.Inventory)
	newService(alloc2)
	if g, ok := alloc2.Grant("bb"); !ok || !slices.Equal(uuidsOf(&g), uuidsOf(&held)) {
		got, _ := json.Marshal(g)
		t.Errorf("after the restart the grant is %s; want %v", got, uuidsOf(&held))
	}
}
