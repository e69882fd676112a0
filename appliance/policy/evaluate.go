package policy

import (
	"fmt"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// Op is what is being admitted.
type Op string

// The operations. OpCheck judges an agent that already runs (coverage,
// the effect of a policy change): the month's token and cost use is not
// held against it, since it was admitted before.
const (
	OpDeploy Op = "deploy"
	OpPatch  Op = "patch"
	OpCheck  Op = "check"
)

// Request is what one agent needs, as its manifest and the registry say,
// and what its tenant already uses.
type Request struct {
	Op       Op     `json:"op"`
	Agent    string `json:"agent"`
	Tenant   string `json:"tenant"` // "" is DefaultTenant
	Category string `json:"category,omitempty"`

	Image     ImageNeed          `json:"image"`
	Isolation manifest.Isolation `json:"isolation"` // as it will run (the profile's default filled in)
	Network   string             `json:"network"`
	Egress    []string           `json:"egress,omitempty"` // names, "*.name", addresses, CIDRs

	CPUMillis   int64 `json:"cpuMillis"`
	MemoryBytes int64 `json:"memoryBytes"`
	PIDs        int64 `json:"pids"`
	GPUs        int64 `json:"gpus"`
	VRAMBytes   int64 `json:"vramBytes"`

	Models []ModelNeed `json:"models,omitempty"`
	// WantsCloud is the AgentTemplate's privacy.allow_cloud.
	WantsCloud bool     `json:"wantsCloud,omitempty"`
	Secrets    []string `json:"secrets,omitempty"` // secret configuration keys it will receive

	// Declared budgets (the AgentTemplate's budget.usd_max); 0 is none.
	TokensPerMonth    int64 `json:"tokensPerMonth,omitempty"`
	USDMicrosPerMonth int64 `json:"usdMicrosPerMonth,omitempty"`

	// Usage is the tenant's totals without this agent.
	Usage Usage `json:"usage"`
}

// ImageNeed is the agent's image; Signer is the minisign key id of a
// verified signature, "" when there is none.
type ImageNeed struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	Signer string `json:"signer,omitempty"`
}

// ModelNeed is a model the agent will call; Cloud: the registry marks it
// remote.
type ModelNeed struct {
	Name  string `json:"name"`
	Cloud bool   `json:"cloud,omitempty"`
}

// Usage is what a tenant's agents hold (the sums over its deployed agents
// other than the one being judged), and its model use this month.
type Usage struct {
	Agents         int64 `json:"agents"`
	CPUMillis      int64 `json:"cpuMillis"`
	MemoryBytes    int64 `json:"memoryBytes"`
	GPUs           int64 `json:"gpus"`
	VRAMBytes      int64 `json:"vramBytes"`
	TokensMonth    int64 `json:"tokensMonth"`
	USDMicrosMonth int64 `json:"usdMicrosMonth"`
}

// Decision is the outcome of an admission. Rule names what decided
// ("policy:agent/foo@v3 max.memory", "quota:tenant/default agents");
// Reason says why, with numbers. Denials lists every rule that refused,
// Rule and Reason being the first of them.
type Decision struct {
	Allow    bool     `json:"allow"`
	Rule     string   `json:"rule,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Denials  []Denial `json:"denials,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Applied  []string `json:"applied"`
	Explicit bool     `json:"explicit"`
}

