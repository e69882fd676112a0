package gpu

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxb200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const openModuleLine = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  %s  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Mar  4 2025\n"

// serviceFixture is a Service over d with the driver's files and the
// loaded module's version file under one root; what OnDrift and OnUsage
// are told is recorded.
type serviceFixture struct {
	svc  *Service
	dir  string
	mu   sync.Mutex
	drif [][]Affected
	uses []Usage
}

func newServiceFixture(t *testing.T, lib nvml.Interface, version string, cfg ServiceConfig) *serviceFixture {
	t.Helper()
	f := &serviceFixture{dir: driverRoot(t, 8, version)}
	if version != "" {
		write(t, filepath.Join(f.dir, "proc/driver/nvidia/version"), strings.Replace(openModuleLine, "%s", version, 1), 0o444)
	}
	cfg.Root, cfg.NVML, cfg.CDI = rootOf(t, f.dir), lib, CDIOptions{DriverRoot: f.dir}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnDrift = func(_ context.Context, a []Affected) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.drif = append(f.drif, a)
	}
	cfg.OnUsage = func(u Usage) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.uses = append(f.uses, u)
	}
	svc, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

func (f *serviceFixture) drifts() [][]Affected {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.drif)
}

func (f *serviceFixture) specPath() string { return filepath.Join(f.dir, "run/cdi/nvidia.yaml") }

