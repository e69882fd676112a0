package policy

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
)

// Set is an immutable snapshot of the profile, every live policy and every
// tenant: what Evaluate judges against. The Service builds a new Set after
// each change and swaps it in, so that Evaluate takes no lock and reads no
// database.
type Set struct {
	profile    config.Profile
	base       *layer
	layers     map[Subject]*layer
	policies   map[Subject]Policy
	tenants    map[string]*quotas
	tenantDocs map[string]Tenant
}

// quotas is a tenant's compiled Quotas.
type quotas struct {
	name                                               string
	agents, cpu, memory, gpus, vram, tokens, usdMicros opt
}

func compileQuotas(t Tenant) *quotas {
	q := t.Quotas
	return &quotas{name: t.Name, agents: ptrOpt(q.Agents), cpu: cpuOpt(q.CPU), memory: bytesOpt(q.Memory),
		gpus: ptrOpt(q.GPUs), vram: bytesOpt(q.VRAM), tokens: ptrOpt(q.TokensPerMonth), usdMicros: usdOpt(q.USDPerMonth)}
}

// NewSet builds a Set from checked policies and tenants. The default
// tenant exists in every Set, unbounded unless tenants gives it quotas.
func NewSet(profile config.Profile, policies []Policy, tenants []Tenant) *Set {
	s := &Set{
		profile: profile, base: compile("profile:"+string(profile), ProfileDefaults(profile)),
		layers: map[Subject]*layer{}, policies: map[Subject]Policy{},
		tenants: map[string]*quotas{DefaultTenant: {name: DefaultTenant}}, tenantDocs: map[string]Tenant{DefaultTenant: {Name: DefaultTenant}},
	}
	for _, p := range policies {
		s.policies[p.Subject] = p
		s.layers[p.Subject] = compile(p.Origin(), p.Spec)
	}
	for _, t := range tenants {
		s.tenants[t.Name] = compileQuotas(t)
		s.tenantDocs[t.Name] = t
	}
	return s
}

// Profile is the profile whose defaults are the bottom layer.
func (s *Set) Profile() config.Profile { return s.profile }

func (s *Set) clone() *Set {
	c := *s
	c.layers, c.policies = maps.Clone(s.layers), maps.Clone(s.policies)
	c.tenants, c.tenantDocs = maps.Clone(s.tenants), maps.Clone(s.tenantDocs)
	return &c
}

// WithPolicy is s with p in place of the policy for p's subject.
func (s *Set) WithPolicy(p Policy) *Set {
	c := s.clone()
	c.policies[p.Subject] = p
	c.layers[p.Subject] = compile(p.Origin(), p.Spec)
	return c
}

// WithoutPolicy is s with no policy for sub.
func (s *Set) WithoutPolicy(sub Subject) *Set {
	c := s.clone()
	delete(c.policies, sub)
	delete(c.layers, sub)
	return c
}

// WithTenant is s with t in place of the tenant of t's name.
func (s *Set) WithTenant(t Tenant) *Set {
	c := s.clone()
	c.tenants[t.Name] = compileQuotas(t)
	c.tenantDocs[t.Name] = t
	return c
}

// Policy returns the live policy for sub.
func (s *Set) Policy(sub Subject) (Policy, bool) {
	p, ok := s.policies[sub]
	return p, ok
}

// Effective is the policy an agent runs under: the profile's defaults,
// then the policy of its category, then its tenant's (each replacing the
// rules it sets), then the agent's own, which only narrows (see doc.go).
func (s *Set) Effective(agent, category, tenant string) *Effective {
	if tenant == "" {
		tenant = DefaultTenant
	}
	e := &Effective{Profile: s.profile, Tenant: tenant}
	e.apply(s.base, false)
	if c := normCategory(category); c != "" {
		e.applyStored(s.layers[Subject{SubjectCategory, c}], false)
	}
	e.applyStored(s.layers[Subject{SubjectTenant, tenant}], false)
	if agent != "" {
		e.applyStored(s.layers[Subject{SubjectAgent, agent}], true)
	}
	return e
}

func (e *Effective) applyStored(l *layer, narrow bool) {
	if l != nil {
		e.Explicit = true
		e.apply(l, narrow)
	}
}

