package policy

import (
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
)

type admitCase struct {
	name     string
	profile  config.Profile // "" is user
	policies []string       // "kind/name={rules}"
	tenants  []string       // "name={quotas}"
	mod      func(*Request)
	allow    bool
	rule     string // the deciding rule; "" when allowed
	reason   string // a part of the reason
	warning  string // a part of some warning
}

func (c admitCase) set(t *testing.T) *Set {
	t.Helper()
	var ps []Policy
	for _, p := range c.policies {
		sub, spec, _ := strings.Cut(p, "=")
		ps = append(ps, pol(t, sub, spec))
	}
	var ts []Tenant
	for _, s := range c.tenants {
		name, q, _ := strings.Cut(s, "=")
		ts = append(ts, ten(t, name, q))
	}
	profile := c.profile
	if profile == "" {
		profile = config.ProfileUser
	}
	return NewSet(profile, ps, ts)
}

func runAdmit(t *testing.T, cases []admitCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := baseReq()
			if c.mod != nil {
				c.mod(&req)
			}
			d := Evaluate(c.set(t), req)
			if d.Allow != c.allow || d.Rule != c.rule {
				t.Fatalf("got allow=%v rule=%q reason=%q; want allow=%v rule=%q", d.Allow, d.Rule, d.Reason, c.allow, c.rule)
			}
			if !strings.Contains(d.Reason, c.reason) {
				t.Errorf("reason %q does not say %q", d.Reason, c.reason)
			}
			if c.warning != "" && !strings.Contains(strings.Join(d.Warnings, "\n"), c.warning) {
				t.Errorf("warnings %q do not say %q", d.Warnings, c.warning)
			}
			if !c.allow && (len(d.Denials) == 0 || d.Denials[0].Rule != d.Rule) {
				t.Errorf("denials %v do not start with the rule", d.Denials)
			}
		})
	}
}

func TestEvaluateBaseline(t *testing.T) {
	for _, p := range config.Profiles {
		d := Evaluate(NewSet(p, nil, nil), baseReq())
		if !d.Allow || d.Explicit || len(d.Applied) != 1 || d.Applied[0] != "profile:"+string(p) {
			t.Errorf("%s: %+v", p, d)
		}
	}
}

