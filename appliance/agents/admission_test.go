package agents

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/store"
)

// policyEnv is an env whose Service is admitted by a real policy.Service
// on the same store, wired as omertad wires them.
type policyEnv struct {
	*env
	pol *policy.Service
}

func newPolicyEnv(t testing.TB, profile config.Profile, opts ...Option) *policyEnv {
	t.Helper()
	var svc *Service
	var pol *policy.Service
	e := newEnvWith(t, []store.Schema{policy.Schema}, func(st *store.Store, c *clock) []Option {
		p, err := policy.New(context.Background(), policy.Options{Store: st, Profile: profile, Now: c.Now,
			Running: func(ctx context.Context) ([]policy.Request, error) { return svc.PolicyRequests(ctx) }})
		if err != nil {
			t.Fatal(err)
		}
		pol = p
		return []Option{WithProfile(profile), WithAdmitter(p), WithTaskLimiter(p.NewTaskLimiter()), WithCompliance(p)}
	}, opts...)
	svc = e.s
	return &policyEnv{env: e, pol: pol}
}

// putPolicy stores a policy on subject ("tenant/acme") whose spec is a
// YAML flow mapping.
func (e *policyEnv) putPolicy(t testing.TB, subject, spec string) policy.Change {
	t.Helper()
	kind, name, _ := strings.Cut(subject, "/")
	doc, err := policy.Parse(fmt.Appendf(nil, "apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: %s, name: %s}\nspec: %s\n", kind, name, spec))
	if err != nil {
		t.Fatalf("policy %s: %v", subject, err)
	}
	ch, err := e.pol.Put(context.Background(), testActor, doc, 0)
	if err != nil {
		t.Fatalf("storing policy %s: %v", subject, err)
	}
	return ch
}

func (e *policyEnv) putTenant(t testing.TB, name, quotas string) {
	t.Helper()
	doc, err := policy.ParseTenant(fmt.Appendf(nil, "apiVersion: omertaos.dev/v1\nkind: Tenant\nname: %s\nquotas: %s\n", name, quotas))
	if err != nil {
		t.Fatalf("tenant %s: %v", name, err)
	}
	if _, err := e.pol.PutTenant(context.Background(), testActor, doc); err != nil {
		t.Fatalf("storing tenant %s: %v", name, err)
	}
}

func (e *policyEnv) deployIn(tenant, id string, secrets map[string]any) (Agent, error) {
	m, err := manifest.Parse([]byte(toolYAML))
	if err != nil {
		return Agent{}, err
	}
	return e.s.Deploy(context.Background(), DeployRequest{Manifest: m, ID: id, Tenant: tenant,
		Config: map[string]any{"mode": "fast"}, Secrets: secrets, Actor: testActor})
}

// denial is the decision a refusal carries; the test fails unless err is
// one.
func denial(t testing.TB, err error) policy.Decision {
	t.Helper()
	var de *policy.DeniedError
	if !errors.Is(err, ErrDenied) || !errors.As(err, &de) {
		t.Fatalf("want a denial, got %v", err)
	}
	if de.Decision.Allow || de.Decision.Rule == "" || de.Decision.Reason == "" {
		t.Fatalf("a denial without its rule and reason: %+v", de.Decision)
	}
	return de.Decision
}

// requireNoTrace fails if anything of agent id was recorded or created.
func (e *env) requireNoTrace(t testing.TB, id string) {
	t.Helper()
	for _, q := range []string{"agents WHERE id", "agent_specs WHERE agent_id", "agent_secrets WHERE agent_id",
		"agent_status WHERE agent_id", "deploy_events WHERE agent_id"} {
		var n int
		if err := e.st.Read().QueryRow("SELECT count(*) FROM "+q+" = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s = %q: %d rows left behind", q, id, n)
		}
	}
	for _, c := range e.rt.Containers() {
		if strings.HasPrefix(c, id+"-g") {
			t.Errorf("container %s left behind", c)
		}
	}
	for _, call := range e.rt.Calls() {
		if strings.Contains(call, id+"-g") {
			t.Errorf("the runtime was asked %q", call)
		}
	}
	for _, a := range actions(e.audit(t)) {
		if strings.HasSuffix(a, " agents.deploy "+id) {
			t.Errorf("a deploy of %s was audited: %s", id, a)
		}
	}
}

