package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/store"
)

const toolPolicy = `apiVersion: omertaos.dev/v1
kind: Policy
subject: {kind: agent, name: tool}
description: the tool's own limits
spec:
  max: {memory: 128Mi}
`

const acmeTenant = `apiVersion: omertaos.dev/v1
kind: Tenant
name: acme
quotas: {agents: 1, memory: 1Gi}
`

// policyEnv is the API with auth, the agents on a fake runtime admitted
// by a real policy service, and the policy routes.
type policyEnv struct {
	*authEnv
	pol *policy.Service
	svc *agents.Service
	cat *catalog.Service
	c   *apiclient.Client // root on the socket: the system principal
}

func newPolicyEnv(t *testing.T) *policyEnv {
	t.Helper()
	pe := &policyEnv{}
	pe.authEnv = newAuthEnv(t, func(_ *auth.Options, d *Deps) {
		pe.pol, pe.svc, pe.cat = policyAgents(t, d.Store)
		d.Agents = AgentsDeps{Catalog: pe.cat, Service: pe.svc, Events: pe.svc.Bus(), Logs: pe.svc}
		d.Policy = pe.pol
	})
	pe.c = apiclient.New(pe.sock, apiclient.WithTimeout(10*time.Second))
	t.Cleanup(pe.c.Close)
	return pe
}