// TestEvaluateRules: each rule allows at its bound and refuses past it,
// naming the layer and the field.
func TestEvaluateRules(t *testing.T) {
	runAdmit(t, []admitCase{
		{name: "isolation profile", profile: "enterprise", mod: func(r *Request) { r.Isolation = manifest.IsolationContainer },
			rule: "profile:enterprise isolation", reason: "container (runc); profile:enterprise requires sandbox (gVisor)"},
		{name: "isolation user container", mod: func(r *Request) { r.Isolation = manifest.IsolationContainer }, allow: true},
		{name: "isolation agent", policies: []string{"agent/a1={isolation: sandbox}"}, mod: func(r *Request) { r.Isolation = manifest.IsolationContainer },
			rule: "policy:agent/a1@v1 isolation"},

		{name: "mode allowed", policies: []string{"tenant/default={network: {modes: [none]}}"}, mod: func(r *Request) { r.Network = "none" }, allow: true},
		{name: "mode refused", policies: []string{"tenant/default={network: {modes: [none]}}"},
			rule: "policy:tenant/default@v1 network.modes", reason: `"gateway" is not among those allowed (none)`},
		{name: "empty mode is none", policies: []string{"tenant/default={network: {modes: [none]}}"}, mod: func(r *Request) { r.Network = "" }, allow: true},

		{name: "egress none by default", mod: func(r *Request) { r.Egress = []string{"api.example.com"} },
			rule: "profile:user network.egress", reason: `egress to "api.example.com" is not allowed (0 destinations are)`},
		{name: "egress wildcard", policies: []string{`tenant/default={network: {egress: ["*.example.com"]}}`},
			mod: func(r *Request) { r.Egress = []string{"api.example.com", "a.b.example.com", "*.x.example.com"} }, allow: true},
		{name: "egress wildcard not apex", policies: []string{`tenant/default={network: {egress: ["*.example.com"]}}`},
			mod: func(r *Request) { r.Egress = []string{"example.com"} }, rule: "policy:tenant/default@v1 network.egress"},
		{name: "egress wildcard not lookalike", policies: []string{`tenant/default={network: {egress: ["*.example.com"]}}`},
			mod: func(r *Request) { r.Egress = []string{"evilexample.com"} }, rule: "policy:tenant/default@v1 network.egress"},
		{name: "egress cidr inside", policies: []string{`tenant/default={network: {egress: [10.0.0.0/8]}}`},
			mod: func(r *Request) { r.Egress = []string{"10.1.0.0/16", "10.9.9.9"} }, allow: true},
		{name: "egress cidr wider", policies: []string{`tenant/default={network: {egress: [10.0.0.0/8]}}`},
			mod: func(r *Request) { r.Egress = []string{"10.0.0.0/7"} }, rule: "policy:tenant/default@v1 network.egress"},
		{name: "egress with mode none warns", policies: []string{`tenant/default={network: {egress: [10.0.0.0/8]}}`},
			mod: func(r *Request) { r.Network, r.Egress = "none", []string{"10.0.0.1"} }, allow: true, warning: "network mode is none"},

		{name: "gpu refused", profile: "enterprise", mod: func(r *Request) { r.GPUs = 1 },
			rule: "profile:enterprise gpu.allowed", reason: "1 GPUs and 0 of VRAM; GPUs are not allowed"},
		{name: "gpu granted by tenant", profile: "enterprise", policies: []string{"tenant/default={gpu: {allowed: true}}"},
			mod: func(r *Request) { r.GPUs = 1 }, allow: true},
		{name: "vram at budget", policies: []string{"tenant/default={gpu: {vram: 24Gi}}"}, mod: func(r *Request) { r.GPUs, r.VRAMBytes = 1, 24*gi }, allow: true},
		{name: "vram over budget", policies: []string{"tenant/default={gpu: {vram: 24Gi}}"}, mod: func(r *Request) { r.GPUs, r.VRAMBytes = 1, 24*gi+1 },
			rule: "policy:tenant/default@v1 gpu.vram", reason: "25769803777 VRAM; at most 24Gi VRAM is allowed"},

		{name: "cpu at max", profile: "pro", mod: func(r *Request) { r.CPUMillis = 8000 }, allow: true},
		{name: "cpu over max", profile: "pro", mod: func(r *Request) { r.CPUMillis = 8001 }, rule: "profile:pro max.cpu", reason: "8001m CPU; at most 8 CPU is allowed"},
		{name: "memory at max", policies: []string{"agent/a1={max: {memory: 1Gi}}"}, mod: func(r *Request) { r.MemoryBytes = gi }, allow: true},
		{name: "memory over max", policies: []string{"agent/a1={max: {memory: 1Gi}}"}, mod: func(r *Request) { r.MemoryBytes = gi + 1 },
			rule: "policy:agent/a1@v1 max.memory", reason: "at most 1Gi"},
		{name: "pids at max", mod: func(r *Request) { r.PIDs = 8192 }, allow: true},
		{name: "pids over max", mod: func(r *Request) { r.PIDs = 8193 }, rule: "profile:user max.pids", reason: "8193 processes; at most 8192 processes is allowed"},
		{name: "gpus at max", profile: "pro", mod: func(r *Request) { r.GPUs = 2 }, allow: true},
		{name: "gpus over max", profile: "pro", mod: func(r *Request) { r.GPUs = 3 }, rule: "profile:pro max.gpus"},

		{name: "image by digest", policies: []string{"tenant/default={images: {digests: [\"" + digestA + "\"]}}"}, mod: func(r *Request) { r.Image.Signer = "" }, allow: true,
			warning: "no verified signature"},
		{name: "image by signer", policies: []string{"tenant/default={images: {signers: [\"" + signerA + "\"]}}"}, mod: func(r *Request) { r.Image.Digest = digestB }, allow: true},
		{name: "image neither", policies: []string{"tenant/default={images: {digests: [\"" + digestA + "\"], signers: [\"" + signerA + "\"]}}"},
			mod:  func(r *Request) { r.Image.Digest, r.Image.Signer = digestB, signerB },
			rule: "policy:tenant/default@v1 images", reason: "neither among the 1 digests nor signed by one of the 1 keys"},
		{name: "unsigned refused", profile: "enterprise", mod: func(r *Request) { r.Image.Signer = "" },
			rule: "profile:enterprise images.requireSigned", reason: "no verified signature"},
		{name: "unsigned warned", mod: func(r *Request) { r.Image.Signer = "" }, allow: true, warning: "profile:user allows unsigned images"},

		{name: "model allowed", policies: []string{`agent/a1={models: {allowed: ["llama3*"]}}`}, mod: func(r *Request) { r.Models = []ModelNeed{{Name: "llama3.2-3b"}} }, allow: true},
		{name: "model refused", policies: []string{`agent/a1={models: {allowed: ["llama3*"]}}`}, mod: func(r *Request) { r.Models = []ModelNeed{{Name: "gpt-4.5", Cloud: true}} },
			rule: "policy:agent/a1@v1 models.allowed", reason: `"gpt-4.5" is not among the models allowed`},
		{name: "cloud refused", profile: "enterprise", mod: func(r *Request) { r.Models = []ModelNeed{{Name: "gpt-4.5", Cloud: true}} },
			rule: "profile:enterprise models.allowCloud", reason: "cloud model"},
		{name: "cloud allowed", mod: func(r *Request) { r.Models = []ModelNeed{{Name: "gpt-4.5", Cloud: true}} }, allow: true},
		{name: "cloud wish warned", profile: "enterprise", mod: func(r *Request) { r.WantsCloud = true }, allow: true, warning: "gateway will refuse them"},

		{name: "secret allowed", policies: []string{"tenant/default={secrets: [/crm_api_key]}"}, mod: func(r *Request) { r.Secrets = []string{"/crm_api_key"} }, allow: true},
		{name: "secret refused", policies: []string{"tenant/default={secrets: [/crm_api_key]}"}, mod: func(r *Request) { r.Secrets = []string{"/crm_api_key", "/db_password"} },
			rule: "policy:tenant/default@v1 secrets", reason: `"/db_password", which is not among the 1 allowed`},

		{name: "tokens at budget", profile: "enterprise", mod: func(r *Request) { r.TokensPerMonth = 10_000_000 }, allow: true},
		{name: "tokens over budget", profile: "enterprise", mod: func(r *Request) { r.TokensPerMonth = 10_000_001 },
			rule: "profile:enterprise budget.tokensPerMonth", reason: "10000001 tokens a month; at most 10000000"},
		{name: "usd at budget", profile: "pro", mod: func(r *Request) { r.USDMicrosPerMonth = USDMicros(200) }, allow: true},
		{name: "usd over budget", profile: "pro", mod: func(r *Request) { r.USDMicrosPerMonth = USDMicros(200) + 1 },
			rule: "profile:pro budget.usdPerMonth", reason: "$200.000001 a month; at most $200.00"},

		{name: "no such tenant", mod: func(r *Request) { r.Tenant = "ghost" }, rule: "tenant:ghost", reason: `"ghost" does not exist`},
		{name: "hostile tenant quoted", mod: func(r *Request) { r.Tenant = "x\x1b[2J y" }, rule: `tenant:"x\x1b[2J y"`, reason: `"x\x1b[2J y" does not exist`},
		{name: "hostile image quoted", profile: "enterprise", mod: func(r *Request) { r.Image.Ref, r.Image.Signer = "evil\r\x1b[32mOK", "" },
			rule: "profile:enterprise images.requireSigned", reason: `the image "evil\r\x1b[32mOK" has no`},
	})
}