// A refresh on a DGX H100 writes the spec, reads the open modules and
// gives admission the eight GPUs the spec defines; a grant names them.
func TestServiceRefresh(t *testing.T) {
	d := newDGX(dgxh100.New(), nil)
	f := newServiceFixture(t, d, d.DriverVersion, ServiceConfig{})
	st, err := f.svc.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Available || st.Flavour != OpenModules || st.DriverVersion != "550.54.15" || len(st.Devices) != 8 || !st.SpecChanged || st.Reason != "" {
		t.Fatalf("status %+v", st)
	}
	if _, err := os.Stat(f.specPath()); err != nil {
		t.Fatal(err)
	}
	g, err := f.svc.Allocator().Admit(Request{Agent: "a", Count: 2, Mode: Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range g.CDIDevices() {
		if !slices.Contains(st.Devices, dev) {
			t.Errorf("granted %s, which the spec does not define (%v)", dev, st.Devices)
		}
	}
	// Nothing changed: the spec is not rewritten.
	if st, err = f.svc.Refresh(context.Background()); err != nil || st.SpecChanged {
		t.Errorf("second refresh: %+v, %v", st, err)
	}
}

// A GPU lost while an agent holds it: the telemetry pass sees the set of
// GPUs change, refreshes the spec without it and reports the agent once,
// not on every pass until it is released.
func TestServiceLostGPU(t *testing.T) {
	d := newDGX(dgxh100.New(), nil)
	f := newServiceFixture(t, d, d.DriverVersion, ServiceConfig{})
	ctx := context.Background()
	if _, err := f.svc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	a := f.svc.Allocator()
	if err := a.Restore(Grant{Agent: "holder", Mode: Exclusive, Units: []GrantedGPU{{UUID: gpuUUID(7)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Sample(ctx); err != nil || len(f.drifts()) != 0 {
		t.Fatalf("sample before the loss: %v, drift %v", err, f.drifts())
	}
	d.Devices = d.Devices[:7]
	if _, err := f.svc.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	st := f.svc.Status()
	if !st.SpecChanged || len(st.Devices) != 7 || slices.Contains(st.Devices, "nvidia.com/gpu="+gpuUUID(7)) {
		t.Errorf("after the loss: %+v", st)
	}
	want := "GPU 7 (" + gpuUUID(7) + ") is gone"
	if dr := f.drifts(); len(dr) != 1 || len(dr[0]) != 1 || dr[0][0].Agent != "holder" || dr[0][0].Reason != want {
		t.Fatalf("drift %+v, want holder: %s", dr, want)
	}
	for range 2 {
		if _, err := f.svc.Sample(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.drifts()); n != 1 {
		t.Errorf("the same drift was reported %d times", n)
	}
	if _, err := a.Admit(Request{Agent: "other", Count: 8, Mode: Shared}); !errors.Is(err, ErrInsufficient) {
		t.Errorf("admitted 8 GPUs on a machine with 7: %v", err)
	}
}

// Telemetry attributes an agent's processes through its cgroup, tells
// OnUsage, and lets admission count what the agent already uses.
func TestServiceTelemetry(t *testing.T) {
	d := newDGX(dgxh100.New(), map[int]uint64{2: gib(30)})
	d.dev(2).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: gib(30)}}, nvml.SUCCESS
	}
	d.dev(2).GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
		return []nvml.ProcessUtilizationSample{{Pid: 4242, TimeStamp: 77, SmUtil: 65, MemUtil: 30}}, nvml.SUCCESS
	}
	proc := fakeProc(t, map[int]string{4242: "0::/omerta/llm-g1\n"})
	f := newServiceFixture(t, d, d.DriverVersion, ServiceConfig{ProcDir: proc,
		Cgroups: func(context.Context) (map[string]string, error) {
			return map[string]string{ContainerCgroup("omerta", "llm-g1"): "llm"}, nil
		}})
	ctx := context.Background()
	if _, err := f.svc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	a := f.svc.Allocator()
	if err := a.Restore(Grant{Agent: "llm", Mode: Shared, MemoryBytes: gib(40), Units: []GrantedGPU{{UUID: gpuUUID(2)}}}); err != nil {
		t.Fatal(err)
	}
	u, err := f.svc.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Agents) != 1 || u.Agents[0].Agent != "llm" || u.Agents[0].MemoryBytes != gib(30) || u.Agents[0].Devices[0].SMPercent != 65 {
		t.Fatalf("usage %+v", u)
	}
	if len(f.uses) != 1 || f.svc.Usage().LastSeen != 77 {
		t.Errorf("OnUsage told %d times, last seen %d", len(f.uses), f.svc.Usage().LastSeen)
	}
	if g, _ := a.Grant("llm"); g.Units[0].UsedBytes != gib(30) {
		t.Errorf("grant %+v: the observed use is not recorded", g)
	}
	// GPU 2 has 50 GiB free by NVML; 10 of llm's 40 are not taken yet.
	if _, err := a.Admit(Request{Agent: "second", MemoryBytes: gib(41), Mode: Shared}); err != nil {
		t.Errorf("41 GiB fits on another GPU: %v", err)
	}
	g, err := a.Admit(Request{Agent: "third", MemoryBytes: gib(40), Mode: Shared})
	if err != nil {
		t.Fatal(err)
	}
	if g.Units[0].UUID != gpuUUID(2) {
		t.Errorf("best fit for 40 GiB is GPU 2 (40 left), got %s", g.Units[0].Label)
	}
	checkMetrics(t, f.svc, map[string]float64{
		`omerta_gpu_agent_memory_bytes{agent="llm",unit="GPU 2"}`:           float64(gib(30)),
		`omerta_gpu_agent_sm_utilization_percent{agent="llm",unit="GPU 2"}`: 65,
		`omerta_gpu_unit_memory_reserved_bytes{unit="GPU 2"}`:               float64(gib(80)),
		`omerta_gpu_driver_info{kernel_modules="open",version="550.54.15"}`: 1,
		`omerta_gpu_unattributed_processes{}`:                               0,
	})
}

// checkMetrics gathers the Service's collectors and checks the named
// series (labels other than those named are ignored; uuid never is shown).
func checkMetrics(t *testing.T, s *Service, want map[string]float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collectors()...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, fam := range fams {
		for _, m := range fam.GetMetric() {
			got[seriesName(fam.GetName(), m)] = m.GetGauge().GetValue()
		}
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func seriesName(name string, m *dto.Metric) string {
	var ls []string
	for _, l := range m.GetLabel() {
		if l.GetName() != "uuid" {
			ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
		}
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

// No library: the refresh says so without an error, makes no NVML call
// after the failed Init, writes no spec, and telemetry does nothing.
func TestServiceNoDriver(t *testing.T) {
	inits := 0
	lib := &mock.Interface{InitFunc: func() nvml.Return { inits++; return nvml.ERROR_LIBRARY_NOT_FOUND }}
	f := newServiceFixture(t, lib, "", ServiceConfig{})
	st, err := f.svc.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Available || !strings.Contains(st.Reason, "NVIDIA management library unavailable") || len(st.Devices) != 0 {
		t.Errorf("status %+v", st)
	}
	if _, err := os.Stat(f.specPath()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a spec was written without a driver: %v", err)
	}
	if _, err := f.svc.Sample(context.Background()); err != nil || inits != 1 {
		t.Errorf("telemetry without a driver: %v, %d Init calls", err, inits)
	}
	if _, err := f.svc.Allocator().Admit(Request{Agent: "a", Count: 1, Mode: Shared}); !errors.Is(err, ErrInsufficient) {
		t.Errorf("admitted without GPUs: %v", err)
	}
}

// A B200 on Debian's 550: no spec, nothing to admit, and the reason says
// which branch it needs.
func TestServiceUnsupportedGPU(t *testing.T) {
	s := dgxb200.New()
	s.DriverVersion = "550.163.01"
	d := newDGX(s, nil)
	f := newServiceFixture(t, d, d.DriverVersion, ServiceConfig{})
	st, err := f.svc.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(st.Problems, "\n")
	if st.Available || st.Reason != "no GPU the installed driver supports" || !strings.Contains(joined, "blackwell needs driver branch 570 or later") {
		t.Errorf("status %+v", st)
	}
	if n := len(f.svc.Allocator().Inventory().Units); n != 0 {
		t.Errorf("admission has %d units the driver cannot drive", n)
	}
}

// Run refreshes before Ready, samples on its timer and returns nil when
// its context ends.
func TestServiceRun(t *testing.T) {
	d := newDGX(dgxh100.New(), nil)
	f := newServiceFixture(t, d, d.DriverVersion, ServiceConfig{TelemetryInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	select {
	case <-f.svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready after 10 s")
	}
	if !f.svc.Status().Available {
		t.Errorf("ready before the first refresh: %+v", f.svc.Status())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.uses)
		f.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d telemetry passes in 10 s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestNewServiceRefuses(t *testing.T) {
	if _, err := NewService(ServiceConfig{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no root: %v", err)
	}
	if _, err := NewService(ServiceConfig{Root: rootOf(t, t.TempDir()), TelemetryInterval: -time.Second}); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative interval: %v", err)
	}
}