// policyAgents is the agents service on a fake runtime whose deploys and
// patches go through a real policy service on the same store.
func policyAgents(t *testing.T, st *store.Store) (*policy.Service, *agents.Service, *catalog.Service) {
	t.Helper()
	dir := t.TempDir()
	var svc *agents.Service
	pol, err := policy.New(t.Context(), policy.Options{Store: st, Running: func(ctx context.Context) ([]policy.Request, error) {
		return svc.PolicyRequests(ctx)
	}})
	if err != nil {
		t.Fatal(err)
	}
	rt := agents.NewFakeRuntime(filepath.Join(dir, "logs"), nil)
	rt.AddImage(runtime.Image{Name: testImage, Digest: testDigest, Manifest: testDigest})
	svc, err = agents.New(st, rt, agents.WithStateDir(filepath.Join(dir, "agents")), agents.WithStopGrace(0),
		agents.WithInterval(20*time.Millisecond), agents.WithTelemetryInterval(20*time.Millisecond),
		agents.WithAdmitter(pol), agents.WithTaskLimiter(pol.NewTaskLimiter()), agents.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	catDir := filepath.Join(dir, "catalog")
	os.Mkdir(catDir, 0o755)
	os.WriteFile(filepath.Join(catDir, "tool.yaml"), []byte(toolEntry), 0o644)
	return pol, svc, catalog.NewService(st, catDir)
}

// deployIn deploys the tool entry as id in tenant, through the service
// (the API deploys into the default tenant).
func (pe *policyEnv) deployIn(t *testing.T, id, tenant string) {
	t.Helper()
	it, err := pe.cat.Get(t.Context(), "tool")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pe.svc.Deploy(t.Context(), agents.DeployRequest{Manifest: it.Manifest, ID: id, Tenant: tenant, Actor: "user:test"}); err != nil {
		t.Fatalf("deploying %s in %s: %v", id, tenant, err)
	}
}

func TestPolicyPutGetHistoryRollback(t *testing.T) {
	pe := newPolicyEnv(t)
	ctx := t.Context()
	ch, err := pe.c.PutPolicy(ctx, "agent", "tool", toolPolicy, 0)
	if err != nil || ch.Action != "create" || ch.Policy.Version != 1 {
		t.Fatalf("PutPolicy = %+v, %v", ch, err)
	}
	second := strings.Replace(toolPolicy, "128Mi", "256Mi", 1)
	if ch, err = pe.c.PutPolicy(ctx, "agent", "tool", second, 1); err != nil || ch.Action != "update" || ch.Policy.Version != 2 {
		t.Fatalf("PutPolicy v2 = %+v, %v", ch, err)
	}
	// A stale If-Match is a conflict and changes nothing.
	if _, err := pe.c.PutPolicy(ctx, "agent", "tool", toolPolicy, 1); statusOf(err) != http.StatusConflict {
		t.Fatalf("stale PutPolicy = %v, want 409", err)
	}
	p, err := pe.c.Policy(ctx, "agent", "tool")
	if err != nil || p.Version != 2 || !strings.Contains(string(p.Spec), `"256Mi"`) {
		t.Fatalf("Policy = %+v, %v", p, err)
	}
	// The document it answers is accepted back as it is: unchanged.
	if ch, err = pe.c.PutPolicy(ctx, "agent", "tool", p.Document, 2); err != nil || !ch.Unchanged || ch.Policy.Version != 2 {
		t.Fatalf("PutPolicy of its own document = %+v, %v", ch, err)
	}
	if ch, err = pe.c.RollbackPolicy(ctx, "agent", "tool", 1, 2); err != nil || ch.Action != "rollback" || ch.Policy.Version != 3 ||
		!strings.Contains(string(ch.Policy.Spec), `"128Mi"`) {
		t.Fatalf("RollbackPolicy = %+v, %v", ch, err)
	}
	h, err := pe.c.PolicyHistory(ctx, "agent", "tool", 0, 0)
	if err != nil || len(h.Versions) != 3 || h.Versions[0].Version != 3 || h.Versions[0].FromVersion != 1 || h.Versions[2].Action != "create" {
		t.Fatalf("PolicyHistory = %+v, %v", h, err)
	}
	list, err := pe.c.Policies(ctx)
	if err != nil || len(list.Policies) != 1 || list.Profile != "user" {
		t.Fatalf("Policies = %+v, %v", list, err)
	}
	// Every change is in the audit log, by its actor.
	if r, ok := pe.lastAudit("policy.rollback", "agent/tool"); !ok || !strings.HasPrefix(r.Actor, "system:root") {
		t.Errorf("audit of the rollback = %+v, %v", r, ok)
	}
}

func TestPolicyRefusalsNameTheField(t *testing.T) {
	pe := newPolicyEnv(t)
	ctx := t.Context()
	cases := []struct {
		name, kind, subject, doc string
		path                     string
	}{
		{"empty document", "agent", "tool", "", "document"},
		{"too large", "agent", "tool", strings.Repeat("#", apitype.MaxPolicyDocument+1), "document"},
		{"another subject", "agent", "other", toolPolicy, "document.subject"},
		{"bad rule", "agent", "tool", strings.Replace(toolPolicy, "128Mi", "lots", 1), "spec.max.memory"},
		{"unknown field", "agent", "tool", toolPolicy + "extra: 1\n", "extra"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pe.c.PutPolicy(ctx, tc.kind, tc.subject, tc.doc, 0)
			var ie *apiclient.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("PutPolicy = %v, want an InvalidError", err)
			}
			if ie.Problems[0].Path != tc.path {
				t.Errorf("problems = %+v, want one about %s", ie.Problems, tc.path)
			}
		})
	}
	if _, err := pe.c.Policy(ctx, "vm", "tool"); statusOf(err) != http.StatusBadRequest {
		t.Errorf("kind vm = %v, want 400", err)
	}
	if _, err := pe.c.Policy(ctx, "agent", "nobody"); statusOf(err) != http.StatusNotFound {
		t.Errorf("no policy = %v, want 404", err)
	}
	// If-Match and the body disagreeing, or a header that is no version.
	a := pe.root.do("PUT", "/api/v1/policies/agent/tool", map[string]string{"If-Match": "abc"}, apitype.PolicyPut{Document: toolPolicy})
	if a.status != http.StatusBadRequest || !strings.Contains(string(a.body), "If-Match") {
		t.Errorf("If-Match abc = %s", a)
	}
	a = pe.root.do("PUT", "/api/v1/policies/agent/tool", map[string]string{"If-Match": `"2"`}, apitype.PolicyPut{Document: toolPolicy, IfVersion: 3})
	if a.status != http.StatusBadRequest || !strings.Contains(string(a.body), "if_version") {
		t.Errorf("If-Match 2 with if_version 3 = %s", a)
	}
	// Strict decoding: an unknown field of the request is refused.
	a = pe.root.do("PUT", "/api/v1/policies/agent/tool", nil, `{"document":"x","force":true}`)
	if a.status != http.StatusBadRequest {
		t.Errorf("unknown request field = %s", a)
	}
}