// apply lays l over e. With narrow, l may only tighten each rule: a wider
// value is left out and named in e.Warnings.
func (e *Effective) apply(l *layer, narrow bool) {
	e.Applied = append(e.Applied, l.origin)
	w := &e.Warnings
	if l.isolation != "" {
		switch {
		case !narrow || rank(l.isolation) > rank(e.Isolation.Value):
			e.Isolation = Level{Value: l.isolation, Origin: l.origin}
		case rank(l.isolation) < rank(e.Isolation.Value):
			*w = append(*w, wider(l.origin, "isolation", string(l.isolation), e.Isolation.Origin, string(e.Isolation.Value)))
		}
	}
	allowList(&e.Modes, l.modes, l.origin, "network.modes", narrow, w)
	e.egress(l, narrow)
	allowFlag(&e.GPUAllowed, l.gpuAllowed, l.origin, "gpu.allowed", narrow, w)
	limit(&e.VRAM, l.vram, l.origin, "gpu.vram", fmtBytes, narrow, w)
	limit(&e.CPU, l.cpu, l.origin, "max.cpu", fmtCPU, narrow, w)
	limit(&e.Memory, l.memory, l.origin, "max.memory", fmtBytes, narrow, w)
	limit(&e.PIDs, l.pids, l.origin, "max.pids", fmtInt, narrow, w)
	limit(&e.GPUs, l.gpus, l.origin, "max.gpus", fmtInt, narrow, w)
	if l.images != nil {
		a := Allow[ImageRule]{Items: *l.images, Origin: l.origin}
		if narrow {
			e.Images = append(e.Images, a)
		} else {
			e.Images = []Allow[ImageRule]{a}
		}
	}
	if v := l.requireSigned; v != nil {
		switch {
		case !narrow || *v && !e.RequireSigned.Value:
			e.RequireSigned = Flag{Value: *v, Origin: l.origin}
		case !*v && e.RequireSigned.Value:
			*w = append(*w, wider(l.origin, "images.requireSigned", "false", e.RequireSigned.Origin, "true"))
		}
	}
	allowList(&e.Models, l.models, l.origin, "models.allowed", narrow, w)
	allowFlag(&e.AllowCloud, l.allowCloud, l.origin, "models.allowCloud", narrow, w)
	allowList(&e.Secrets, l.secrets, l.origin, "secrets", narrow, w)
	limit(&e.TasksPerMinute, l.perMinute, l.origin, "tasks.perMinute", fmtInt, narrow, w)
	limit(&e.Tokens, l.tokens, l.origin, "budget.tokensPerMonth", fmtInt, narrow, w)
	limit(&e.USDMicros, l.usdMicros, l.origin, "budget.usdPerMonth", fmtUSD, narrow, w)
}

func (e *Effective) egress(l *layer, narrow bool) {
	if l.egress == nil {
		return
	}
	a := Allow[*Egress]{Items: l.egress, Origin: l.origin}
	if !narrow {
		e.Egress = []Allow[*Egress]{a}
		return
	}
	for _, d := range l.egress.entries() {
		for _, env := range e.Egress {
			if !env.Items.Allows(d) {
				e.Warnings = append(e.Warnings, fmt.Sprintf("%s network.egress lists %s, which %s does not allow: a policy may only narrow its tenant's, so it does not apply",
					l.origin, quote(d), env.Origin))
				break
			}
		}
	}
	e.Egress = append(e.Egress, a)
}

// entries are e's destinations written back as text.
func (e *Egress) entries() []string {
	out := append([]string(nil), e.Names...)
	for _, s := range e.Suffixes {
		out = append(out, "*"+s)
	}
	for _, p := range e.Prefixes {
		out = append(out, p.String())
	}
	return out
}

func allowList(dst *[]Allow[[]string], items []string, origin, field string, narrow bool, w *[]string) {
	if items == nil {
		return
	}
	a := Allow[[]string]{Items: items, Origin: origin}
	if !narrow {
		*dst = []Allow[[]string]{a}
		return
	}
	for _, it := range items {
		for _, env := range *dst {
			if !coversList(env.Items, it) {
				*w = append(*w, fmt.Sprintf("%s %s lists %s, which %s does not allow: a policy may only narrow its tenant's, so it does not apply",
					origin, field, quote(it), env.Origin))
				break
			}
		}
	}
	*dst = append(*dst, a)
}

// allowFlag lays a permission over dst: narrowing may only turn it off.
func allowFlag(dst *Flag, v *bool, origin, field string, narrow bool, w *[]string) {
	switch {
	case v == nil:
	case !narrow || !*v && dst.Value:
		*dst = Flag{Value: *v, Origin: origin}
	case *v && !dst.Value:
		*w = append(*w, wider(origin, field, "true", dst.Origin, "false"))
	}
}

// limit lays a bound over dst: narrowing may only lower it.
func limit(dst *Limit, o opt, origin, field string, format func(int64) string, narrow bool, w *[]string) {
	switch {
	case !o.ok:
	case !narrow || !dst.Set || o.v < dst.Value:
		*dst = Limit{Value: o.v, Set: true, Origin: origin}
	case o.v > dst.Value:
		*w = append(*w, wider(origin, field, format(o.v), dst.Origin, format(dst.Value)))
	}
}

func wider(origin, field, v, envOrigin, envV string) string {
	return fmt.Sprintf("%s %s (%s) is wider than %s (%s): a policy may only narrow its tenant's, so %s applies",
		origin, field, v, envOrigin, envV, envV)
}

func fmtInt(n int64) string   { return strconv.FormatInt(n, 10) }
func fmtCPU(n int64) string   { return string(manifest.FormatCPU(n)) }
func fmtBytes(n int64) string { return string(manifest.FormatBytes(n)) }

// fmtUSD writes millionths of a dollar as dollars, cents always shown.
func fmtUSD(n int64) string {
	s := strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64)
	if i := strings.IndexByte(s, '.'); i < 0 {
		s += ".00"
	} else if len(s)-i == 2 {
		s += "0"
	}
	return "$" + s
}

// normCategory is a category as policies name it: categories compare
// without regard to case or surrounding space.
func normCategory(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