// TestEvaluatePrecedence: profile ← category ← tenant replace; the
// agent's policy only narrows.
func TestEvaluatePrecedence(t *testing.T) {
	runAdmit(t, []admitCase{
		{name: "category widens profile", profile: "enterprise", policies: []string{"category/research={isolation: container}"},
			mod: func(r *Request) { r.Isolation = manifest.IsolationContainer }, allow: true},
		{name: "category name ignores case", profile: "enterprise", policies: []string{"category/research={isolation: container}"},
			mod: func(r *Request) { r.Isolation, r.Category = manifest.IsolationContainer, " RESEARCH " }, allow: true},
		{name: "other category not applied", profile: "enterprise", policies: []string{"category/coding={isolation: container}"},
			mod: func(r *Request) { r.Isolation = manifest.IsolationContainer }, rule: "profile:enterprise isolation"},
		{name: "tenant replaces category", policies: []string{"category/research={max: {memory: 1Gi}}", "tenant/default={max: {memory: 2Gi}}"},
			mod: func(r *Request) { r.MemoryBytes = 2 * gi }, allow: true},
		{name: "tenant bound decides", policies: []string{"category/research={max: {memory: 1Gi}}", "tenant/default={max: {memory: 2Gi}}"},
			mod: func(r *Request) { r.MemoryBytes = 2*gi + 1 }, rule: "policy:tenant/default@v1 max.memory"},
		{name: "category applies under tenant", policies: []string{"category/research={max: {memory: 1Gi}}", "tenant/default={max: {cpu: 2}}"},
			mod: func(r *Request) { r.MemoryBytes = gi + 1 }, rule: "policy:category/research@v1 max.memory"},
		{name: "agent cannot raise a bound", policies: []string{"tenant/default={max: {memory: 1Gi}}", "agent/a1={max: {memory: 4Gi}}"},
			mod: func(r *Request) { r.MemoryBytes = 2 * gi }, rule: "policy:tenant/default@v1 max.memory",
			warning: "policy:agent/a1@v1 max.memory (4Gi) is wider than policy:tenant/default@v1 (1Gi)"},
		{name: "agent lowers a bound", policies: []string{"tenant/default={max: {memory: 4Gi}}", "agent/a1={max: {memory: 1Gi}}"},
			mod: func(r *Request) { r.MemoryBytes = 2 * gi }, rule: "policy:agent/a1@v1 max.memory"},
		{name: "agent bounds what the profile leaves open", policies: []string{"agent/a1={max: {cpu: 500m}}"},
			mod: func(r *Request) { r.CPUMillis = 501 }, rule: "policy:agent/a1@v1 max.cpu"},
		{name: "agent cannot turn GPUs on", profile: "enterprise", policies: []string{"agent/a1={gpu: {allowed: true}}"},
			mod: func(r *Request) { r.GPUs = 1 }, rule: "profile:enterprise gpu.allowed", warning: "gpu.allowed (true) is wider"},
		{name: "agent turns GPUs off", policies: []string{"agent/a1={gpu: {allowed: false}}"},
			mod: func(r *Request) { r.GPUs = 1 }, rule: "policy:agent/a1@v1 gpu.allowed"},
		{name: "agent cannot weaken isolation", profile: "enterprise", policies: []string{"agent/a1={isolation: container}"},
			mod: func(r *Request) { r.Isolation = manifest.IsolationContainer }, rule: "profile:enterprise isolation", warning: "isolation (container) is wider"},
		{name: "agent cannot lift signing", profile: "enterprise", policies: []string{"agent/a1={images: {requireSigned: false}}"},
			mod: func(r *Request) { r.Image.Signer = "" }, rule: "profile:enterprise images.requireSigned", warning: "images.requireSigned (false) is wider"},
		{name: "agent cannot allow cloud", profile: "enterprise", policies: []string{"agent/a1={models: {allowCloud: true}}"},
			mod: func(r *Request) { r.Models = []ModelNeed{{Name: "gpt-4.5", Cloud: true}} }, rule: "profile:enterprise models.allowCloud"},
		{name: "agent egress beyond tenant", policies: []string{`tenant/default={network: {egress: ["*.example.com"]}}`, "agent/a1={network: {egress: [evil.org]}}"},
			mod: func(r *Request) { r.Egress = []string{"evil.org"} }, rule: "policy:tenant/default@v1 network.egress",
			warning: `policy:agent/a1@v1 network.egress lists "evil.org", which policy:tenant/default@v1 does not allow`},
		{name: "agent egress narrows", policies: []string{`tenant/default={network: {egress: ["*.example.com"]}}`, "agent/a1={network: {egress: [api.example.com]}}"},
			mod: func(r *Request) { r.Egress = []string{"www.example.com"} }, rule: "policy:agent/a1@v1 network.egress"},
		{name: "agent egress inside", policies: []string{`tenant/default={network: {egress: ["*.example.com"]}}`, "agent/a1={network: {egress: [api.example.com]}}"},
			mod: func(r *Request) { r.Egress = []string{"api.example.com"} }, allow: true},
		{name: "agent model list beyond tenant", policies: []string{`tenant/default={models: {allowed: ["llama*"]}}`, `agent/a1={models: {allowed: ["*"]}}`},
			mod: func(r *Request) { r.Models = []ModelNeed{{Name: "qwen"}} }, rule: "policy:tenant/default@v1 models.allowed", warning: `lists "*"`},
		{name: "agent secrets narrow", policies: []string{"agent/a1={secrets: []}"},
			mod: func(r *Request) { r.Secrets = []string{"/k"} }, rule: "policy:agent/a1@v1 secrets"},
		{name: "other agent's policy not applied", policies: []string{"agent/a2={max: {memory: 4Mi}}"}, allow: true},
		{name: "other tenant's policy not applied", policies: []string{"tenant/team={max: {memory: 4Mi}}"}, allow: true},
		{name: "every refusal kept", profile: "enterprise", mod: func(r *Request) { r.Isolation, r.GPUs, r.Image.Signer = manifest.IsolationContainer, 1, "" },
			rule: "profile:enterprise isolation"},
	})
	d := Evaluate(NewSet("enterprise", nil, nil), func() Request {
		r := baseReq()
		r.Isolation, r.GPUs, r.Image.Signer = manifest.IsolationContainer, 1, ""
		return r
	}())
	var rules []string
	for _, x := range d.Denials {
		rules = append(rules, x.Rule)
	}
	if got := strings.Join(rules, ","); got != "profile:enterprise isolation,profile:enterprise gpu.allowed,profile:enterprise images.requireSigned" {
		t.Errorf("denials: %s", got)
	}
}

