package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/gofiber/fiber/v2"
	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

const gib = 1 << 30

// openModuleVersion is /proc/driver/nvidia/version as the open modules
// write it.
const openModuleVersion = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  %s  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Mar  4 2025\n"

// dgxH100 is go-nvml's DGX H100 mock with what it leaves out and the GPU
// service asks: free memory (used[i] GiB in use on GPU i) and no MIG
// device anywhere.
func dgxH100(used map[int]uint64) *server.Server {
	lib := dgxh100.New()
	for i, d := range lib.Devices {
		dev := d.(*server.Device)
		dev.MemoryInfo.Used = used[i] * gib
		dev.MemoryInfo.Free = dev.MemoryInfo.Total - dev.MemoryInfo.Used
		dev.IsMigDeviceHandleFunc = func() (bool, nvml.Return) { return false, nvml.SUCCESS }
		dev.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
		dev.GetMigDeviceHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) { return nil, nvml.ERROR_NOT_FOUND }
	}
	return lib
}

// driverHost is a root as the appliance has it for lib: the GPUs' device
// nodes (character devices: nvcdi skips anything else), the driver's
// libraries with their soname links, the loaded open modules' version
// file, and /var/run linking to /run, where the CDI spec goes.
func driverHost(t *testing.T, lib *server.Server) (string, rootfs.Root) {
	t.Helper()
	dir := t.TempDir()
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	put := func(p, data string, mode os.FileMode) {
		mkdir(filepath.Dir(p))
		if err := os.WriteFile(filepath.Join(dir, p), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	node := func(p string, major, minor uint32) {
		mkdir(filepath.Dir(p))
		if err := unix.Mknod(filepath.Join(dir, p), unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))); err != nil {
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
	for _, l := range []string{"libcuda.so", "libnvidia-ml.so"} {
		put("usr/lib/x86_64-linux-gnu/"+l+"."+lib.DriverVersion, "driver library "+l+"\n", 0o644)
		if err := os.Symlink(l+"."+lib.DriverVersion, filepath.Join(dir, "usr/lib/x86_64-linux-gnu", l+".1")); err != nil {
			t.Fatal(err)
		}
	}
	put("proc/driver/nvidia/version", fmt.Sprintf(openModuleVersion, lib.DriverVersion), 0o444)
	mkdir("run")
	mkdir("var")
	if err := os.Symlink("/run", filepath.Join(dir, "var/run")); err != nil {
		t.Fatal(err)
	}
	root, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") // nvcdi looks binaries up under the root
	return dir, root
}

// gpuService is the GPU service over lib in root, refreshed once.
func gpuService(t *testing.T, lib nvml.Interface, dir string, root rootfs.Root) *gpu.Service {
	t.Helper()
	svc, err := gpu.NewService(gpu.ServiceConfig{Root: root, NVML: lib, CDI: gpu.CDIOptions{DriverRoot: dir},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return svc
}

// gpuApp serves the GPU routes alone, with the API's error handler: the
// table of authz.go and New's mounting are the lead's (see
// TestGPURoutesWired once they are).
func gpuApp(g GPUService) *fiber.App {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	app := fiber.New(fiber.Config{ErrorHandler: s.errorHandler, StrictRouting: true, CaseSensitive: true})
	s.gpuRoutes(app.Group("/api/v1"), g)
	return app
}

func getGPUJSON(t *testing.T, app *fiber.App, path string, into any) (int, string) {
	t.Helper()
	resp, err := app.Test(httptest.NewRequest(http.MethodGet, path, nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return resp.StatusCode, string(body)
}

// GET /gpus on a DGX H100 answers its eight GPUs from NVML, in index
// order, with the driver and modules read, memory as NVML says, and the
// agents admission gave each to.
func TestGPUListDGXH100(t *testing.T) {
	lib := dgxH100(map[int]uint64{0: 10, 3: 70})
	dir, root := driverHost(t, lib)
	svc := gpuService(t, lib, dir, root)
	alloc := svc.Allocator()
	toolGrant, err := alloc.Admit(gpu.Request{Agent: "tool", Count: 2, Mode: gpu.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	vram, err := alloc.Admit(gpu.Request{Agent: "chat", MemoryBytes: 20 * gib, Mode: gpu.Shared})
	if err != nil {
		t.Fatal(err)
	}
	app := gpuApp(svc)
	var l apitype.GPUList
	if code, body := getGPUJSON(t, app, "/api/v1/gpus", &l); code != http.StatusOK {
		t.Fatalf("GET /gpus = %d %s", code, body)
	}
	if !l.Available || l.DriverVersion != "550.54.15" || l.KernelModules != "open" || l.Reason != "" || l.RefreshedAt == nil ||
		len(l.GPUs) != 8 || len(l.Lost) != 0 {
		t.Fatalf("GET /gpus = %+v", l)
	}
	holders := map[string][]apitype.GPUHolder{}
	for i, g := range l.GPUs {
		want := lib.Devices[i].(*server.Device)
		if g.Index != i || g.UUID != want.UUID || g.Name == "" || g.Name != want.Config.Name || g.Architecture != "hopper" || g.MIGEnabled ||
			g.CDIDevice != "nvidia.com/gpu="+want.UUID || g.MemoryTotalBytes != want.MemoryInfo.Total ||
			g.MemoryUsedBytes != want.MemoryInfo.Used || g.MemoryFreeBytes != want.MemoryInfo.Free {
			t.Errorf("GPU %d = %+v, want NVML's %s %s (%d of %d bytes used)", i, g, want.UUID, want.Config.Name, want.MemoryInfo.Used, want.MemoryInfo.Total)
		}
		if len(g.Holders) > 0 {
			holders[g.UUID] = g.Holders
		}
	}
	if len(holders) != 3 {
		t.Fatalf("holders = %+v, want tool's two GPUs and chat's one", holders)
	}
	for _, u := range toolGrant.Units {
		h := holders[u.UUID]
		if len(h) != 1 || h[0].Agent != "tool" || h[0].Mode != "exclusive" || h[0].ReservedBytes != u.Reserved {
			t.Errorf("holders of %s = %+v, want tool exclusive", u.Label, h)
		}
	}
	h := holders[vram.Units[0].UUID]
	if len(h) != 1 || h[0].Agent != "chat" || h[0].Mode != "shared" || h[0].ReservedBytes != 20*gib {
		t.Errorf("holders of %s = %+v, want chat shared with 20 GiB", vram.Units[0].Label, h)
	}

	var one apitype.GPUView
	if code, body := getGPUJSON(t, app, "/api/v1/gpus/"+toolGrant.Units[0].UUID, &one); code != http.StatusOK ||
		one.UUID != toolGrant.Units[0].UUID || len(one.Holders) != 1 || one.Holders[0].Agent != "tool" {
		t.Errorf("GET /gpus/%s = %d %s", toolGrant.Units[0].UUID, code, body)
	}
	if code, body := getGPUJSON(t, app, "/api/v1/gpus/GPU-nope", nil); code != http.StatusNotFound || !strings.Contains(body, `GPU \"GPU-nope\" not found`) {
		t.Errorf("GET /gpus/GPU-nope = %d %s, want 404 naming it", code, body)
	}
	if code, _ := getGPUJSON(t, app, "/api/v1/gpus/"+strings.Repeat("x", maxUUIDParam+1), nil); code != http.StatusBadRequest {
		t.Errorf("GET /gpus/{too long} = %d, want 400", code)
	}
}

// A GPU lost under its holder: the list no longer has it, Lost names it
// with its agent and the drift, and GET /gpus/{uuid} says it is gone.
func TestGPUListLost(t *testing.T) {
	lib := dgxH100(nil)
	dir, root := driverHost(t, lib)
	svc := gpuService(t, lib, dir, root)
	grant, err := svc.Allocator().Admit(gpu.Request{Agent: "tool", Count: 8, Mode: gpu.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	last := lib.Devices[7].(*server.Device).UUID
	lib.Devices = lib.Devices[:7]
	if _, err := svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	app := gpuApp(svc)
	var l apitype.GPUList
	getGPUJSON(t, app, "/api/v1/gpus", &l)
	if len(l.GPUs) != 7 || len(l.Lost) != 1 || l.Lost[0].UUID != last || l.Lost[0].Agent != "tool" || l.Lost[0].Label != "GPU 7" ||
		!strings.Contains(l.Lost[0].Problem, "is gone") {
		t.Fatalf("after GPU 7 is lost: %d GPUs, lost %+v", len(l.GPUs), l.Lost)
	}
	for _, g := range l.GPUs {
		if len(g.Holders) != 1 || g.Holders[0].Problem == "" {
			t.Errorf("%s holders = %+v, want tool with the drift", g.UUID, g.Holders)
		}
	}
	code, body := getGPUJSON(t, app, "/api/v1/gpus/"+last, nil)
	if code != http.StatusNotFound || !strings.Contains(body, "is gone") || !strings.Contains(body, `agent \"tool\" still holds it`) {
		t.Errorf("GET /gpus/{lost} = %d %s", code, body)
	}
	if len(grant.Units) != 8 {
		t.Fatalf("grant = %+v", grant)
	}
}

// Without a driver, and with a driver but no GPU, the list is empty (not
// null) and says why, in the GPU service's words; before the first refresh
// nothing is claimed.
func TestGPUListUnavailable(t *testing.T) {
	noDriver := dgxH100(nil)
	noDriver.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	noGPU := dgxH100(nil)
	noGPU.Devices = nil
	for _, tc := range []struct {
		name, reason string
		lib          *server.Server
	}{
		{"no driver", "NVIDIA management library unavailable", noDriver},
		{"driver, no GPU", "no GPU the installed driver supports", noGPU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, root := driverHost(t, dgxH100(nil))
			svc, err := gpu.NewService(gpu.ServiceConfig{Root: root, NVML: tc.lib, CDI: gpu.CDIOptions{DriverRoot: dir},
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			app := gpuApp(svc)
			var before apitype.GPUList
			getGPUJSON(t, app, "/api/v1/gpus", &before)
			if before.Available || before.RefreshedAt != nil || before.GPUs == nil || len(before.GPUs) != 0 {
				t.Errorf("before the first refresh = %+v", before)
			}
			if _, err := svc.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			var l apitype.GPUList
			_, body := getGPUJSON(t, app, "/api/v1/gpus", &l)
			if l.Available || l.RefreshedAt == nil || !strings.Contains(l.Reason, tc.reason) || !strings.Contains(body, `"gpus":[]`) {
				t.Errorf("GET /gpus = %s, want unavailable because %q", body, tc.reason)
			}
			if code, body := getGPUJSON(t, app, "/api/v1/gpus/GPU-0", nil); code != http.StatusNotFound || !strings.Contains(body, tc.reason) {
				t.Errorf("GET /gpus/GPU-0 = %d %s, want 404 with the reason", code, body)
			}
		})
	}
}

// An agent's view carries its grant: the devices admission chose, by
// UUID and CDI name, the mode, and the drift once there is one.
func TestAgentViewGPUs(t *testing.T) {
	lib := dgxH100(nil)
	inv, err := gpu.ReadInventory(lib)
	if err != nil {
		t.Fatal(err)
	}
	alloc := gpu.NewAllocator(inv)
	g, err := alloc.Admit(gpu.Request{Agent: "tool", Count: 2, MemoryBytes: 40 * gib, Mode: gpu.Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	v, err := agentView(&agents.Agent{ID: "tool", GPUs: &g})
	if err != nil {
		t.Fatal(err)
	}
	if v.GPUs == nil || v.GPUs.Mode != "exclusive" || v.GPUs.MemoryBytes != 40*gib || len(v.GPUs.Devices) != 2 || v.GPUs.Problem != "" {
		t.Fatalf("agent view GPUs = %+v", v.GPUs)
	}
	for i, d := range v.GPUs.Devices {
		u := g.Units[i]
		if d.UUID != u.UUID || d.CDIDevice != "nvidia.com/gpu="+u.UUID || d.Label != u.Label || d.ReservedBytes != u.Reserved {
			t.Errorf("device %d = %+v, want %+v", i, d, u)
		}
	}
	alloc.Update(gpu.Inventory{DriverVersion: inv.DriverVersion})
	drifted, _ := alloc.Grant("tool")
	if v, _ := agentView(&agents.Agent{ID: "tool", GPUs: &drifted}); v.GPUs == nil || !strings.Contains(v.GPUs.Problem, "is gone") {
		t.Errorf("drifted grant's view = %+v", v.GPUs)
	}
	if v, _ := agentView(&agents.Agent{ID: "plain"}); v.GPUs != nil {
		t.Errorf("agent without GPUs: %+v", v.GPUs)
	}
	b, _ := json.Marshal(apitype.Agent{})
	if strings.Contains(string(b), `"gpus"`) {
		t.Errorf("an agent without GPUs shows %s", b)
	}
}
