package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/gateway"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/registry"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Enabling the gateway's models.
//
// The site configuration routes model names to backends; a name alone
// vouches for nothing. Before the gateway serves, each routed model is
// verified as agent images are (registry.Verifier.CheckModel): a
// configured registry must list its manifest, the manifest must match the
// lock and be valid with no placeholder integrity, and a model run here
// must fit the free memory of one GPU the GPU service found. Unsigned is
// the profile's decision (refused in enterprise, a warning in user and
// pro); every other failure, a model no registry lists included, leaves
// the model disabled in every profile: the gateway answers it 403
// model_not_enabled with the reason, and leaves it out of /v1/models.
// Each decision is logged and audited (gateway.model.enabled or
// gateway.model.refused) and served on GET /api/v1/models. The check runs
// at omertad's start, once the GPUs are known (or modelGPUWait passed):
// a manifest added to a registry is seen at the next start.

// modelGPUWait bounds how long enabling waits for the GPU service's first
// refresh (NVML answers in well under a second, or fails at once).
const modelGPUWait = time.Minute

// modelGate verifies the gateway's models and keeps the outcome for the
// API.
type modelGate struct {
	check func(ctx context.Context, name string, gpus []registry.GPU) registry.Decision
	gpus  func(ctx context.Context) []registry.GPU
	audit func(ctx context.Context, e store.AuditEntry) error
	log   *slog.Logger
	now   func() time.Time

	mu   sync.Mutex
	list apitype.ModelList
}

// newModelGate checks models with v against the GPUs of g (nil: none).
func newModelGate(v *registry.Verifier, g *gpu.Service, st *store.Store, log *slog.Logger, now func() time.Time) *modelGate {
	return &modelGate{
		check: v.CheckModel,
		gpus:  func(ctx context.Context) []registry.GPU { return gpusOf(ctx, g, log) },
		audit: st.Audit,
		log:   log.With("service", "models"),
		now:   now,
		list:  apitype.ModelList{Models: []apitype.ModelStatus{}},
	}
}

// gpusOf is what the VRAM check is given: every unit admission hands out
// (whole GPUs not in MIG mode, and MIG devices), with its free memory as
// of the last telemetry pass.
func gpusOf(ctx context.Context, g *gpu.Service, log *slog.Logger) []registry.GPU {
	if g == nil {
		return nil
	}
	select {
	case <-g.Ready():
	case <-ctx.Done():
		return nil
	case <-time.After(modelGPUWait):
		log.Warn("the GPU service has not refreshed yet; models are checked against no GPU", "waited", modelGPUWait.String())
		return nil
	}
	var out []registry.GPU
	for _, u := range g.Allocator().Inventory().Units {
		if !u.MIGEnabled {
			out = append(out, registry.GPU{Index: u.Index, Name: u.Label(), TotalBytes: u.TotalBytes, FreeBytes: u.FreeBytes})
		}
	}
	return out
}

// Models is GET /api/v1/models's answer.
func (m *modelGate) Models() apitype.ModelList {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.list
	l.Models = slices.Clone(l.Models)
	return l
}

// enable verifies each model of reg and returns reg with the refused ones
// disabled.
func (m *modelGate) enable(ctx context.Context, reg *gateway.Registry) *gateway.Registry {
	gpus := m.gpus(ctx)
	reasons := map[string]string{}
	list := apitype.ModelList{Gateway: true, Models: []apitype.ModelStatus{}}
	for _, name := range reg.Models() {
		d := m.check(ctx, name, gpus)
		st := modelStatus(name, backendsOf(reg.Model(name)), d)
		list.Models = append(list.Models, st)
		action := "gateway.model.enabled"
		if d.Allowed {
			m.log.Info("model enabled", "model", terminal.Escape(name), "code", st.Code, "signed", st.Signed, "key_id", st.KeyID,
				"warnings", terminal.EscapeAll(st.Warnings))
		} else {
			action = "gateway.model.refused"
			reasons[name] = d.Reason
			m.log.Warn("model not enabled; the gateway refuses it", "model", terminal.Escape(name), "code", st.Code,
				"reason", terminal.Escape(d.Reason))
		}
		detail := map[string]any{"code": st.Code, "reason": st.Reason, "signed": st.Signed, "registry": st.Registry,
			"key_id": st.KeyID, "warnings": st.Warnings, "profile": string(d.Profile)}
		if err := m.audit(ctx, store.AuditEntry{Actor: "omertad", Action: action, Target: "model/" + name, Detail: detail}); err != nil {
			m.log.Warn("auditing a model's verification", "model", terminal.Escape(name), "err", terminal.Escape(err.Error()))
		}
	}
	at := m.now()
	list.CheckedAt = &at
	m.mu.Lock()
	m.list = list
	m.mu.Unlock()
	return reg.WithDisabled(reasons)
}

// backendsOf names the backends of m's route, in order.
func backendsOf(m *gateway.Model) []string {
	out := make([]string, 0, len(m.Route))
	for _, t := range m.Route {
		out = append(out, t.Backend.Name)
	}
	return out
}

func modelStatus(name string, backends []string, d registry.Decision) apitype.ModelStatus {
	st := apitype.ModelStatus{Name: name, Backends: backends, Enabled: d.Allowed, Code: string(d.Code), Reason: d.Reason,
		Signed: d.Signed, Registry: d.Registry, KeyID: d.KeyID, Warnings: slices.Clone(d.Warnings)}
	if mf := d.Model; mf != nil && mf.Model != nil {
		st.Provider, st.Version = mf.Model.Provider, mf.Version
		if mf.Model.Resources.HasVRAM {
			v := mf.Model.Resources.VRAMGB
			st.VRAMGB = &v
		}
	}
	return st
}