// TestDeployDeniedIsAForbiddenWithTheDecision: a deploy the policy refuses
// is a 403 whose body has the rule and the numbers, which the client
// returns as a *DeniedError, and the denial is listed in the decisions.
func TestDeployDeniedIsAForbiddenWithTheDecision(t *testing.T) {
	pe := newPolicyEnv(t)
	ctx := t.Context()
	tight := "apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: tenant, name: default}\nspec:\n  max: {memory: 32Mi}\n"
	if _, err := pe.c.PutPolicy(ctx, "tenant", "default", tight, 0); err != nil {
		t.Fatal(err)
	}
	_, err := pe.c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "tool"})
	var de *apiclient.DeniedError
	if !errors.As(err, &de) || statusOf(err) != http.StatusForbidden {
		t.Fatalf("DeployAgent = %v, want a 403 DeniedError", err)
	}
	if !strings.Contains(de.Decision.Rule, "max.memory") || !strings.Contains(de.Decision.Reason, "64Mi") || de.Decision.Allow {
		t.Errorf("decision = %+v, want max.memory with the numbers", de.Decision)
	}
	ds, err := pe.c.Decisions(ctx, apiclient.DecisionFilter{Denied: true})
	if err != nil || len(ds.Decisions) != 1 || ds.Decisions[0].Agent != "tool" || ds.Decisions[0].Decision.Rule != de.Decision.Rule {
		t.Fatalf("Decisions = %+v, %v", ds, err)
	}
	// Allowed once the policy is rolled back to nothing tighter.
	if _, err := pe.c.PutPolicy(ctx, "tenant", "default", strings.Replace(tight, "32Mi", "1Gi", 1), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pe.c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "tool"}); err != nil {
		t.Fatalf("DeployAgent under 1Gi = %v", err)
	}
	all, err := pe.c.Decisions(ctx, apiclient.DecisionFilter{Agent: "tool"})
	if err != nil || len(all.Decisions) != 2 || !all.Decisions[0].Decision.Allow {
		t.Fatalf("all decisions, newest first = %+v, %v", all, err)
	}
	if _, err := pe.c.Decisions(ctx, apiclient.DecisionFilter{Limit: 1}); err != nil {
		t.Fatal(err)
	}
	if a := pe.root.do("GET", "/api/v1/decisions?limit=0", nil, nil); a.status != http.StatusBadRequest {
		t.Errorf("limit=0 = %s", a)
	}
}