// TestEvaluateQuotas: each quota at the boundary, one under, at, one over.
func TestEvaluateQuotas(t *testing.T) {
	q := []string{"team={agents: 3, cpu: 4, memory: 4Gi, gpus: 2, vram: 48Gi, tokensPerMonth: 1000, usdPerMonth: 10}"}
	in := func(mod func(*Request)) func(*Request) {
		return func(r *Request) { r.Tenant = "team"; mod(r) }
	}
	runAdmit(t, []admitCase{
		{name: "agents under", tenants: q, mod: in(func(r *Request) { r.Usage.Agents = 1 }), allow: true},
		{name: "agents at", tenants: q, mod: in(func(r *Request) { r.Usage.Agents = 2 }), allow: true},
		{name: "agents over", tenants: q, mod: in(func(r *Request) { r.Usage.Agents = 3 }), rule: "quota:tenant/team agents",
			reason: `the tenant "team" would hold 4 agents against a quota of 3 agents (3 held by its other agents, 1 by this one)`},
		{name: "cpu at", tenants: q, mod: in(func(r *Request) { r.Usage.CPUMillis = 3000 }), allow: true},
		{name: "cpu over", tenants: q, mod: in(func(r *Request) { r.Usage.CPUMillis = 3001 }), rule: "quota:tenant/team cpu", reason: "4001m CPU against a quota of 4 CPU"},
		{name: "memory under", tenants: q, mod: in(func(r *Request) { r.Usage.MemoryBytes = 4*gi - 512*mi - 1 }), allow: true},
		{name: "memory at", tenants: q, mod: in(func(r *Request) { r.Usage.MemoryBytes = 4*gi - 512*mi }), allow: true},
		{name: "memory over", tenants: q, mod: in(func(r *Request) { r.Usage.MemoryBytes = 4*gi - 512*mi + 1 }), rule: "quota:tenant/team memory"},
		{name: "gpus at", tenants: q, mod: in(func(r *Request) { r.GPUs, r.Usage.GPUs = 1, 1 }), allow: true},
		{name: "gpus over", tenants: q, mod: in(func(r *Request) { r.GPUs, r.Usage.GPUs = 1, 2 }), rule: "quota:tenant/team gpus"},
		{name: "vram at", tenants: q, mod: in(func(r *Request) { r.VRAMBytes, r.Usage.VRAMBytes = 24*gi, 24*gi }), allow: true},
		{name: "vram over", tenants: q, mod: in(func(r *Request) { r.VRAMBytes, r.Usage.VRAMBytes = 24*gi, 24*gi+1 }), rule: "quota:tenant/team vram"},
		{name: "tokens used under", tenants: q, mod: in(func(r *Request) { r.Usage.TokensMonth = 999 }), allow: true},
		{name: "tokens used up", tenants: q, mod: in(func(r *Request) { r.Usage.TokensMonth = 1000 }), rule: "quota:tenant/team tokensPerMonth",
			reason: `has used 1000 tokens of its 1000 tokens this month`},
		{name: "tokens used up, patch", tenants: q, mod: in(func(r *Request) { r.Op, r.Usage.TokensMonth = OpPatch, 5000 }), allow: true},
		{name: "tokens declared at", tenants: q, mod: in(func(r *Request) { r.TokensPerMonth = 1000 }), allow: true},
		{name: "tokens declared over", tenants: q, mod: in(func(r *Request) { r.TokensPerMonth = 1001 }), rule: "quota:tenant/team tokensPerMonth"},
		{name: "usd used under", tenants: q, mod: in(func(r *Request) { r.Usage.USDMicrosMonth = USDMicros(10) - 1 }), allow: true},
		{name: "usd used up", tenants: q, mod: in(func(r *Request) { r.Usage.USDMicrosMonth = USDMicros(10) }), rule: "quota:tenant/team usdPerMonth",
			reason: "has used $10.00 of its $10.00 this month"},
		{name: "usd declared over", tenants: q, mod: in(func(r *Request) { r.USDMicrosPerMonth = USDMicros(10) + 1 }), rule: "quota:tenant/team usdPerMonth"},
		{name: "unbounded default tenant", tenants: q, mod: func(r *Request) { r.Usage.Agents = 1 << 40 }, allow: true},
		{name: "quota of zero", tenants: []string{"frozen={agents: 0}"}, mod: func(r *Request) { r.Tenant = "frozen" }, rule: "quota:tenant/frozen agents"},
	})
}

