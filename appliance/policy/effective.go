package policy

import (
	"math"
	"net/netip"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
)

// Limit is a bound and the layer that set it; Set false means unbounded.
type Limit struct {
	Value  int64  `json:"value"`
	Set    bool   `json:"set"`
	Origin string `json:"origin,omitempty"`
}

// Flag is a yes/no rule and the layer that set it.
type Flag struct {
	Value  bool   `json:"value"`
	Origin string `json:"origin"`
}

// Level is the weakest isolation allowed and the layer that set it.
type Level struct {
	Value  manifest.Isolation `json:"value"`
	Origin string             `json:"origin"`
}

// Allow is one layer's allow-list. An effective rule holds one Allow per
// layer that constrains it (the tenant's envelope, then the agent's own),
// and a value passes only when every one of them allows it.
type Allow[T any] struct {
	Items  T      `json:"items"`
	Origin string `json:"origin"`
}

// ImageRule allows an image by digest or by the key that signed it.
type ImageRule struct {
	Digests []string `json:"digests"`
	Signers []string `json:"signers"`
}

// Allows reports whether an image with this digest and verified signer
// (empty when unsigned) may run.
func (r ImageRule) Allows(digest, signer string) bool {
	for _, d := range r.Digests {
		if d == digest && digest != "" {
			return true
		}
	}
	for _, s := range r.Signers {
		if s == signer && signer != "" {
			return true
		}
	}
	return false
}

// Effective is the policy one agent runs under: every rule with the layer
// that decided it. The gateway reads Models, AllowCloud, Tokens and
// USDMicros from it, the network code Modes and Egress, the task path
// TasksPerMinute.
type Effective struct {
	Profile config.Profile `json:"profile"`
	Tenant  string         `json:"tenant"`
	// Applied are the layers, least specific first ("profile:user",
	// "policy:tenant/default@v2", ...).
	Applied []string `json:"applied"`
	// Explicit is set when a stored policy (not only the profile)
	// applies.
	Explicit bool `json:"explicit"`

	Isolation      Level              `json:"isolation"`
	Modes          []Allow[[]string]  `json:"modes"`
	Egress         []Allow[*Egress]   `json:"egress"`
	GPUAllowed     Flag               `json:"gpuAllowed"`
	VRAM           Limit              `json:"vram"`
	CPU            Limit              `json:"cpu"`
	Memory         Limit              `json:"memory"`
	PIDs           Limit              `json:"pids"`
	GPUs           Limit              `json:"gpus"`
	Images         []Allow[ImageRule] `json:"images"`
	RequireSigned  Flag               `json:"requireSigned"`
	Models         []Allow[[]string]  `json:"models"`
	AllowCloud     Flag               `json:"allowCloud"`
	Secrets        []Allow[[]string]  `json:"secrets"`
	TasksPerMinute Limit              `json:"tasksPerMinute"`
	Tokens         Limit              `json:"tokensPerMonth"`
	USDMicros      Limit              `json:"usdMicrosPerMonth"`

	// Warnings name what an agent's policy asked for beyond its tenant's
	// envelope: it does not apply.
	Warnings []string `json:"warnings,omitempty"`
}

// EgressAllowsName reports whether the agent may resolve name: every
// layer's egress list must allow it.
func (e *Effective) EgressAllowsName(name string) bool {
	for _, a := range e.Egress {
		if !a.Items.AllowsName(name) {
			return false
		}
	}
	return len(e.Egress) > 0
}

// ModelAllowed says whether the agent may call model (cloud: the registry
// marks it remote) and, when not, the rule and the reason.
func (e *Effective) ModelAllowed(model string, cloud bool) (ok bool, rule, reason string) {
	for _, a := range e.Models {
		if !matchList(a.Items, model) {
			return false, a.Origin + " models.allowed", "the model " + quote(model) + " is not among the models allowed"
		}
	}
	if cloud && !e.AllowCloud.Value {
		return false, e.AllowCloud.Origin + " models.allowCloud", "the model " + quote(model) + " is a cloud model and cloud models are not allowed"
	}
	return true, "", ""
}