func TestCoverageAndManifestsValidated(t *testing.T) {
	pe := newPolicyEnv(t)
	ctx := t.Context()
	cov, err := pe.c.Coverage(ctx)
	if err != nil || cov.Ratio != nil || cov.Deployed != 0 || cov.Target != 0.9 || cov.Manifests == nil || cov.Manifests.Ratio != nil {
		t.Fatalf("Coverage with no agent = %+v, %v", cov, err)
	}
	pe.deployIn(t, "tool", "")
	pe.deployIn(t, "tool2", "")
	// Under the profile's defaults only: deployed, passing, not covered.
	cov, err = pe.c.Coverage(ctx)
	if err != nil || cov.Deployed != 2 || cov.Passing != 2 || cov.Covered != 0 || cov.Ratio == nil || *cov.Ratio != 0 {
		t.Fatalf("Coverage under the defaults = %+v, %v", cov, err)
	}
	if m := cov.Manifests; m.Deployed != 2 || m.Validated != 2 || m.Ratio == nil || *m.Ratio != 1 {
		t.Errorf("manifests = %+v, want 2 of 2", m)
	}
	if _, err := pe.c.PutPolicy(ctx, "agent", "tool", toolPolicy, 0); err != nil {
		t.Fatal(err)
	}
	cov, err = pe.c.Coverage(ctx)
	if err != nil || cov.Covered != 1 || *cov.Ratio != 0.5 || len(cov.NonCompliant) != 0 {
		t.Fatalf("Coverage with one policy = %+v, %v", cov, err)
	}
	// A change that makes a running agent fail is flagged at once and
	// listed as non-compliant.
	ch, err := pe.c.PutPolicy(ctx, "agent", "tool", strings.Replace(toolPolicy, "128Mi", "32Mi", 1), 0)
	if err != nil || len(ch.NonCompliant) != 1 || ch.NonCompliant[0].Agent != "tool" {
		t.Fatalf("tightening PutPolicy = %+v, %v", ch, err)
	}
	cov, err = pe.c.Coverage(ctx)
	if err != nil || cov.Covered != 0 || len(cov.NonCompliant) != 1 || cov.NonCompliant[0].Agent != "tool" || cov.NonCompliant[0].Rule == "" {
		t.Fatalf("Coverage with a failing agent = %+v, %v", cov, err)
	}
}

func TestTenantsQuotasAndUsage(t *testing.T) {
	pe := newPolicyEnv(t)
	ctx := t.Context()
	ch, err := pe.c.PutTenant(ctx, "acme", acmeTenant)
	if err != nil || !ch.Created || ch.Tenant.Quotas.Agents == nil || *ch.Tenant.Quotas.Agents != 1 {
		t.Fatalf("PutTenant = %+v, %v", ch, err)
	}
	if r, ok := pe.lastAudit("policy.tenant.create", "tenant/acme"); !ok || !strings.HasPrefix(r.Actor, "system:root") {
		t.Errorf("audit of the tenant = %+v, %v", r, ok)
	}
	if _, err := pe.c.PutTenant(ctx, "other", acmeTenant); !isInvalidAt(err, "document.name") {
		t.Errorf("PutTenant with another name = %v", err)
	}
	pe.deployIn(t, "tool", "acme")
	tv, err := pe.c.Tenant(ctx, "acme")
	if err != nil || tv.Usage.Agents != 1 || tv.Usage.Memory != "64Mi" || tv.Usage.CPUMillis != 500 {
		t.Fatalf("Tenant acme = %+v, %v", tv, err)
	}
	// The quota of one agent holds: a second is denied, with the quota.
	it, _ := pe.cat.Get(ctx, "tool")
	_, err = pe.svc.Deploy(ctx, agents.DeployRequest{Manifest: it.Manifest, ID: "tool2", Tenant: "acme", Actor: "user:test"})
	var de *policy.DeniedError
	if !errors.As(err, &de) || !strings.HasPrefix(de.Decision.Rule, "quota:tenant/acme") {
		t.Fatalf("second deploy in acme = %v", err)
	}
	list, err := pe.c.Tenants(ctx)
	if err != nil || len(list.Tenants) != 2 {
		t.Fatalf("Tenants = %+v, %v", list, err)
	}
}

func isInvalidAt(err error, path string) bool {
	var ie *apiclient.InvalidError
	return errors.As(err, &ie) && len(ie.Problems) > 0 && ie.Problems[0].Path == path
}

