package agents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/rootfs"
)

// gpuEnv is an env whose Service admits GPUs against go-nvml's DGX H100
// mock (eight 80 GB H100s, driver 550.54.15), through a real
// gpu.Allocator.
type gpuEnv struct {
	*env
	lib   *server.Server
	alloc *gpu.Allocator
}

// h100 is the DGX H100 mock with its memory free: the mock reports none.
func h100() *server.Server {
	lib := dgxh100.New()
	for _, d := range lib.Devices {
		dev := d.(*server.Device)
		dev.MemoryInfo.Free = dev.MemoryInfo.Total
	}
	return lib
}

func readInventory(t testing.TB, lib nvml.Interface) gpu.Inventory {
	t.Helper()
	inv, err := gpu.ReadInventory(lib)
	if err != nil || len(inv.Units) == 0 {
		t.Fatalf("reading the mock's GPUs: %d units, %v", len(inv.Units), err)
	}
	return inv
}

// gpuOptions wires alloc as omertad wires gpu.Service's: ready at once,
// the driver the inventory was read under.
func gpuOptions(alloc *gpu.Allocator) Option {
	ready := make(chan struct{})
	close(ready)
	st := gpu.Status{Available: true, DriverVersion: alloc.Inventory().DriverVersion}
	return WithGPUs(alloc, ready, func() gpu.Status { return st })
}

func newGPUEnv(t testing.TB, opts ...Option) *gpuEnv {
	t.Helper()
	lib := h100()
	alloc := gpu.NewAllocator(readInventory(t, lib))
	e := newEnv(t, append([]Option{gpuOptions(alloc)}, opts...)...)
	e.reconcile(t) // the first pass restores the grants: none yet
	return &gpuEnv{env: e, lib: lib, alloc: alloc}
}

// gpuYAML is toolYAML asking for n GPUs, under isolation.
func gpuYAML(n int, isolation string) string {
	y := strings.Replace(toolYAML, "resources: {cpu: 500m, memory: 64Mi, pids: 64}",
		fmt.Sprintf("resources: {cpu: 500m, memory: 64Mi, pids: 64, gpus: %d}", n), 1)
	return strings.Replace(y, "isolation: container", "isolation: "+isolation, 1)
}

func (e *env) deployGPUs(t testing.TB, id string, n int) (Agent, error) {
	t.Helper()
	return e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, gpuYAML(n, "container")), ID: id,
		Config: map[string]any{"mode": "fast"}, Secrets: map[string]any{"api_key": testSecret}, Actor: testActor})
}

func uuidsOf(g *gpu.Grant) []string {
	if g == nil {
		return nil
	}
	var out []string
	for _, u := range g.Units {
		out = append(out, u.UUID)
	}
	return out
}

// An agent asking for 2 GPUs gets a grant of 2, and its container's spec
// carries exactly that grant: the devices admission chose, by CDI name,
// each one the inventory has; the audit record names them.
func TestGPUGrantReachesRuntime(t *testing.T) {
	e := newGPUEnv(t)
	a, err := e.deployGPUs(t, "a", 2)
	if err != nil {
		t.Fatal(err)
	}
	held, ok := e.alloc.Grant("a")
	if !ok || len(held.Units) != 2 || held.Mode != gpu.Exclusive {
		t.Fatalf("grant %+v, %v; want 2 exclusive units", held, ok)
	}
	if a.Status.State != StateRunning || !slices.Equal(uuidsOf(a.GPUs), uuidsOf(&held)) {
		t.Errorf("agent %+v with GPUs %v; want running with %v", a.Status, uuidsOf(a.GPUs), uuidsOf(&held))
	}
	spec, ok := e.rt.Spec("a-g1")
	if !ok || spec.GPUs == nil {
		t.Fatalf("the container was created without GPUs: %+v", spec.GPUs)
	}
	if !slices.Equal(spec.GPUs.CDIDevices(), held.CDIDevices()) {
		t.Errorf("the runtime got %v, admission chose %v", spec.GPUs.CDIDevices(), held.CDIDevices())
	}
	inv := e.alloc.Inventory()
	for _, u := range spec.GPUs.Units {
		unit, ok := inv.Unit(u.UUID)
		if !ok || u.CDIName != unit.CDIName() || !strings.HasPrefix(u.CDIName, "nvidia.com/gpu=GPU-") {
			t.Errorf("device %+v is not a unit of the inventory", u)
		}
	}
	var detail string
	for _, r := range e.audit(t) {
		if r.Action == "agents.deploy" {
			detail = string(r.Detail)
		}
	}
	for _, d := range held.CDIDevices() {
		if !strings.Contains(detail, d) {
			t.Errorf("the deploy's audit record lacks %s: %s", d, detail)
		}
	}
}