// Denial is one rule that refused.
type Denial struct {
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

// evaluation collects what one Evaluate finds.
type evaluation struct {
	e   *Effective
	req *Request
	d   Decision
}

func (ev *evaluation) deny(rule, format string, a ...any) {
	ev.d.Denials = append(ev.d.Denials, Denial{Rule: rule, Reason: fmt.Sprintf(format, a...)})
}

func (ev *evaluation) warn(format string, a ...any) {
	ev.d.Warnings = append(ev.d.Warnings, fmt.Sprintf(format, a...))
}

// Evaluate judges req against set. It is pure and reads nothing but its
// arguments. Rules are checked in a fixed order (tenant, isolation,
// network, GPU, resources, images, models, secrets, budgets, quotas) and
// every refusal is kept.
func Evaluate(set *Set, req Request) Decision {
	if req.Tenant == "" {
		req.Tenant = DefaultTenant
	}
	if req.Op == "" {
		req.Op = OpDeploy
	}
	e := set.Effective(req.Agent, req.Category, req.Tenant)
	ev := &evaluation{e: e, req: &req}
	ev.d.Applied, ev.d.Explicit = e.Applied, e.Explicit
	ev.d.Warnings = append(ev.d.Warnings, e.Warnings...)
	q, ok := set.tenants[req.Tenant]
	if !ok {
		ev.deny("tenant:"+labelOrQuote(req.Tenant), "the tenant %s does not exist", quote(req.Tenant))
	}
	ev.isolation()
	ev.network()
	ev.gpu()
	ev.resources()
	ev.images()
	ev.models()
	ev.secrets()
	ev.budgets()
	if ok {
		ev.quotas(q)
	}
	if len(ev.d.Denials) == 0 {
		ev.d.Allow = true
	} else {
		ev.d.Rule, ev.d.Reason = ev.d.Denials[0].Rule, ev.d.Denials[0].Reason
	}
	return ev.d
}

func (ev *evaluation) isolation() {
	min := ev.e.Isolation
	if rank(ev.req.Isolation) < rank(min.Value) {
		ev.deny(min.Origin+" isolation", "the agent would run under %s; %s requires %s or stronger",
			isolationName(ev.req.Isolation), min.Origin, isolationName(min.Value))
	}
}

func isolationName(i manifest.Isolation) string {
	switch i {
	case manifest.IsolationContainer:
		return "container (runc)"
	case manifest.IsolationSandbox:
		return "sandbox (gVisor)"
	}
	return quote(string(i))
}

func (ev *evaluation) network() {
	mode := ev.req.Network
	if mode == "" {
		mode = manifest.NetworkNone
	}
	for _, a := range ev.e.Modes {
		if !matchList(a.Items, mode) {
			ev.deny(a.Origin+" network.modes", "network mode %s is not among those allowed (%s)", quote(mode), strings.Join(a.Items, ", "))
		}
	}
	if len(ev.req.Egress) > 0 && mode == manifest.NetworkNone {
		ev.warn("the agent lists egress destinations but its network mode is none: it reaches nothing")
	}
	for _, dest := range ev.req.Egress {
		for _, a := range ev.e.Egress {
			if !a.Items.Allows(dest) {
				ev.deny(a.Origin+" network.egress", "egress to %s is not allowed (%d destinations are)", quote(dest), len(a.Items.entries()))
				break
			}
		}
	}
}

func (ev *evaluation) gpu() {
	r, e := ev.req, ev.e
	if (r.GPUs > 0 || r.VRAMBytes > 0) && !e.GPUAllowed.Value {
		ev.deny(e.GPUAllowed.Origin+" gpu.allowed", "the agent asks for %d GPUs and %s of VRAM; GPUs are not allowed", r.GPUs, fmtBytes(r.VRAMBytes))
	}
	ev.bound(e.VRAM, "gpu.vram", "VRAM", r.VRAMBytes, fmtBytes)
}

func (ev *evaluation) resources() {
	r, e := ev.req, ev.e
	ev.bound(e.CPU, "max.cpu", "CPU", r.CPUMillis, fmtCPU)
	ev.bound(e.Memory, "max.memory", "memory", r.MemoryBytes, fmtBytes)
	ev.bound(e.PIDs, "max.pids", "processes", r.PIDs, fmtInt)
	ev.bound(e.GPUs, "max.gpus", "GPUs", r.GPUs, fmtInt)
}

// bound refuses need above l.
func (ev *evaluation) bound(l Limit, field, what string, need int64, format func(int64) string) {
	if l.Set && need > l.Value {
		ev.deny(l.Origin+" "+field, "the agent asks for %[1]s %[2]s; at most %[3]s %[2]s is allowed", format(need), what, format(l.Value))
	}
}

func (ev *evaluation) images() {
	img, e := ev.req.Image, ev.e
	signer := img.Signer
	if signer == "" {
		signer = "unsigned"
	}
	for _, a := range e.Images {
		if !a.Items.Allows(img.Digest, img.Signer) {
			ev.deny(a.Origin+" images", "the image %s (digest %s, %s) is neither among the %d digests nor signed by one of the %d keys allowed",
				quote(img.Ref), orNone(img.Digest), signer, len(a.Items.Digests), len(a.Items.Signers))
		}
	}
	if img.Signer == "" {
		if e.RequireSigned.Value {
			ev.deny(e.RequireSigned.Origin+" images.requireSigned", "the image %s has no verified signature; only signed images are allowed", quote(img.Ref))
		} else {
			ev.warn("the image %s has no verified signature (%s allows unsigned images)", quote(img.Ref), e.RequireSigned.Origin)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (ev *evaluation) models() {
	e := ev.e
	for _, m := range ev.req.Models {
		if ok, rule, reason := e.ModelAllowed(m.Name, m.Cloud); !ok {
			ev.deny(rule, "%s", reason)
		}
	}
	if ev.req.WantsCloud && !e.AllowCloud.Value {
		ev.warn("the agent's template allows cloud models, but %s does not: the gateway will refuse them", e.AllowCloud.Origin)
	}
}

func (ev *evaluation) secrets() {
	for _, s := range ev.req.Secrets {
		for _, a := range ev.e.Secrets {
			if !matchList(a.Items, s) {
				ev.deny(a.Origin+" secrets", "the agent would receive the secret %s, which is not among the %d allowed", quote(s), len(a.Items))
				break
			}
		}
	}
}

func (ev *evaluation) budgets() {
	r, e := ev.req, ev.e
	if e.Tokens.Set && r.TokensPerMonth > e.Tokens.Value {
		ev.deny(e.Tokens.Origin+" budget.tokensPerMonth", "the agent declares a budget of %d tokens a month; at most %d is allowed", r.TokensPerMonth, e.Tokens.Value)
	}
	if e.USDMicros.Set && r.USDMicrosPerMonth > e.USDMicros.Value {
		ev.deny(e.USDMicros.Origin+" budget.usdPerMonth", "the agent declares a budget of %s a month; at most %s is allowed", fmtUSD(r.USDMicrosPerMonth), fmtUSD(e.USDMicros.Value))
	}
}