// layer is one compiled policy (or the profile's defaults): nil or !ok
// for what it leaves to the layers below.
type layer struct {
	origin        string
	isolation     manifest.Isolation
	modes         []string
	egress        *Egress
	gpuAllowed    *bool
	vram          opt
	cpu           opt
	memory        opt
	pids          opt
	gpus          opt
	images        *ImageRule
	requireSigned *bool
	models        []string
	allowCloud    *bool
	secrets       []string
	perMinute     opt
	tokens        opt
	usdMicros     opt
}

type opt struct {
	v  int64
	ok bool
}

func some(v int64) opt { return opt{v: v, ok: true} }

// compile turns a checked Spec into a layer.
func compile(origin string, s Spec) *layer {
	l := &layer{origin: origin, isolation: s.Isolation, secrets: s.Secrets}
	if n := s.Network; n != nil {
		l.modes = n.Modes
		if n.Egress != nil {
			l.egress = compileEgress(n.Egress)
		}
	}
	if g := s.GPU; g != nil {
		l.gpuAllowed, l.vram = g.Allowed, bytesOpt(g.VRAM)
	}
	if m := s.Max; m != nil {
		l.cpu, l.memory, l.pids, l.gpus = cpuOpt(m.CPU), bytesOpt(m.Memory), ptrOpt(m.PIDs), ptrOpt(m.GPUs)
	}
	if im := s.Images; im != nil {
		if im.Digests != nil || im.Signers != nil {
			l.images = &ImageRule{Digests: im.Digests, Signers: im.Signers}
		}
		l.requireSigned = im.RequireSigned
	}
	if m := s.Models; m != nil {
		l.models, l.allowCloud = m.Allowed, m.AllowCloud
	}
	if t := s.Tasks; t != nil {
		l.perMinute = ptrOpt(t.PerMinute)
	}
	if b := s.Budget; b != nil {
		l.tokens, l.usdMicros = ptrOpt(b.TokensPerMonth), usdOpt(b.USDPerMonth)
	}
	return l
}

func ptrOpt(p *int64) opt {
	if p == nil {
		return opt{}
	}
	return some(*p)
}

func cpuOpt(q manifest.Quantity) opt {
	if q == "" {
		return opt{}
	}
	n, _ := manifest.ParseCPU(string(q))
	return some(n)
}

func bytesOpt(q manifest.Quantity) opt {
	if q == "" {
		return opt{}
	}
	n, _ := manifest.ParseBytes(string(q))
	return some(n)
}

func usdOpt(f *float64) opt {
	if f == nil {
		return opt{}
	}
	return some(USDMicros(*f))
}

// USDMicros is a dollar amount in millionths, the unit every comparison
// of money uses (floats would make a quota's boundary fuzzy).
func USDMicros(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

// rank orders isolation levels, weakest first.
func rank(i manifest.Isolation) int {
	if i == manifest.IsolationSandbox {
		return 2
	}
	if i == manifest.IsolationContainer {
		return 1
	}
	return 0
}

// matchList reports whether item is allowed by list: an entry "*", the
// item itself, or an entry ending in "*" that the item starts with.
func matchList(list []string, item string) bool {
	for _, e := range list {
		if e == item || e == "*" || strings.HasSuffix(e, "*") && strings.HasPrefix(item, e[:len(e)-1]) {
			return true
		}
	}
	return false
}

// coversList reports whether list allows everything pattern p allows.
func coversList(list []string, p string) bool {
	if !strings.HasSuffix(p, "*") {
		return matchList(list, p)
	}
	for _, e := range list {
		if e == "*" || e == p || strings.HasSuffix(e, "*") && strings.HasPrefix(p[:len(p)-1], e[:len(e)-1]) {
			return true
		}
	}
	return false
}

// EgressPrefixes are the address prefixes every layer allows (the
// intersection of the layers' lists), for the agent's nftables set.
func (e *Effective) EgressPrefixes() []netip.Prefix {
	if len(e.Egress) == 0 {
		return nil
	}
	out := append([]netip.Prefix(nil), e.Egress[0].Items.Prefixes...)
	for _, a := range e.Egress[1:] {
		var next []netip.Prefix
		for _, p := range out {
			for _, q := range a.Items.Prefixes {
				switch {
				case q.Bits() <= p.Bits() && q.Contains(p.Addr()):
					next = append(next, p)
				case p.Bits() < q.Bits() && p.Contains(q.Addr()):
					next = append(next, q)
				}
			}
		}
		out = next
	}
	return out
}