// Asking for more GPUs than are free is refused with the numbers, and
// leaves nothing: no row, no container, no audit record, no grant.
func TestGPURefusedLeavesNothing(t *testing.T) {
	e := newGPUEnv(t)
	ctx := context.Background()
	_, err := e.deployGPUs(t, "big", 9)
	var ge *GPUError
	if !errors.As(err, &ge) || !errors.Is(err, ErrConflict) || !errors.Is(err, gpu.ErrInsufficient) {
		t.Fatalf("deploy of 9 GPUs: %v; want a *GPUError (ErrConflict, gpu.ErrInsufficient)", err)
	}
	if !strings.Contains(ge.Reason, "needs 9 GPUs to itself") || !strings.Contains(ge.Reason, "8 are free") {
		t.Errorf("the refusal lacks the numbers: %s", ge.Reason)
	}
	if _, err := e.s.Get(ctx, "big"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a row was left: %v", err)
	}
	if cs := e.rt.Containers(); len(cs) != 0 {
		t.Errorf("containers were left: %v", cs)
	}
	if gs := e.alloc.Grants(); len(gs) != 0 {
		t.Errorf("grants were left: %+v", gs)
	}
	for _, r := range e.audit(t) {
		if r.Target == "big" {
			t.Errorf("audit record %s %s of a refused deploy", r.Action, r.Target)
		}
	}
	if _, err := e.deployGPUs(t, "a", 6); err != nil {
		t.Fatal(err)
	}
	if _, err := e.deployGPUs(t, "b", 3); !errors.As(err, &ge) || !strings.Contains(ge.Reason, "needs 3 GPUs to itself, 2 are free") {
		t.Errorf("3 GPUs with 2 free: %v", err)
	}
}

// Deleting an agent releases its GPUs: a second agent can then take them.
func TestGPUDeleteReleases(t *testing.T) {
	e := newGPUEnv(t)
	ctx := context.Background()
	if _, err := e.deployGPUs(t, "a", 8); err != nil {
		t.Fatal(err)
	}
	held, _ := e.alloc.Grant("a")
	if _, err := e.deployGPUs(t, "b", 1); !errors.Is(err, gpu.ErrInsufficient) {
		t.Fatalf("a ninth GPU: %v", err)
	}
	if err := e.s.Delete(ctx, "a", false, testActor); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.alloc.Grant("a"); ok {
		t.Fatal("the deleted agent still holds its GPUs")
	}
	b, err := e.deployGPUs(t, "b", 8)
	if err != nil {
		t.Fatalf("after the delete: %v", err)
	}
	if got := uuidsOf(b.GPUs); len(got) != 8 || !slices.Equal(got, uuidsOf(&held)) {
		t.Errorf("b got %v; want a's %v", got, uuidsOf(&held))
	}
}

// A sandboxed agent asking for a GPU is refused with the runtime's reason,
// naming the installed driver; nothing is left.
func TestGPUSandboxRefused(t *testing.T) {
	e := newGPUEnv(t)
	_, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, gpuYAML(1, "sandbox")), ID: "sbx",
		Secrets: map[string]any{"api_key": testSecret}, Actor: testActor})
	var ie *InvalidError
	if !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Path != "spec.isolation" {
		t.Fatalf("sandbox with a GPU: %v; want one problem on spec.isolation", err)
	}
	if r := ie.Problems[0].Reason; !strings.Contains(r, "nvproxy is not enabled") || !strings.Contains(r, "550.54.15") {
		t.Errorf("reason %q lacks the runtime's reason or the driver", r)
	}
	if len(e.rt.Containers()) != 0 || len(e.alloc.Grants()) != 0 {
		t.Errorf("left %v, %+v", e.rt.Containers(), e.alloc.Grants())
	}
	// create() refuses too (a spec stored before this check existed).
	if _, err := e.s.gpusFor(context.Background(), "sbx", parseManifest(t, gpuYAML(1, "sandbox"))); !errors.Is(err, runtime.ErrUnsupported) || !strings.Contains(fmt.Sprint(err), "nvproxy") {
		t.Errorf("gpusFor a sandbox: %v", err)
	}
}

