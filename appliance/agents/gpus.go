package agents

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/store"
)

// GPUAllocator is what the Service needs of GPU admission: the methods of
// *gpu.Allocator (gpu.Service.Allocator) it calls.
type GPUAllocator interface {
	Admit(r gpu.Request) (gpu.Grant, error)
	Release(agent string) bool
	Restore(g gpu.Grant) error
	Grant(agent string) (gpu.Grant, bool)
	Inventory() gpu.Inventory
}

var _ GPUAllocator = (*gpu.Allocator)(nil)

// WithGPUs lets agents have GPUs (spec.resources.gpus): alloc admits
// them; ready is closed once the GPU service's first refresh is done
// (gpu.Service.Ready), before which no grant can be restored or made;
// status is what its last refresh found (gpu.Service.Status: the driver,
// or why no GPU can be given). Without it a manifest asking for GPUs is
// refused, naming the field.
func WithGPUs(alloc GPUAllocator, ready <-chan struct{}, status func() gpu.Status) Option {
	return func(s *Service) {
		s.gpus = &gpuState{alloc: alloc, ready: ready, status: status, flags: map[string]string{}}
	}
}

// gpuState is the Service's side of GPU admission.
type gpuState struct {
	alloc  GPUAllocator
	ready  <-chan struct{}
	status func() gpu.Status
	// restored is set once the grants of the containers that survived a
	// restart are restored: until then admission could hand out a GPU a
	// running agent holds, so it answers ErrUnavailable.
	restored atomic.Bool

	mu sync.Mutex
	// flags are the agents whose GPUs drifted (GPUDrift), with the
	// reason, until they get a new grant or are deleted.
	flags map[string]string
}

func (g *gpuState) isReady() bool {
	select {
	case <-g.ready:
		return true
	default:
		return false
	}
}

func (g *gpuState) flag(id string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.flags[id]
}

func (g *gpuState) setFlag(id, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.flags[id] = reason
}

func (g *gpuState) clearFlag(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.flags, id)
}

// GPUError is a request for GPUs that admission could not serve:
// errors.Is matches ErrConflict when nothing fits now (the numbers are in
// Reason, and errors.Is(err, gpu.ErrInsufficient) holds), ErrUnavailable
// while admission is not ready yet.
type GPUError struct {
	Agent string
	Count int
	// Reason says why, with the numbers ("needs 9 GPUs to itself, 8 are
	// free (GPU 0, …, GPU 7)").
	Reason string
	kind   error
	cause  error
}

func (e *GPUError) Error() string {
	return fmt.Sprintf("agent %s: %d GPUs: %s", quote(e.Agent), e.Count, e.Reason)
}

// Is makes errors.Is(err, ErrConflict) or (err, ErrUnavailable) true.
func (e *GPUError) Is(target error) bool { return target == e.kind }

func (e *GPUError) Unwrap() error { return e.cause }

// gpuRefused turns an admission error into what the API maps.
func gpuRefused(id string, n int, err error) error {
	var ae *gpu.AdmissionError
	switch {
	case errors.As(err, &ae):
		return &GPUError{Agent: id, Count: n, Reason: fmt.Sprintf("needs %s, %s", ae.Need, ae.Best), kind: ErrConflict, cause: err}
	case errors.Is(err, gpu.ErrConflict):
		return &GPUError{Agent: id, Count: n, Reason: err.Error(), kind: ErrConflict, cause: err}
	case errors.Is(err, gpu.ErrInvalid):
		return invalid("spec.resources.gpus", manifest.CodeInvalid, "%s", err.Error())
	}
	return fmt.Errorf("admitting agent %s to %d GPUs: %w", quote(id), n, err)
}

// gpusUnavailable says why no agent can have GPUs, or "" when they can or
// it is not known yet (the first refresh is under way).
func (s *Service) gpusUnavailable() string {
	g := s.gpus
	if g == nil {
		return "this omertad runs no GPU service"
	}
	if !g.isReady() {
		return ""
	}
	st := g.status()
	if st.Available {
		return ""
	}
	if st.Reason == "" {
		return "no GPU can be given: none is available"
	}
	return "no GPU can be given: " + st.Reason
}

// sandboxGPUs is the runtime's reason why a sandboxed agent cannot have
// GPUs, with the installed driver when the GPU service knows it.
func (s *Service) sandboxGPUs(ctx context.Context) error {
	driver := ""
	if g := s.gpus; g != nil && g.isReady() {
		driver = g.status().DriverVersion
	}
	return s.rt.SandboxGPUs(ctx, driver)
}