// TestSumUsage: the tenant's agents without the one judged.
func TestSumUsage(t *testing.T) {
	a, b, c := baseReq(), baseReq(), baseReq()
	b.Agent, b.GPUs, b.VRAMBytes = "b", 1, 8*gi
	c.Agent, c.Tenant = "c", "other"
	a.Tenant = ""
	u := SumUsage([]Request{a, b, c}, DefaultTenant, "a1")
	if u.Agents != 1 || u.GPUs != 1 || u.VRAMBytes != 8*gi || u.CPUMillis != 1000 || u.MemoryBytes != 512*mi {
		t.Errorf("usage %s", u)
	}
	if u := SumUsage([]Request{a, b, c}, "", ""); u.Agents != 2 {
		t.Errorf("usage with a1: %s", u)
	}
}

// TestEffectiveForServices: what the gateway and the network code read.
func TestEffectiveForServices(t *testing.T) {
	set := NewSet("user", []Policy{
		pol(t, "tenant/default", `{network: {egress: ["*.example.com", 10.0.0.0/8, 192.168.1.0/24]}, models: {allowed: ["llama*", "gpt-4.5"], allowCloud: false}}`),
		pol(t, "agent/a1", `{network: {egress: [api.example.com, 10.1.0.0/16, 172.16.0.0/12]}, models: {allowed: ["llama3*"]}}`),
	}, nil)
	e := set.Effective("a1", "", "")
	for name, want := range map[string]bool{"api.example.com": true, "API.Example.com.": true, "www.example.com": false, "evil.org": false} {
		if got := e.EgressAllowsName(name); got != want {
			t.Errorf("EgressAllowsName(%q) = %v", name, got)
		}
	}
	var ps []string
	for _, p := range e.EgressPrefixes() {
		ps = append(ps, p.String())
	}
	if got := strings.Join(ps, ","); got != "10.1.0.0/16" {
		t.Errorf("prefixes %s", got)
	}
	if ok, _, _ := e.ModelAllowed("llama3.2-3b", false); !ok {
		t.Error("llama3.2-3b refused")
	}
	if ok, rule, _ := e.ModelAllowed("llama2", false); ok || rule != "policy:agent/a1@v1 models.allowed" {
		t.Errorf("llama2: %v %s", ok, rule)
	}
	if ok, rule, _ := set.Effective("a2", "", "").ModelAllowed("gpt-4.5", true); ok || rule != "policy:tenant/default@v1 models.allowCloud" {
		t.Errorf("gpt-4.5 for a2: %v %s", ok, rule)
	}
	if !e.Explicit || strings.Join(e.Applied, " ") != "profile:user policy:tenant/default@v1 policy:agent/a1@v1" {
		t.Errorf("applied %v", e.Applied)
	}
	if len(e.Warnings) != 1 || !strings.Contains(e.Warnings[0], `"172.16.0.0/12"`) {
		t.Errorf("warnings %q", e.Warnings)
	}
}
