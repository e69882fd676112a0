package policy

import (
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
)

// RequestFor builds the request of a checked manifest m deployed as agent
// id in tenant under profile p: its category, image, isolation (the
// profile's default when it names none), network mode, resources, the
// secret keys its configuration schema declares, and the template's cloud
// wish and budget. What the manifest cannot say is the caller's to fill:
// Image.Signer (the registry's verification), Models and VRAMBytes (the
// model registry), Egress, and Secrets narrowed to the keys actually set.
func RequestFor(op Op, id, tenant string, m *manifest.Manifest, p config.Profile) Request {
	s := &m.Spec
	r := Request{
		Op: op, Agent: id, Tenant: tenantOf(tenant), Category: m.Metadata.Category,
		Isolation: s.EffectiveIsolation(p), Network: s.Network.Mode,
		CPUMillis: s.Resources.CPUMillis(), MemoryBytes: s.Resources.MemoryBytes(),
		PIDs: int64(s.Resources.PIDs), GPUs: int64(s.Resources.GPUs),
	}
	if s.Image != nil {
		r.Image = ImageNeed{Ref: s.Image.Ref, Digest: s.Image.Digest}
	}
	if s.ConfigSchema != nil {
		if cs, ps := manifest.CompileConfigSchema(s.ConfigSchema, "spec.configSchema"); len(ps) == 0 {
			r.Secrets = cs.SecretPaths()
		}
	}
	if h := s.PolicyHints; h != nil {
		if h.AllowCloud != nil {
			r.WantsCloud = *h.AllowCloud
		}
		if h.BudgetUSDMax != nil {
			r.USDMicrosPerMonth = USDMicros(*h.BudgetUSDMax)
		}
	}
	return r
}