// Without a GPU service, or with one that found no driver, a manifest
// asking for GPUs is refused on spec.resources.gpus with the reason; the
// service here is the real gpu.Service over an NVML without its library.
func TestGPUsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) []Option
		want string
	}{
		{"no GPU service", func(*testing.T) []Option { return nil }, "this omertad runs no GPU service"},
		{"no driver", func(t *testing.T) []Option {
			root, err := rootfs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
			svc, err := gpu.NewService(gpu.ServiceConfig{Root: root, NVML: lib, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			<-svc.Ready()
			return []Option{WithGPUs(svc.Allocator(), svc.Ready(), svc.Status)}
		}, "no GPU can be given: NVIDIA management library unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts(t)...)
			e.reconcile(t)
			_, err := e.deployGPUs(t, "a", 1)
			var ie *InvalidError
			if !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Path != "spec.resources.gpus" ||
				ie.Problems[0].Code != manifest.CodeUnavailable || !strings.Contains(ie.Problems[0].Reason, tc.want) {
				t.Fatalf("deploy: %v; want spec.resources.gpus unavailable: %s", err, tc.want)
			}
			if _, err := e.s.Get(context.Background(), "a"); !errors.Is(err, ErrNotFound) {
				t.Errorf("a row was left: %v", err)
			}
			e.deploy(t, "plain") // an agent without GPUs deploys as before
		})
	}
}

