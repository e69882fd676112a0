package gpu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/omertaos/omertaos/appliance/rootfs"
)

// DefaultTelemetryInterval is the time between telemetry passes when the
// configuration gives none.
const DefaultTelemetryInterval = 10 * time.Second

// kernelVersionFile names the loaded module's flavour and version.
const kernelVersionFile = "/proc/driver/nvidia/version"

// ServiceConfig is what a Service works with. Root and NVML are the only
// handles on the machine; everything else is a parameter.
type ServiceConfig struct {
	// Root holds the CDI spec (CDISpecPath) and /proc/driver/nvidia/version:
	// rootfs.Host() on the appliance.
	Root rootfs.Root
	// NVML is nil for the real library (nvml.New()).
	NVML nvml.Interface
	// CDI says where the driver's files are, for the spec.
	CDI CDIOptions
	// ProcDir is the host's /proc, where NVML's PIDs are (default "/proc").
	ProcDir string
	// Cgroups maps each agent container's cgroup (ContainerCgroup) to its
	// agent, for telemetry; nil attributes no process to any agent.
	Cgroups func(ctx context.Context) (map[string]string, error)
	// RefreshInterval is the time between full refreshes (the probe's
	// interval); 0 refreshes at start and whenever a telemetry pass sees
	// the GPUs change.
	RefreshInterval time.Duration
	// TelemetryInterval is the time between telemetry passes; 0 means
	// DefaultTelemetryInterval.
	TelemetryInterval time.Duration
	// OnDrift is told of the agents whose GPUs drifted, once per new
	// reason; it stops or flags them and calls Allocator.Release.
	OnDrift func(ctx context.Context, affected []Affected)
	// OnUsage is given every telemetry pass (for the event stream).
	OnUsage func(Usage)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Status is what the last refresh found.
type Status struct {
	At time.Time `json:"at"`
	// Available: NVML answered and at least one GPU is supported.
	Available     bool          `json:"available"`
	DriverVersion string        `json:"driver_version,omitempty"`
	Flavour       ModuleFlavour `json:"kernel_module_flavour,omitempty"`
	// Devices are the CDI devices the spec defines and admission hands out.
	Devices []string `json:"devices"`
	// Reason says why nothing is available ("no NVIDIA driver: ...").
	Reason string `json:"reason,omitempty"`
	// Problems are GPUs left out (an unsupported generation, a failed
	// query) and what nvcdi could not find.
	Problems []string `json:"problems,omitempty"`
	// SpecChanged: this refresh wrote or removed the CDI spec.
	SpecChanged bool `json:"spec_changed"`
}

// Service keeps omertad's view of the GPUs current. A refresh (at start,
// on every RefreshInterval, and whenever a telemetry pass sees the set of
// GPUs change) rewrites the CDI spec and gives admission the new
// inventory, reporting the agents whose GPUs drifted. A telemetry pass
// refreshes the free memory admission decides on, attributes GPU
// processes to agents and hands the result to OnUsage and to /metrics.
type Service struct {
	cfg   ServiceConfig
	lib   nvml.Interface
	alloc *Allocator
	log   *slog.Logger
	now   func() time.Time

	readyOnce sync.Once
	ready     chan struct{}

	// loop serialises refreshes and telemetry passes: Run's loop and a
	// caller's Refresh or Sample.
	loop     sync.Mutex
	since    uint64
	reported map[string]string // agent → drift reason already reported

	mu     sync.Mutex
	status Status
	usage  Usage
}

// NewService returns a Service with an Allocator over no GPUs; Run's first
// refresh fills it (Ready says when).
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Root.Dir() == "" {
		return nil, fmt.Errorf("%w: the GPU service needs a root directory", ErrInvalid)
	}
	if cfg.TelemetryInterval < 0 || cfg.RefreshInterval < 0 {
		return nil, fmt.Errorf("%w: negative GPU refresh or telemetry interval", ErrInvalid)
	}
	s := &Service{cfg: cfg, lib: cfg.NVML, alloc: NewAllocator(Inventory{}), log: cfg.Logger, now: cfg.Now,
		ready: make(chan struct{}), reported: map[string]string{}}
	if s.lib == nil {
		s.lib = nvml.New()
	}
	if s.cfg.ProcDir == "" {
		s.cfg.ProcDir = "/proc"
	}
	if s.cfg.TelemetryInterval == 0 {
		s.cfg.TelemetryInterval = DefaultTelemetryInterval
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Name names the service among omertad's.
func (s *Service) Name() string { return "gpu" }

// Allocator is the admission every agent's GPUs go through.
func (s *Service) Allocator() *Allocator { return s.alloc }

// Ready is closed once the first refresh is done: grants restored before
// it would be checked against no GPUs.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Status returns what the last refresh found.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Devices, st.Problems = slices.Clone(st.Devices), slices.Clone(st.Problems)
	return st
}

// Usage returns the last telemetry pass.
func (s *Service) Usage() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usage
}