// TestDeployDeniedLeavesNothing: each rule refuses the deploy with its
// numbers, the denial is recorded and audited, and no row, container or
// audit record of a deploy is left.
func TestDeployDeniedLeavesNothing(t *testing.T) {
	secret := map[string]any{"api_key": testSecret}
	cases := []struct {
		name, tenant   string
		setup          func(t *testing.T, e *policyEnv)
		secrets        map[string]any
		rule           string
		reasonHasAll   []string
		allowedWithout bool // the same deploy without its secret passes
	}{
		{name: "tenant policy max.memory", tenant: "acme",
			setup: func(t *testing.T, e *policyEnv) {
				e.putTenant(t, "acme", "{}")
				e.putPolicy(t, "tenant/acme", "{max: {memory: 32Mi}}")
			},
			secrets: secret, rule: "policy:tenant/acme@v1 max.memory", reasonHasAll: []string{"64Mi", "32Mi"}},
		{name: "tenant quota memory", tenant: "acme",
			setup:   func(t *testing.T, e *policyEnv) { e.putTenant(t, "acme", "{memory: 48Mi}") },
			secrets: secret, rule: "quota:tenant/acme memory", reasonHasAll: []string{"64Mi", "48Mi"}},
		{name: "unknown tenant", tenant: "nobody", setup: func(*testing.T, *policyEnv) {},
			secrets: secret, rule: "tenant:nobody", reasonHasAll: []string{`"nobody"`}},
		{name: "secret not granted",
			setup:   func(t *testing.T, e *policyEnv) { e.putPolicy(t, "agent/tool", "{secrets: [/other]}") },
			secrets: secret, rule: "policy:agent/tool@v1 secrets", reasonHasAll: []string{`"/api_key"`}, allowedWithout: true},
		{name: "network mode",
			setup:   func(t *testing.T, e *policyEnv) { e.putPolicy(t, "tenant/default", "{network: {modes: [gateway]}}") },
			secrets: secret, rule: "policy:tenant/default@v1 network.modes", reasonHasAll: []string{`"none"`, "(gateway)"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newPolicyEnv(t, config.ProfileUser)
			c.setup(t, e)
			e.rt.Calls()
			_, err := e.deployIn(c.tenant, "tool", c.secrets)
			d := denial(t, err)
			if !strings.Contains(d.Rule, c.rule) {
				t.Errorf("rule %q, want %q", d.Rule, c.rule)
			}
			for _, s := range c.reasonHasAll {
				if !strings.Contains(d.Reason, s) {
					t.Errorf("reason %q lacks %s", d.Reason, s)
				}
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Error("the refusal shows the secret's value")
			}
			e.requireNoTrace(t, "tool")
			recs, err := e.pol.Decisions(context.Background(), policy.DecisionQuery{Agent: "tool", DeniedOnly: true})
			if err != nil || len(recs) != 1 || recs[0].Decision.Rule != d.Rule || recs[0].Actor != testActor {
				t.Errorf("recorded decisions %+v %v", recs, err)
			}
			if !slices.Contains(actions(e.audit(t)), testActor+" policy.admission.denied agent/tool") {
				t.Errorf("the denial is not audited: %v", actions(e.audit(t)))
			}
			if c.allowedWithout {
				if _, err := e.deployIn(c.tenant, "tool", nil); err != nil {
					t.Errorf("without the secret the deploy is refused: %v", err)
				}
			}
		})
	}
}