// gpuProblems are what makes a manifest's GPUs impossible here: a sandbox
// (gVisor cannot have them) and no GPU service or no GPU. Admission
// itself comes later, under the policy's lock.
func (s *Service) gpuProblems(ctx context.Context, m *manifest.Manifest) manifest.Problems {
	if m.Spec.Resources.GPUs == 0 {
		return nil
	}
	var ps manifest.Problems
	if m.Spec.Isolation == manifest.IsolationSandbox {
		ps = append(ps, manifest.Problem{Path: "spec.isolation", Code: manifest.CodeUnavailable,
			Reason: oneLine(s.sandboxGPUs(ctx).Error(), maxReason)})
	}
	if why := s.gpusUnavailable(); why != "" {
		ps = append(ps, manifest.Problem{Path: "spec.resources.gpus", Code: manifest.CodeUnavailable, Reason: why})
	}
	return ps
}

// gpuRequest is what admission is asked for m's GPUs. Each is exclusive:
// the policy has no shared mode yet. The policy's VRAM budget (gpu.vram,
// the agent's VRAM in all) is spread over its GPUs: each must have its
// share free.
func (s *Service) gpuRequest(id, tenant string, m *manifest.Manifest) gpu.Request {
	n := m.Spec.Resources.GPUs
	r := gpu.Request{Agent: id, Count: n, Mode: gpu.Exclusive}
	if s.compliance == nil || n == 0 {
		return r
	}
	if set := s.compliance.Set(); set != nil {
		if e := set.Effective(id, m.Metadata.Category, tenant); e != nil && e.VRAM.Set && e.VRAM.Value > 0 {
			r.MemoryBytes = uint64(e.VRAM.Value) / uint64(n)
		}
	}
	return r
}

// admitGPUs gives the agent the GPUs m asks for: the grant it holds when
// that is whole and of the count asked, else a new one (a drifted grant
// is released first: no container of the agent uses it any more, or the
// one that does is being replaced). nil when m asks for none.
func (s *Service) admitGPUs(id, tenant string, m *manifest.Manifest) (*gpu.Grant, error) {
	n := m.Spec.Resources.GPUs
	if n == 0 {
		return nil, nil
	}
	g := s.gpus
	if g == nil {
		return nil, invalid("spec.resources.gpus", manifest.CodeUnavailable, "%s", s.gpusUnavailable())
	}
	if !g.restored.Load() {
		return nil, &GPUError{Agent: id, Count: n, kind: ErrUnavailable,
			Reason: "GPU admission starts once the GPUs are read and the running agents' grants restored; try again shortly"}
	}
	if held, ok := g.alloc.Grant(id); ok {
		if held.Problem == "" && len(held.Units) == n && g.flag(id) == "" {
			return &held, nil
		}
		g.alloc.Release(id)
	}
	grant, err := g.alloc.Admit(s.gpuRequest(id, tenant, m))
	if err != nil {
		return nil, gpuRefused(id, n, err)
	}
	g.clearFlag(id)
	return &grant, nil
}

// gpusFor is the grant a new container of the agent gets: nil without
// GPUs, a refusal for a sandbox (the runtime's reason).
func (s *Service) gpusFor(ctx context.Context, id string, m *manifest.Manifest) (*gpu.Grant, error) {
	if m.Spec.Resources.GPUs == 0 {
		return nil, nil
	}
	if m.Spec.Isolation == manifest.IsolationSandbox {
		return nil, fmt.Errorf("agent %s: %w", quote(id), s.sandboxGPUs(ctx))
	}
	row, err := loadAgent(ctx, s.st.Read(), id)
	if err != nil {
		return nil, err
	}
	return s.admitGPUs(id, row.Tenant, m)
}

// regrantGPUs replaces a disabled agent's grant with one for m, whose GPU
// count differs; undo puts the old one back. A refusal keeps the old one.
func (s *Service) regrantGPUs(row agentRow, m *manifest.Manifest) (undo func(), err error) {
	g := s.gpus
	if g == nil {
		return func() {}, nil
	}
	old, had := g.alloc.Grant(row.ID)
	g.alloc.Release(row.ID)
	putBack := func() {
		g.alloc.Release(row.ID)
		if had {
			if err := g.alloc.Restore(old); err != nil {
				s.log.Warn("agents: giving a GPU grant back", "agent", row.ID, "err", err)
			}
		}
	}
	if _, err := s.admitGPUs(row.ID, row.Tenant, m); err != nil {
		putBack()
		return nil, err
	}
	return putBack, nil
}