// Run refreshes, then samples on every TelemetryInterval and refreshes on
// every RefreshInterval, until ctx ends. A failed pass is logged and
// retried at the next tick: a GPU that stops answering must not stop
// omertad. It returns nil when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.refreshLogged(ctx)
	s.readyOnce.Do(func() { close(s.ready) })
	s.sampleLogged(ctx)
	var refresh <-chan time.Time
	if s.cfg.RefreshInterval > 0 {
		t := time.NewTicker(s.cfg.RefreshInterval)
		defer t.Stop()
		refresh = t.C
	}
	tel := time.NewTicker(s.cfg.TelemetryInterval)
	defer tel.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-refresh:
			s.refreshLogged(ctx)
		case <-tel.C:
			s.sampleLogged(ctx)
		}
	}
}

func (s *Service) refreshLogged(ctx context.Context) {
	before := s.Status()
	st, err := s.Refresh(ctx)
	if err != nil {
		s.log.Error("GPU refresh failed", "err", err)
		return
	}
	if st.Available != before.Available || st.Reason != before.Reason || st.SpecChanged || before.At.IsZero() {
		s.log.Info("GPUs refreshed", "available", st.Available, "driver", st.DriverVersion, "modules", st.Flavour,
			"cdi_devices", len(st.Devices), "spec_changed", st.SpecChanged, "reason", st.Reason, "problems", len(st.Problems))
	}
}

func (s *Service) sampleLogged(ctx context.Context) {
	if _, err := s.Sample(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("GPU telemetry failed", "err", err)
	}
}

// Refresh reads the module flavour and NVML's inventory, rewrites the CDI
// spec (only when it changed) and gives admission the GPUs the driver
// supports. No driver, or no supported GPU, is a Status with its Reason,
// not an error: admission then has nothing to hand out and the holders of
// GPUs are reported as drifted. It fails only when NVML answered Init but
// not the inventory, or when the spec could not be written.
func (s *Service) Refresh(ctx context.Context) (Status, error) {
	s.loop.Lock()
	defer s.loop.Unlock()
	return s.refresh(ctx)
}

func (s *Service) refresh(ctx context.Context) (Status, error) {
	st := Status{At: s.now(), Devices: []string{}}
	flavour, problem := readFlavour(s.cfg.Root)
	st.Flavour = flavour
	if problem != "" {
		st.Problems = append(st.Problems, problem)
	}
	res, err := RefreshCDISpec(s.cfg.Root, s.lib, flavour, s.cfg.CDI)
	st.SpecChanged = res.Changed
	inv := res.Inventory
	switch {
	case errors.Is(err, ErrNoDriver):
		st.Reason = err.Error()
		inv = Inventory{}
	case errors.Is(err, ErrUnsupported) && inv.DriverVersion != "":
		st.Reason = "no GPU the installed driver supports"
	case err != nil && inv.DriverVersion == "":
		return st, fmt.Errorf("refreshing the GPUs: %w", err)
	case err != nil:
		// The inventory was read but the spec not written: admission
		// follows NVML, and a device missing from the stale spec fails
		// its container's creation by name rather than silently.
		st.Problems = append(st.Problems, fmt.Sprintf("the CDI spec was not refreshed: %v", err))
	}
	supported, skipped := SupportedInventory(inv, flavour)
	st.DriverVersion = inv.DriverVersion
	st.Problems = append(st.Problems, skipped...)
	if res.Spec != nil {
		st.Devices = append(st.Devices, res.Spec.Devices...)
		st.Problems = append(st.Problems, res.Spec.Warnings...)
	}
	st.Available = len(st.Devices) > 0 && st.Reason == ""
	s.update(ctx, supported)
	s.mu.Lock()
	s.status = st
	s.mu.Unlock()
	return st, nil
}