// TestDeployAdmittedRecordsTenantAndDecision: the tenant is stored (the
// default one when none is named), the audit record of the deploy holds
// the decision, and a bad tenant name is a field error.
func TestDeployAdmittedRecordsTenantAndDecision(t *testing.T) {
	e := newPolicyEnv(t, config.ProfileUser)
	e.putTenant(t, "acme", "{agents: 5}")
	a, err := e.deployIn("acme", "a1", nil)
	if err != nil || a.Tenant != "acme" || a.Status.State != StateRunning {
		t.Fatalf("deploy into acme: %+v %v", a.Status, err)
	}
	b, err := e.deployIn("", "a2", nil)
	if err != nil || b.Tenant != policy.DefaultTenant {
		t.Fatalf("deploy without a tenant: tenant %q %v", b.Tenant, err)
	}
	var tenant string
	e.st.Read().QueryRow("SELECT tenant FROM agents WHERE id = 'a1'").Scan(&tenant)
	if tenant != "acme" {
		t.Errorf("agents.tenant = %q", tenant)
	}
	recs := e.audit(t)
	i := slices.IndexFunc(recs, func(r store.AuditRecord) bool { return r.Action == "agents.deploy" && r.Target == "a1" })
	if i < 0 {
		t.Fatal("no audit record of the deploy")
	}
	if d := string(recs[i].Detail); !strings.Contains(d, `"tenant":"acme"`) || !strings.Contains(d, `"applied":["profile:user`) {
		t.Errorf("the deploy's audit detail: %s", d)
	}
	_, err = e.deployIn("Bad_Tenant", "a3", nil)
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Problems[0].Path != "tenant" {
		t.Errorf("a bad tenant: %v", err)
	}
}

// TestQuotaOfOneAgent: the first deploy fits the quota, the second is
// refused with the numbers, another tenant is not affected, and a
// deletion frees the place.
func TestQuotaOfOneAgent(t *testing.T) {
	e := newPolicyEnv(t, config.ProfileUser)
	e.putTenant(t, "acme", "{agents: 1}")
	if _, err := e.deployIn("acme", "first", nil); err != nil {
		t.Fatalf("the first deploy: %v", err)
	}
	_, err := e.deployIn("acme", "second", nil)
	d := denial(t, err)
	if d.Rule != "quota:tenant/acme agents" || !strings.Contains(d.Reason, "2 agents against a quota of 1 agents (1 held by its other agents, 1 by this one)") {
		t.Errorf("decision %q: %q", d.Rule, d.Reason)
	}
	e.requireNoTrace(t, "second")
	if _, err := e.deployIn("", "elsewhere", nil); err != nil {
		t.Errorf("a deploy into another tenant: %v", err)
	}
	if err := e.s.Delete(context.Background(), "first", false, testActor); err != nil {
		t.Fatal(err)
	}
	if _, err := e.deployIn("acme", "second", nil); err != nil {
		t.Errorf("after the deletion: %v", err)
	}
}

// TestQuotaHoldsUnderConcurrentDeploys: of many deploys at once into a
// tenant with room for one, exactly one is admitted: the decision and the
// insert are one step.
func TestQuotaHoldsUnderConcurrentDeploys(t *testing.T) {
	e := newPolicyEnv(t, config.ProfileUser)
	e.putTenant(t, "acme", "{agents: 1}")
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = e.deployIn("acme", fmt.Sprintf("c%d", i), nil) })
	}
	wg.Wait()
	ok, denied := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrDenied):
			denied++
		default:
			t.Errorf("deploy: %v", err)
		}
	}
	var rows int
	e.st.Read().QueryRow("SELECT count(*) FROM agents WHERE tenant = 'acme'").Scan(&rows)
	if ok != 1 || denied != n-1 || rows != 1 {
		t.Errorf("%d admitted, %d denied, %d rows; want 1, %d, 1", ok, denied, rows, n-1)
	}
}