// TestRestrictedOperatorSeesOnlyItsTenants: an operator restricted to
// acme gets 404, never 403, for what belongs to default, and lists only
// acme's; it may not change policies (403: its role); an auditor reads.
func TestRestrictedOperatorSeesOnlyItsTenants(t *testing.T) {
	needRoot(t)
	pe := newPolicyEnv(t)
	ctx := t.Context()
	admin := pe.setup()
	op := pe.user(admin, "olga", auth.RoleOperator)
	aud := pe.user(admin, "audrey", auth.RoleAuditor)
	if _, err := pe.c.PutTenant(ctx, "acme", acmeTenant); err != nil {
		t.Fatal(err)
	}
	pe.deployIn(t, "tool", "acme")
	pe.deployIn(t, "tool2", "")
	for _, doc := range []string{toolPolicy, strings.Replace(toolPolicy, "name: tool}", "name: tool2}", 1),
		"apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: tenant, name: default}\nspec: {}\n"} {
		if _, err := pe.c.PutPolicy(ctx, policyKindOf(doc), policyNameOf(doc), doc, 0); err != nil {
			t.Fatal(err)
		}
	}
	a := pe.other.do("PUT", "/api/v1/users/olga/tenants", admin.change(), apitype.TenantScopeSet{Restricted: true, Tenants: []string{"acme"}})
	if a.status != http.StatusOK {
		t.Fatalf("restricting olga = %s", a)
	}
	if a := pe.other.do("PUT", "/api/v1/users/nobody/tenants", admin.change(), apitype.TenantScopeSet{Restricted: true}); a.status != http.StatusNotFound {
		t.Errorf("scoping a user who does not exist = %s, want 404", a)
	}
	if a := pe.other.do("PUT", "/api/v1/users/olga/tenants", admin.change(), apitype.TenantScopeSet{Restricted: true, Tenants: []string{"ghost"}}); a.status != http.StatusBadRequest {
		t.Errorf("granting a tenant that does not exist = %s, want 400", a)
	}
	if r, ok := pe.lastAudit("policy.scope.set", "user/olga"); !ok || !strings.HasPrefix(r.Actor, "user:admin") {
		t.Errorf("audit of the scope = %+v, %v", r, ok)
	}
	hidden := []string{"/api/v1/tenants/default", "/api/v1/policies/agent/tool2", "/api/v1/policies/tenant/default",
		"/api/v1/policies/tenant/default/history", "/api/v1/decisions?tenant=default"}
	for _, p := range hidden {
		if a := pe.other.do("GET", p, op.read(), nil); a.status != http.StatusNotFound {
			t.Errorf("olga GET %s = %s, want 404", p, a)
		}
		if a := pe.other.do("GET", p, aud.read(), nil); a.status != http.StatusOK {
			t.Errorf("audrey (unrestricted) GET %s = %s, want 200", p, a)
		}
	}
	var tl apitype.TenantList
	pe.other.do("GET", "/api/v1/tenants", op.read(), nil).decode(t, &tl)
	if len(tl.Tenants) != 1 || tl.Tenants[0].Name != "acme" {
		t.Errorf("olga's tenants = %+v", tl.Tenants)
	}
	var pl apitype.PolicyList
	pe.other.do("GET", "/api/v1/policies", op.read(), nil).decode(t, &pl)
	if len(pl.Policies) != 1 || pl.Policies[0].Subject.Name != "tool" {
		t.Errorf("olga's policies = %+v", pl.Policies)
	}
	var cov apitype.CoverageView
	pe.other.do("GET", "/api/v1/coverage", op.read(), nil).decode(t, &cov)
	if cov.Deployed != 1 || cov.Agents[0].Agent != "tool" || cov.Manifests.Deployed != 1 {
		t.Errorf("olga's coverage = %+v", cov)
	}
	var dl apitype.DecisionList
	pe.other.do("GET", "/api/v1/decisions", op.read(), nil).decode(t, &dl)
	for _, d := range dl.Decisions {
		if d.Tenant != "acme" {
			t.Errorf("olga sees a decision of %s", d.Tenant)
		}
	}
	if len(dl.Decisions) != 1 {
		t.Errorf("olga's decisions = %+v", dl.Decisions)
	}
	// Writes are the admin's: the operator's role may not (403).
	if a := pe.other.do("PUT", "/api/v1/policies/agent/tool", op.change(), apitype.PolicyPut{Document: toolPolicy}); a.status != http.StatusForbidden {
		t.Errorf("olga PUT policy = %s, want 403", a)
	}
	if a := pe.other.do("PUT", "/api/v1/tenants/acme", op.change(), apitype.TenantPut{Document: acmeTenant}); a.status != http.StatusForbidden {
		t.Errorf("olga PUT tenant = %s, want 403", a)
	}
	// Lifting the restriction shows everything again.
	pe.other.do("PUT", "/api/v1/users/olga/tenants", admin.change(), apitype.TenantScopeSet{})
	if a := pe.other.do("GET", "/api/v1/tenants/default", op.read(), nil); a.status != http.StatusOK {
		t.Errorf("olga unrestricted GET default = %s", a)
	}
}