// restarted is a second Service on e's store and runtime, as after an
// omertad restart: a fresh allocator over lib's GPUs now.
func (e *gpuEnv) restarted(t testing.TB) (*Service, *gpu.Allocator) {
	t.Helper()
	alloc := gpu.NewAllocator(readInventory(t, e.lib))
	s, err := New(e.st, e.rt, WithClock(e.clock.Now), WithStateDir(filepath.Join(e.dir, "agents")), WithStopGrace(0),
		WithLogger(slog.New(slog.DiscardHandler)), gpuOptions(alloc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, alloc
}

// After a restart the running agents' grants are restored from their
// containers before anything is admitted: admission waits for it, and
// then cannot hand out a GPU a running agent holds.
func TestGPURestartRestores(t *testing.T) {
	e := newGPUEnv(t)
	ctx := context.Background()
	if _, err := e.deployGPUs(t, "a", 2); err != nil {
		t.Fatal(err)
	}
	before, _ := e.alloc.Grant("a")
	s, alloc := e.restarted(t)
	deploy := func(id string, n int) (Agent, error) {
		return s.Deploy(ctx, DeployRequest{Manifest: parseManifest(t, gpuYAML(n, "container")), ID: id,
			Secrets: map[string]any{"api_key": testSecret}, Actor: testActor})
	}
	if _, err := deploy("early", 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a GPU deploy before the grants are restored: %v; want ErrUnavailable", err)
	}
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	after, ok := alloc.Grant("a")
	if !ok || !slices.Equal(uuidsOf(&after), uuidsOf(&before)) || after.Mode != gpu.Exclusive {
		t.Fatalf("restored %+v, %v; want %v", after, ok, uuidsOf(&before))
	}
	if _, err := deploy("b", 7); !errors.Is(err, gpu.ErrInsufficient) {
		t.Errorf("7 GPUs beside a restored grant of 2: %v", err)
	}
	b, err := deploy("b", 6)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range uuidsOf(b.GPUs) {
		if slices.Contains(uuidsOf(&before), u) {
			t.Errorf("b was given %s, which a holds", u)
		}
	}
}

// A GPU lost while omertad was down: the agent is flagged at restore, and
// its GPU still there stays reserved.
func TestGPURestoreLost(t *testing.T) {
	e := newGPUEnv(t)
	if _, err := e.deployGPUs(t, "a", 2); err != nil {
		t.Fatal(err)
	}
	held, _ := e.alloc.Grant("a")
	lost := held.Units[1].UUID
	e.lib.Devices = slices.DeleteFunc(e.lib.Devices, func(d nvml.Device) bool { return d.(*server.Device).UUID == lost })
	s, alloc := e.restarted(t)
	if err := s.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, err := s.Get(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Status.Reason, "GPU drift: "+lost+" gone") || a.GPUs == nil || a.GPUs.Problem == "" {
		t.Errorf("after the restore: reason %q, GPUs %+v", a.Status.Reason, a.GPUs)
	}
	if g, ok := alloc.Grant("a"); !ok || !slices.Equal(uuidsOf(&g), []string{held.Units[0].UUID}) {
		t.Errorf("kept %+v; want %s reserved", g, held.Units[0].UUID)
	}
	if !slices.Contains(actions(e.audit(t)), "omertad agents.gpu.drift a") {
		t.Errorf("no drift audit record: %v", actions(e.audit(t)))
	}
}

// A GPU lost mid-run flags its agent (status reason, an event, an audit
// record) and it keeps running; a restart creates its container again
// with GPUs admission gives it now, and the flag goes.
func TestGPUDriftFlags(t *testing.T) {
	e := newGPUEnv(t)
	ctx := context.Background()
	if _, err := e.deployGPUs(t, "a", 2); err != nil {
		t.Fatal(err)
	}
	held, _ := e.alloc.Grant("a")
	lost := held.Units[0].UUID
	sub := e.s.Bus().Subscribe(ctx, Filter{Types: []EventType{EventAgentState}, Agent: "a"})
	defer sub.Close()
	e.lib.Devices = slices.DeleteFunc(e.lib.Devices, func(d nvml.Device) bool { return d.(*server.Device).UUID == lost })
	affected := e.alloc.Update(readInventory(t, e.lib))
	if len(affected) != 1 || affected[0].Agent != "a" {
		t.Fatalf("affected %+v", affected)
	}
	if err := e.s.GPUDrift(ctx, affected); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-sub.C:
		if d, ok := ev.Data.(AgentStateData); !ok || !strings.Contains(d.Reason, "GPU drift") || !strings.Contains(d.Reason, lost) {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	e.reconcile(t) // a running agent's pass must not clear the flag
	a := e.get(t, "a")
	if a.Status.State != StateRunning || !strings.Contains(a.Status.Reason, "GPU drift: ") || !strings.Contains(a.Status.Reason, lost) {
		t.Errorf("after the loss: %s, %q", a.Status.State, a.Status.Reason)
	}
	if !slices.Contains(actions(e.audit(t)), "omertad agents.gpu.drift a") {
		t.Errorf("no drift audit record: %v", actions(e.audit(t)))
	}
	a, err := e.s.Restart(ctx, "a", testActor)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := e.rt.Spec("a-g1")
	if a.Status.Reason != "" || a.GPUs == nil || a.GPUs.Problem != "" || slices.Contains(uuidsOf(spec.GPUs), lost) || len(uuidsOf(spec.GPUs)) != 2 {
		t.Errorf("after the restart: %q, %+v, container GPUs %v", a.Status.Reason, a.GPUs, uuidsOf(spec.GPUs))
	}
}

// A patch changing the GPU count: refused while the agent runs, admitted
// once it is disabled; enabling it creates its container with the new
// grant. A patch admission cannot serve keeps the old grant.
func TestGPUPatch(t *testing.T) {
	e := newGPUEnv(t)
	ctx := context.Background()
	if _, err := e.deployGPUs(t, "a", 2); err != nil {
		t.Fatal(err)
	}
	patch := func(n int) error {
		_, err := e.s.Patch(ctx, "a", PatchRequest{Resources: &manifest.Resources{GPUs: n}, Actor: testActor})
		return err
	}
	if err := patch(3); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "disabled first") {
		t.Fatalf("patching a running agent's GPUs: %v", err)
	}
	if _, err := e.s.Disable(ctx, "a", testActor); err != nil {
		t.Fatal(err)
	}
	if err := patch(9); !errors.Is(err, gpu.ErrInsufficient) {
		t.Fatalf("patch to 9: %v", err)
	}
	if g, ok := e.alloc.Grant("a"); !ok || len(g.Units) != 2 {
		t.Fatalf("the refused patch lost the old grant: %+v", g)
	}
	if err := patch(3); err != nil {
		t.Fatal(err)
	}
	a, err := e.s.Enable(ctx, "a", testActor)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := e.rt.Spec(a.Status.Container)
	if g, _ := e.alloc.Grant("a"); len(uuidsOf(spec.GPUs)) != 3 || !slices.Equal(uuidsOf(spec.GPUs), uuidsOf(&g)) {
		t.Errorf("after the patch: container %v, grant %v", uuidsOf(spec.GPUs), uuidsOf(&g))
	}
}

// The GPU service's telemetry reaches the bus, one event per agent.
func TestGPUUsageEvents(t *testing.T) {
	e := newGPUEnv(t)
	sub := e.s.Bus().Subscribe(context.Background(), Filter{Types: []EventType{EventGPU}})
	defer sub.Close()
	e.s.PublishGPUUsage(gpu.Usage{Agents: []gpu.AgentUsage{{Agent: "a", MemoryBytes: 1 << 30,
		Devices: []gpu.DeviceUsage{{UUID: "GPU-1", Label: "GPU 0", MemoryBytes: 1 << 30, SMPercent: 40, MemoryPercent: -1, Processes: 2}}}}})
	select {
	case ev := <-sub.C:
		d, ok := ev.Data.(GPUSample)
		if ev.Type != EventGPU || ev.Agent != "a" || !ok || len(d.Devices) != 1 || d.Devices[0].SMPercent != 40 || d.Devices[0].Processes != 2 || d.At.IsZero() {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
}