// TestPatchOverLimitIsDenied: a patch raising memory over the policy's
// maximum is refused and the agent keeps its spec, container and
// generation; one within it goes through.
func TestPatchOverLimitIsDenied(t *testing.T) {
	e := newPolicyEnv(t, config.ProfileUser)
	e.putPolicy(t, "tenant/default", "{max: {memory: 128Mi}}")
	e.deploy(t, "tool")
	e.rt.Calls()
	ctx := context.Background()
	_, err := e.s.Patch(ctx, "tool", PatchRequest{Resources: &manifest.Resources{Memory: "256Mi"}, Actor: testActor})
	d := denial(t, err)
	if d.Rule != "policy:tenant/default@v1 max.memory" || !strings.Contains(d.Reason, "256Mi") || !strings.Contains(d.Reason, "128Mi") {
		t.Errorf("decision %q: %q", d.Rule, d.Reason)
	}
	a := e.get(t, "tool")
	if a.Generation != 1 || a.PatchPending || a.Manifest.Spec.Resources.Memory != "64Mi" || a.Status.State != StateRunning {
		t.Errorf("after the refused patch: generation %d, memory %s, %s", a.Generation, a.Manifest.Spec.Resources.Memory, a.Status.State)
	}
	if got := e.rt.Containers(); !slices.Equal(got, []string{"tool-g1"}) {
		t.Errorf("containers %v", got)
	}
	if calls := e.rt.Calls(); len(calls) > 0 {
		t.Errorf("the refused patch called the runtime: %v", calls)
	}
	var specs int
	e.st.Read().QueryRow("SELECT count(*) FROM agent_specs WHERE agent_id = 'tool'").Scan(&specs)
	if specs != 1 {
		t.Errorf("%d specs recorded", specs)
	}
	if a, err := e.s.Patch(ctx, "tool", PatchRequest{Resources: &manifest.Resources{Memory: "128Mi"}, Actor: testActor}); err != nil || a.Generation != 2 {
		t.Errorf("a patch within the limit: generation %d, %v", a.Generation, err)
	}
}