// readFlavour reads the loaded module's flavour; none is loaded when the
// file is absent.
func readFlavour(root rootfs.Root) (ModuleFlavour, string) {
	b, err := root.ReadFile(kernelVersionFile, maxVersionFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", ""
	}
	if err != nil {
		return "", fmt.Sprintf("reading %s: %v", kernelVersionFile, err)
	}
	_, flavour, err := ParseKernelModuleVersion(b)
	if err != nil {
		return "", fmt.Sprintf("reading %s: %v", kernelVersionFile, err)
	}
	return flavour, ""
}

// SupportedInventory is inv without the GPUs (and their MIG devices) that
// the driver with flavour cannot drive, and the reason for each one left
// out: admission must hand out only what the CDI spec defines.
func SupportedInventory(inv Inventory, flavour ModuleFlavour) (Inventory, []string) {
	bad := map[int]bool{}
	var skipped []string
	for _, g := range inv.Generations() {
		if err := CheckDriver(inv.DriverVersion, flavour, g); err != nil {
			bad[g.Index] = true
			skipped = append(skipped, err.Error())
		}
	}
	out := Inventory{DriverVersion: inv.DriverVersion, Problems: slices.Clone(inv.Problems)}
	for _, u := range inv.Units {
		if !bad[u.Index] {
			out.Units = append(out.Units, u)
		}
	}
	return out, append(slices.Clone(inv.Problems), skipped...)
}

// update gives admission inv and reports each drifted agent once per
// reason: Update reports a holder of a lost GPU on every pass until the
// caller releases it.
func (s *Service) update(ctx context.Context, inv Inventory) {
	affected := s.alloc.Update(inv)
	var fresh []Affected
	held := map[string]bool{}
	for _, g := range s.alloc.Grants() {
		held[g.Agent] = true
	}
	for agent := range s.reported {
		if !held[agent] {
			delete(s.reported, agent)
		}
	}
	for _, a := range affected {
		if s.reported[a.Agent] == a.Reason {
			continue
		}
		s.reported[a.Agent] = a.Reason
		fresh = append(fresh, a)
		s.log.Warn("GPU drift", "agent", quote(a.Agent), "reason", a.Reason)
	}
	if len(fresh) > 0 && s.cfg.OnDrift != nil {
		s.cfg.OnDrift(ctx, fresh)
	}
}

// Sample is one telemetry pass. It reads the inventory first: when the
// GPUs changed (one lost or added, MIG reconfigured, the driver replaced)
// it refreshes everything, spec included; otherwise admission gets NVML's
// current free memory. Then each GPU process is attributed to its agent,
// admission learns what each agent uses (Observe), and OnUsage is told.
// Without a driver it does nothing.
func (s *Service) Sample(ctx context.Context) (Usage, error) {
	s.loop.Lock()
	defer s.loop.Unlock()
	st := s.Status()
	if st.At.IsZero() || (st.DriverVersion == "" && !st.Available) {
		return Usage{}, nil
	}
	inv, err := ReadInventory(s.lib)
	if err != nil && !errors.Is(err, ErrNoDriver) {
		return Usage{}, fmt.Errorf("reading the GPUs for telemetry: %w", err)
	}
	supported, _ := SupportedInventory(inv, st.Flavour)
	if err != nil || !sameLayout(s.alloc.Inventory(), supported) {
		if st, err = s.refresh(ctx); err != nil || st.DriverVersion == "" {
			return Usage{}, err
		}
	} else {
		s.update(ctx, supported)
	}
	cgroups := map[string]string{}
	if s.cfg.Cgroups != nil {
		if cgroups, err = s.cfg.Cgroups(ctx); err != nil {
			return Usage{}, fmt.Errorf("listing the agents' cgroups: %w", err)
		}
	}
	u, err := CollectUsage(s.lib, s.cfg.ProcDir, cgroups, s.since)
	if err != nil {
		return Usage{}, fmt.Errorf("collecting GPU usage: %w", err)
	}
	s.since = u.LastSeen
	s.alloc.Observe(u)
	s.mu.Lock()
	s.usage = u
	s.mu.Unlock()
	if s.cfg.OnUsage != nil {
		s.cfg.OnUsage(u)
	}
	return u, nil
}

// sameLayout reports whether a and b have the same driver and the same
// units in the same modes; free memory may differ.
func sameLayout(a, b Inventory) bool {
	if a.DriverVersion != b.DriverVersion || len(a.Units) != len(b.Units) {
		return false
	}
	for i, u := range a.Units {
		v := b.Units[i]
		if u.UUID != v.UUID || u.MIGEnabled != v.MIGEnabled || u.TotalBytes != v.TotalBytes || (u.MIG == nil) != (v.MIG == nil) {
			return false
		}
	}
	return true
}