// releaseGPUs drops a deleted agent's grant and flag.
func (s *Service) releaseGPUs(id string) {
	if g := s.gpus; g != nil {
		g.alloc.Release(id)
		g.clearFlag(id)
	}
}

// gpuDrifted reports whether the agent's GPUs drifted: its stopped
// container is created again, with the GPUs admission gives it now,
// rather than started with devices that may be gone.
func (s *Service) gpuDrifted(id string) bool {
	g := s.gpus
	if g == nil {
		return false
	}
	if g.flag(id) != "" {
		return true
	}
	held, ok := g.alloc.Grant(id)
	return ok && held.Problem != ""
}

// awaitGPUs waits for the GPU service's first refresh; false when ctx
// ended first.
func (s *Service) awaitGPUs(ctx context.Context) bool {
	if s.gpus == nil {
		return true
	}
	select {
	case <-s.gpus.ready:
		return true
	case <-ctx.Done():
		return false
	}
}

// restoreGPUs re-creates, once after a start, the grants of the agents'
// containers from what each was created with (runtime.Status.GPUs), so
// that a restarted omertad does not hand out a GPU a running agent holds.
// The current generation's container comes first: during a patch both
// may hold one. A grant whose GPUs are gone is flagged (GPUDrift); the
// GPUs still there stay reserved. A container no agent owns is left to
// the orphan sweep.
func (s *Service) restoreGPUs(ctx context.Context, rows []agentRow, list []runtime.Status) {
	g := s.gpus
	if g == nil || g.restored.Load() || !g.isReady() {
		return
	}
	type owner struct {
		agent string
		rank  int // 0: the current generation, 1: the one a patch keeps
	}
	owners := map[string]owner{}
	for _, r := range rows {
		owners[containerID(r.ID, r.Gen)] = owner{r.ID, 0}
		if r.PrevGen > 0 {
			owners[containerID(r.ID, r.PrevGen)] = owner{r.ID, 1}
		}
	}
	var cs []runtime.Status
	for _, c := range list {
		if o, ok := owners[c.ID]; ok && c.GPUs != nil && c.GPUs.Agent == o.agent {
			cs = append(cs, c)
		}
	}
	slices.SortStableFunc(cs, func(a, b runtime.Status) int { return owners[a.ID].rank - owners[b.ID].rank })
	var drifted []gpu.Affected
	for _, c := range cs {
		if _, held := g.alloc.Grant(c.GPUs.Agent); held {
			continue
		}
		if a, ok := s.restoreGrant(*c.GPUs); !ok {
			drifted = append(drifted, a)
		}
	}
	g.restored.Store(true)
	if len(drifted) > 0 {
		if err := s.GPUDrift(ctx, drifted); err != nil {
			s.log.Warn("agents: flagging GPU drift", "err", err)
		}
	}
}

// restoreGrant restores one container's grant; when it cannot be, it
// says why as a drift, keeping what is still there reserved.
func (s *Service) restoreGrant(rec gpu.Grant) (gpu.Affected, bool) {
	alloc := s.gpus.alloc
	if rec.Problem != "" {
		return gpu.Affected{Agent: rec.Agent, Reason: rec.Problem}, false
	}
	err := alloc.Restore(rec)
	if err == nil {
		return gpu.Affected{}, true
	}
	if !errors.Is(err, gpu.ErrNotFound) {
		return gpu.Affected{Agent: rec.Agent, Reason: "its GPU grant could not be restored: " + err.Error()}, false
	}
	inv := alloc.Inventory()
	kept := rec
	kept.Units = nil
	var lost []string
	for _, u := range rec.Units {
		if unit, ok := inv.Unit(u.UUID); ok && !unit.MIGEnabled {
			kept.Units = append(kept.Units, u)
		} else {
			lost = append(lost, u.UUID)
		}
	}
	if len(kept.Units) > 0 {
		if err := alloc.Restore(kept); err != nil {
			s.log.Warn("agents: restoring the GPUs left of a grant", "agent", rec.Agent, "err", err)
		}
	}
	return gpu.Affected{Agent: rec.Agent, Lost: lost,
		Reason: fmt.Sprintf("%s gone since its container was created", strings.Join(lost, ", "))}, false
}