func policyKindOf(doc string) string {
	if strings.Contains(doc, "kind: tenant") {
		return "tenant"
	}
	return "agent"
}

func policyNameOf(doc string) string {
	switch {
	case strings.Contains(doc, "name: tool2}"):
		return "tool2"
	case strings.Contains(doc, "kind: tenant"):
		return "default"
	}
	return "tool"
}

// TestTaskRateLimitIs429WithRetryAfter: a task beyond the policy's
// tasks.perMinute is a 429 with Retry-After, which the client returns as
// a *RateLimitedError; a rate of 0 is a 403 with the decision.
func TestTaskRateLimitIs429WithRetryAfter(t *testing.T) {
	pe := newPolicyEnv(t)
	ctx := t.Context()
	pe.deployIn(t, "tool", "")
	pe.waitRunning(t, "tool")
	one := toolPolicy + "  tasks: {perMinute: 1}\n"
	if _, err := pe.c.PutPolicy(ctx, "agent", "tool", one, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pe.c.RunTask(ctx, "tool", taskCreate(`{}`), 0); err != nil {
		t.Fatalf("first task = %v", err)
	}
	_, err := pe.c.RunTask(ctx, "tool", taskCreate(`{}`), 0)
	var rl *apiclient.RateLimitedError
	if !errors.As(err, &rl) || statusOf(err) != http.StatusTooManyRequests || rl.RetryAfter < time.Second || rl.RetryAfter > time.Minute {
		t.Fatalf("second task = %v (%+v), want a 429 with Retry-After of at most a minute", err, rl)
	}
	if _, err := pe.c.PutPolicy(ctx, "agent", "tool", toolPolicy+"  tasks: {perMinute: 0}\n", 0); err != nil {
		t.Fatal(err)
	}
	_, err = pe.c.RunTask(ctx, "tool", taskCreate(`{}`), 0)
	var de *apiclient.DeniedError
	if !errors.As(err, &de) || !strings.Contains(de.Decision.Rule, "tasks.perMinute") {
		t.Fatalf("task at rate 0 = %v, want a DeniedError naming tasks.perMinute", err)
	}
}

func (pe *policyEnv) waitRunning(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if a, err := pe.c.Agent(t.Context(), id); err == nil && a.Status.State == "running" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("agent %s never ran", id)
}

// TestManifestPasses: the manifests-validated KPI can fall: a manifest
// that no longer passes the checks, or none at all, does not count.
func TestManifestPasses(t *testing.T) {
	m, err := manifest.Parse([]byte(toolEntry))
	if err != nil {
		t.Fatal(err)
	}
	if !manifestPasses(m) {
		t.Fatal("the tool's manifest does not pass")
	}
	bad := *m
	bad.Spec.Resources.Memory = "lots"
	if manifestPasses(&bad) || manifestPasses(nil) {
		t.Error("a broken manifest, or none, passes")
	}
}