// TestPatchCountsAgainstQuotaWithoutItself: a patch is judged with the
// tenant's other agents, not its own current spec counted twice.
func TestPatchCountsAgainstQuotaWithoutItself(t *testing.T) {
	e := newPolicyEnv(t, config.ProfileUser)
	e.putTenant(t, "acme", "{memory: 192Mi}")
	for _, id := range []string{"p1", "p2"} {
		if _, err := e.deployIn("acme", id, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if _, err := e.s.Patch(ctx, "p1", PatchRequest{Resources: &manifest.Resources{Memory: "128Mi"}, Actor: testActor}); err != nil {
		t.Errorf("128Mi + 64Mi fits 192Mi: %v", err)
	}
	_, err := e.s.Patch(ctx, "p2", PatchRequest{Resources: &manifest.Resources{Memory: "65Mi"}, Actor: testActor})
	if d := denial(t, err); d.Rule != "quota:tenant/acme memory" || !strings.Contains(d.Reason, "193Mi") {
		t.Errorf("decision %q: %q", d.Rule, d.Reason)
	}
}

// TestTaskRateLimit: past tasks.perMinute a task is refused with
// ErrRateLimited and when to retry; once that time has passed it runs; a
// rate of 0 is a denial, not a wait.
func TestTaskRateLimit(t *testing.T) {
	e := newPolicyEnv(t, config.ProfileUser)
	e.putPolicy(t, "agent/tool", "{tasks: {perMinute: 2}}")
	e.deploy(t, "tool")
	ctx := context.Background()
	run := func() (Task, error) {
		return e.s.RunTask(ctx, TaskRequest{Agent: "tool", Input: []byte(`{"n":1}`), Actor: testActor})
	}
	for i := range 2 {
		tk, err := run()
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		if _, err := e.s.WaitTask(ctx, tk.ID); err != nil {
			t.Fatal(err)
		}
	}
	_, err := run()
	var rl *RateLimitedError
	if !errors.Is(err, ErrRateLimited) || !errors.As(err, &rl) {
		t.Fatalf("the third task: %v", err)
	}
	if rl.Agent != "tool" || rl.Rule != "policy:agent/tool@v1 tasks.perMinute" || rl.RetryAfter < 29*time.Second || rl.RetryAfter > 30*time.Second {
		t.Errorf("refusal %+v", rl)
	}
	e.clock.Advance(rl.RetryAfter)
	tk, err := run()
	if err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	e.s.WaitTask(ctx, tk.ID)

	e.putPolicy(t, "agent/tool", "{tasks: {perMinute: 0}}")
	_, err = run()
	if d := denial(t, err); d.Rule != "policy:agent/tool@v2 tasks.perMinute" || errors.Is(err, ErrRateLimited) {
		t.Errorf("a rate of 0: %v", err)
	}
}

// TestPolicyChangeFlagsNonCompliant: a policy change that a running agent
// fails flags it (its view, the list, the audit log, an event); a patch
// back within the policy clears the flag; the reconciler's check flags and
// clears on its own when nobody told it.
func TestPolicyChangeFlagsNonCompliant(t *testing.T) {
	e := newPolicyEnv(t, config.ProfileUser)
	e.deploy(t, "tool")
	e.deploy(t, "small")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := e.s.Bus().Subscribe(ctx, Filter{Types: []EventType{EventAgentPolicy}})
	// Only tool is over: small is patched down first.
	if _, err := e.s.Patch(ctx, "small", PatchRequest{Resources: &manifest.Resources{Memory: "16Mi"}, Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	ch := e.putPolicy(t, "tenant/default", "{max: {memory: 32Mi}}")
	if len(ch.NonCompliant) != 1 || ch.NonCompliant[0].Agent != "tool" {
		t.Fatalf("the change's findings: %+v", ch.NonCompliant)
	}
	if err := e.s.FlagNonCompliant(ctx, ch.NonCompliant); err != nil {
		t.Fatal(err)
	}
	f := e.get(t, "tool").NonCompliant
	if f == nil || f.Rule != "policy:tenant/default@v1 max.memory" || !strings.Contains(f.Reason, "64Mi") || f.Since.IsZero() {
		t.Fatalf("the agent's flag: %+v", f)
	}
	if e.get(t, "small").NonCompliant != nil {
		t.Error("a compliant agent is flagged")
	}
	list, err := e.s.NonCompliant(ctx)
	if err != nil || len(list) != 1 || list[0].Agent != "tool" || list[0].Tenant != policy.DefaultTenant {
		t.Errorf("NonCompliant: %+v %v", list, err)
	}
	ev := nextEvent(t, sub)
	if d, ok := ev.Data.(PolicyData); ev.Agent != "tool" || !ok || d.Compliant || d.Rule != f.Rule {
		t.Errorf("event %+v", ev)
	}
	if !slices.Contains(actions(e.audit(t)), SystemActor+" agents.policy.non-compliant tool") {
		t.Error("the flag is not audited")
	}
	// Flagging again changes nothing: no second event.
	e.s.FlagNonCompliant(ctx, ch.NonCompliant)
	e.s.maybeCheckCompliance(ctx)

	if _, err := e.s.Patch(ctx, "tool", PatchRequest{Resources: &manifest.Resources{Memory: "32Mi"}, Actor: testActor}); err != nil {
		t.Fatalf("a patch within the policy: %v", err)
	}
	if f := e.get(t, "tool").NonCompliant; f != nil {
		t.Errorf("still flagged after the patch: %+v", f)
	}
	if ev := nextEvent(t, sub); ev.Agent != "tool" || !ev.Data.(PolicyData).Compliant {
		t.Errorf("event %+v", ev)
	}

	// Nobody tells the service: the reconciler's check sees the new Set.
	e.putPolicy(t, "tenant/default", "{max: {memory: 24Mi}}")
	e.s.maybeCheckCompliance(ctx)
	if f := e.get(t, "tool").NonCompliant; f == nil || f.Rule != "policy:tenant/default@v2 max.memory" {
		t.Errorf("not flagged by the check: %+v", f)
	}
	nextEvent(t, sub)
	if _, err := e.pol.Delete(ctx, testActor, policy.Subject{Kind: policy.SubjectTenant, Name: policy.DefaultTenant}, 0); err != nil {
		t.Fatal(err)
	}
	e.s.maybeCheckCompliance(ctx)
	if list, _ := e.s.NonCompliant(ctx); len(list) != 0 {
		t.Errorf("flags left after the policy's deletion: %+v", list)
	}
	if ev := nextEvent(t, sub); ev.Agent != "tool" || !ev.Data.(PolicyData).Compliant {
		t.Errorf("event %+v", ev)
	}
	select {
	case ev := <-sub.C:
		t.Errorf("an extra event: %+v", ev)
	default:
	}
}

func nextEvent(t testing.TB, sub *Subscription) Event {
	t.Helper()
	select {
	case ev := <-sub.C:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return Event{}
	}
}

// fixedSigner is an ImageVerifier that vouches for one digest.
type fixedSigner struct{ digest, key string }

func (f fixedSigner) ImageSigner(_ context.Context, _, digest string) (string, error) {
	if digest == f.digest {
		return f.key, nil
	}
	return "", nil
}

// TestImageSignerIsAdmittedAndKept: a policy allowing only one key's
// images refuses an unverified image and admits a verified one, and the
// deployed agent's request still carries the signer (it stays compliant
// after a patch and in the coverage).
func TestImageSignerIsAdmittedAndKept(t *testing.T) {
	const key = "7A1B2C3D4E5F6071"
	e := newPolicyEnv(t, config.ProfileUser)
	e.putPolicy(t, "tenant/default", "{images: {signers: ["+key+"], requireSigned: true}}")
	_, err := e.deployIn("", "tool", nil)
	if d := denial(t, err); !strings.Contains(d.Rule, "images") {
		t.Errorf("unsigned: %+v", d)
	}
	signed := newPolicyEnv(t, config.ProfileUser, WithImageVerifier(fixedSigner{testDigest, key}))
	signed.putPolicy(t, "tenant/default", "{images: {signers: ["+key+"], requireSigned: true}}")
	if _, err := signed.deployIn("", "tool", nil); err != nil {
		t.Fatalf("signed: %v", err)
	}
	ctx := context.Background()
	if _, err := signed.s.Patch(ctx, "tool", PatchRequest{Resources: &manifest.Resources{Memory: "32Mi"}, Actor: testActor}); err != nil {
		t.Errorf("a patch of the signed agent: %v", err)
	}
	cov, err := signed.pol.Coverage(ctx)
	if err != nil || cov.Deployed != 1 || cov.Covered != 1 || cov.Ratio != 1 {
		t.Errorf("coverage %+v %v", cov, err)
	}
}

// TestPolicyRequests: the deployed agents as admission sees them: what
// RequestFor says of the current generation, the secret keys set (not
// those declared), and not the agents being deleted.
func TestPolicyRequests(t *testing.T) {
	e := newPolicyEnv(t, config.ProfileUser)
	e.putTenant(t, "acme", "{}")
	if _, err := e.deployIn("acme", "with-secret", map[string]any{"api_key": testSecret}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.deployIn("", "without", nil); err != nil {
		t.Fatal(err)
	}
	e.deploy(t, "gone")
	ctx := context.Background()
	e.rt.SetUnavailable(true) // the deletion stays under way
	e.s.Delete(ctx, "gone", false, testActor)
	e.rt.SetUnavailable(false)
	if _, err := e.s.Patch(ctx, "without", PatchRequest{Resources: &manifest.Resources{CPU: "2"}, Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	rs, err := e.s.PolicyRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Agent != "with-secret" || rs[1].Agent != "without" {
		t.Fatalf("requests %+v", rs)
	}
	w := policy.RequestFor(policy.OpCheck, "with-secret", "acme", parseManifest(t, toolYAML), config.ProfileUser)
	w.Image.Digest = testDigest
	r := rs[0]
	if r.Op != policy.OpCheck || r.Tenant != "acme" || r.Image != w.Image || r.MemoryBytes != w.MemoryBytes ||
		r.CPUMillis != w.CPUMillis || r.PIDs != w.PIDs || r.Isolation != w.Isolation || r.Network != w.Network ||
		!slices.Equal(r.Secrets, []string{"/api_key"}) {
		t.Errorf("request %+v, want %+v", r, w)
	}
	if r := rs[1]; r.Tenant != policy.DefaultTenant || r.CPUMillis != 2000 || len(r.Secrets) != 0 {
		t.Errorf("the patched agent's request %+v", r)
	}
}

// TestNoAdmitterAdmitsAll: without an Admitter (tests, tools) the service
// deploys as before and records the tenant.
func TestNoAdmitterAdmitsAll(t *testing.T) {
	e := newEnv(t)
	a, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, toolYAML), Tenant: "acme", Actor: testActor})
	if err != nil || a.Tenant != "acme" {
		t.Fatalf("%+v %v", a, err)
	}
	if err := e.s.CheckCompliance(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestRealDeployDeniedLeavesNothing: against containerd, a refused deploy
// creates no container, snapshot or lease, and the namespace holds only
// what the admitted one made.
func TestRealDeployDeniedLeavesNothing(t *testing.T) {
	suite := newRealSuite(t)
	var svc *Service
	var pol *policy.Service
	e := suite.newEnvWith(t, []store.Schema{policy.Schema}, func(st *store.Store) []Option {
		p, err := policy.New(context.Background(), policy.Options{Store: st,
			Running: func(ctx context.Context) ([]policy.Request, error) { return svc.PolicyRequests(ctx) }})
		if err != nil {
			t.Fatal(err)
		}
		pol = p
		return []Option{WithAdmitter(p), WithCompliance(p)}
	})
	svc = e.s
	ctx := context.Background()
	doc, err := policy.Parse([]byte("apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: tenant, name: default}\nspec: {max: {memory: 32Mi}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pol.Put(ctx, testActor, doc, 0); err != nil {
		t.Fatal(err)
	}
	m := busyboxManifest(t, e.image, "container", "exec sleep 3600")
	_, err = e.s.Deploy(ctx, DeployRequest{Manifest: m, Secrets: map[string]any{"token": testSecret}, Actor: testActor})
	if d := denial(t, err); d.Rule != "policy:tenant/default@v1 max.memory" {
		t.Errorf("decision %+v", d)
	}
	if list, err := e.rt.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("containers after the denial: %+v %v", list, err)
	}
	e.requireNoOrphans(t)
	if _, err := e.s.Get(ctx, "bb"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused agent: %v", err)
	}
	doc.Spec.Max.Memory = "64Mi"
	if _, err := pol.Put(ctx, testActor, doc, 0); err != nil {
		t.Fatal(err)
	}
	a, err := e.s.Deploy(ctx, DeployRequest{Manifest: m, Secrets: map[string]any{"token": testSecret}, Actor: testActor})
	if err != nil || a.Status.State != StateRunning || e.ctrState(t, "bb-g1") != runtime.Running {
		t.Fatalf("the admitted deploy: %+v %v", a.Status, err)
	}
	if err := e.s.Delete(ctx, "bb", true, testActor); err != nil {
		t.Fatal(err)
	}
}