// GPUDrift flags the agents whose GPUs drifted (gpu.ServiceConfig.OnDrift:
// a GPU lost, its whole GPU put in MIG mode, the driver replaced): each
// gets an audit record, its status reason says so, and an EventAgentState
// tells subscribers. The agent keeps running, as with a policy flag:
// nothing is stopped on the operator's behalf, and its drifted grant stays
// reserved until its container is created again (a restart, a patch, an
// exit) with the GPUs admission gives it then. The grant of an agent that
// is gone is released.
func (s *Service) GPUDrift(ctx context.Context, affected []gpu.Affected) error {
	g := s.gpus
	if g == nil || len(affected) == 0 {
		return nil
	}
	type flag struct {
		row    agentRow
		reason string
	}
	var flagged []flag
	var gone []string
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		flagged, gone = flagged[:0], gone[:0]
		for _, a := range affected {
			row, err := loadAgent(ctx, tx, a.Agent)
			if errors.Is(err, ErrNotFound) {
				gone = append(gone, a.Agent)
				continue
			}
			if err != nil {
				return err
			}
			if row.Desired == DesiredDeleted {
				continue // its deletion releases the grant
			}
			reason := oneLine(a.Reason, maxReason)
			if err := s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: SystemActor, Action: "agents.gpu.drift", Target: a.Agent,
				Detail: map[string]any{"reason": reason, "lost": a.Lost}}); err != nil {
				return err
			}
			flagged = append(flagged, flag{row, reason})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording GPU drift: %w", err)
	}
	for _, id := range gone {
		g.alloc.Release(id)
	}
	for _, f := range flagged {
		g.setFlag(f.row.ID, f.reason)
		s.log.Warn("agents: GPU drift", "agent", f.row.ID, "reason", f.reason)
		s.publishState(f.row.ID, f.row.Desired, f.row.Gen, f.row.St.State, s.reasonOf(f.row.ID, f.row.St.Reason))
	}
	return nil
}

// reasonOf is the status reason shown: the stored one, and the agent's
// GPU drift while it is flagged.
func (s *Service) reasonOf(id, stored string) string {
	if s.gpus == nil {
		return stored
	}
	f := s.gpus.flag(id)
	switch {
	case f == "":
		return stored
	case stored == "":
		return "GPU drift: " + f
	}
	return stored + "; GPU drift: " + f
}

// grantOf is the agent's GPU grant as the API shows it, nil without one;
// a flagged drift is its Problem.
func (s *Service) grantOf(id string) *gpu.Grant {
	g := s.gpus
	if g == nil {
		return nil
	}
	held, ok := g.alloc.Grant(id)
	if !ok {
		return nil
	}
	if f := g.flag(id); f != "" && held.Problem == "" {
		held.Problem = f
	}
	return &held
}

// GPUSample is an EventGPU's data: one agent's GPU use at a telemetry pass
// of the GPU service, from NVML, attributed through its cgroup.
type GPUSample struct {
	At          time.Time         `json:"at"`
	MemoryBytes uint64            `json:"memoryBytes"`
	Devices     []GPUDeviceSample `json:"devices"`
}

// GPUDeviceSample is one agent's use of one GPU or MIG device.
type GPUDeviceSample struct {
	UUID        string `json:"uuid"`
	Label       string `json:"label"`
	MemoryBytes uint64 `json:"memoryBytes"`
	// SMPercent and MemoryPercent are NVML's utilisation since the
	// previous pass, -1 when NVML gave none (MIG mode, no sample).
	SMPercent     int `json:"smPercent"`
	MemoryPercent int `json:"memoryPercent"`
	Processes     int `json:"processes"`
}

// PublishGPUUsage publishes one EventGPU per agent of a GPU telemetry pass
// (gpu.ServiceConfig.OnUsage).
func (s *Service) PublishGPUUsage(u gpu.Usage) {
	at := s.now()
	for _, a := range u.Agents {
		d := GPUSample{At: at, MemoryBytes: a.MemoryBytes, Devices: make([]GPUDeviceSample, 0, len(a.Devices))}
		for _, dev := range a.Devices {
			d.Devices = append(d.Devices, GPUDeviceSample{UUID: dev.UUID, Label: dev.Label, MemoryBytes: dev.MemoryBytes,
				SMPercent: dev.SMPercent, MemoryPercent: dev.MemoryPercent, Processes: dev.Processes})
		}
		s.publish(Event{Type: EventGPU, Agent: a.Agent, Data: d})
	}
}
