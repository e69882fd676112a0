package ui

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apitype"
)

func agentPolicy(id, memory string) string {
	return "apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: agent, name: " + id + "}\ndescription: small <b>" + id +
		"</b>\nspec:\n  max: {memory: " + memory + "}\n"
}

func TestPolicyPagesCreateEditRollBack(t *testing.T) {
	e := newEnv(t, Limits{})
	e.fake.AddAgents(1)
	admin := e.signIn("alice", "admin")
	resp, body := e.post("/policies", form("csrf", admin.csrf, "kind", "agent", "name", "agent-000", "document", agentPolicy("agent-000", "1Gi")), &admin)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/policies/agent/agent-000?done=create" {
		t.Fatalf("created policy redirects to %q", loc)
	}
	resp, body = e.get("/policies/agent/agent-000?done=create", &admin)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, "The policy is created.", `data-testid="policy-document"`, "1Gi", `name="version" value="1"`,
		"small &lt;b&gt;agent-000&lt;/b&gt;")
	wantNotContains(t, body, "<b>agent-000</b>")
	checkCSPClean(t, "policy page", body)
	// A new version, saved against the version shown.
	resp, body = e.post("/policies/agent/agent-000", form("csrf", admin.csrf, "action", "save", "version", "1", "document", agentPolicy("agent-000", "2Gi")), &admin)
	wantStatus(t, resp, body, http.StatusSeeOther)
	// Saving against a stale version says someone changed it.
	resp, body = e.post("/policies/agent/agent-000", form("csrf", admin.csrf, "action", "save", "version", "1", "document", agentPolicy("agent-000", "3Gi")), &admin)
	wantStatus(t, resp, body, http.StatusConflict)
	wantContains(t, body, "Someone changed this policy")
	resp, body = e.post("/policies/agent/agent-000", form("csrf", admin.csrf, "action", "rollback", "version", "2", "to", "1"), &admin)
	wantStatus(t, resp, body, http.StatusSeeOther)
	_, body = e.get("/policies/agent/agent-000", &admin)
	wantContains(t, body, "Version 3", "rollback to version 1", `data-testid="policy-rollback"`)
	var actions []string
	for _, r := range e.fake.Audit() {
		if strings.HasPrefix(r.Action, "policy.") {
			actions = append(actions, r.Action+" "+r.Target+" "+r.Actor)
		}
	}
	if strings.Join(actions, ",") != "policy.create agent/agent-000 user:alice,policy.update agent/agent-000 user:alice,policy.rollback agent/agent-000 user:alice" {
		t.Errorf("audit = %q", actions)
	}
	_, body = e.get("/policies", &admin)
	wantContains(t, body, `data-subject="agent/agent-000"`, `data-testid="policy-new-form"`)
	checkCSPClean(t, "policies page", body)
}

func TestPolicyPageRefusalNamesTheField(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	resp, body := e.post("/policies", form("csrf", admin.csrf, "kind", "agent", "name", "other", "document", agentPolicy("agent-000", "1Gi")), &admin)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantContains(t, body, `data-testid="policy-problems"`, "<code>document.subject</code>", "each problem names its field")
	// What was typed is kept for another try.
	wantContains(t, body, "agent-000", `value="other"`)
	// Without the form's CSRF token nothing is sent.
	n := e.fake.Requests()
	resp, body = e.post("/policies", form("kind", "agent", "name", "x", "document", "x"), &admin)
	wantStatus(t, resp, body, http.StatusForbidden)
	if e.fake.Requests() != n+1 { // whoami only
		t.Errorf("a post without CSRF reached omertad: %v", e.fake.Hits()[n:])
	}
}

func TestPolicyPagesReadOnlyForOperators(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	e.post("/policies", form("csrf", admin.csrf, "kind", "agent", "name", "agent-000", "document", agentPolicy("agent-000", "1Gi")), &admin)
	op := e.signIn("olga", "operator")
	for _, p := range []string{"/policies", "/policies/agent/agent-000", "/tenants", "/decisions"} {
		resp, body := e.get(p, &op)
		wantStatus(t, resp, body, http.StatusOK)
		wantNotContains(t, body, `data-testid="policy-new-form"`, `data-testid="policy-edit-form"`, `data-testid="policy-rollback"`, `data-testid="tenant-form"`)
		wantContains(t, body, `href="/policies" aria-current`[:len(`href="/policies"`)])
	}
	resp, body := e.post("/policies/agent/agent-000", form("csrf", op.csrf, "action", "save", "version", "1", "document", "x"), &op)
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = e.post("/tenants", form("csrf", op.csrf, "name", "x", "document", "x"), &op)
	wantStatus(t, resp, body, http.StatusForbidden)
}

func TestTenantsPageQuotasAndUsage(t *testing.T) {
	e := newEnv(t, Limits{})
	e.fake.AddAgents(3)
	admin := e.signIn("alice", "admin")
	doc := "apiVersion: omertaos.dev/v1\nkind: Tenant\nname: acme\ndescription: ACME <corp>\nquotas: {agents: 5, memory: 8Gi}\n"
	resp, body := e.post("/tenants", form("csrf", admin.csrf, "name", "acme", "document", doc), &admin)
	wantStatus(t, resp, body, http.StatusSeeOther)
	resp, body = e.get("/tenants?done=saved", &admin)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, "The tenant is saved.", `data-tenant="acme"`, `data-field="agents">0 of 5<`, `data-field="memory">0 of 8Gi<`,
		`data-tenant="default"`, `data-field="agents">3 of unbounded<`, "ACME &lt;corp&gt;")
	checkCSPClean(t, "tenants page", body)
	resp, body = e.post("/tenants", form("csrf", admin.csrf, "name", "other", "document", doc), &admin)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantContains(t, body, "<code>document.name</code>")
	// An operator restricted to acme sees acme only.
	op := e.signIn("olga", "operator")
	resp, body = e.post("/tenants/scope", form("csrf", admin.csrf, "user", "olga", "restricted", "on", "tenants", "acme"), &admin)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, "olga sees only: acme (nothing of the others).")
	_, body = e.get("/tenants", &op)
	wantContains(t, body, `data-tenant="acme"`)
	wantNotContains(t, body, `data-tenant="default"`, `data-testid="scope-form"`)
	resp, body = e.post("/tenants/scope", form("csrf", admin.csrf, "user", "olga"), &admin)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, "olga sees every tenant.")
	_, body = e.get("/tenants", &op)
	wantContains(t, body, `data-tenant="default"`)
}

// TestDecisionsPageExplainsDenials: the latest denials, each with its
// rule, its reason with the numbers and a sentence saying what the rule
// limits; foreign text escaped.
func TestDecisionsPageExplainsDenials(t *testing.T) {
	e := newEnv(t, Limits{})
	aud := e.signIn("carol", "auditor")
	resp, body := e.get("/decisions", &aud)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="decisions-empty"`, "No denials")
	e.fake.AddDecision("crm", "default", true, "", "")
	e.fake.AddDecision("crm2", "acme", false, "quota:tenant/acme agents",
		"the tenant \"acme\" would hold 3 agents against a quota of 2 agents (2 held by its other agents, 1 by this one) <script>")
	_, body = e.get("/decisions", &aud)
	wantContains(t, body, `data-testid="decision-row"`, "The quota of tenant acme limits how many agents the tenant may run.",
		"<code data-testid=\"decision-rule\">quota:tenant/acme agents</code>", "against a quota of 2 agents", "&lt;script&gt;")
	wantNotContains(t, body, "<script>", ">crm<")
	checkCSPClean(t, "decisions page", body)
	_, body = e.get("/decisions?all=1", &aud)
	wantContains(t, body, ">crm<", ">crm2<", "Only denials")
}

func TestExplainRule(t *testing.T) {
	for _, tc := range []struct{ rule, want string }{
		{"policy:agent/foo@v3 max.memory", "The policy for agent foo@v3 limits how much memory one agent may have."},
		{"profile:enterprise isolation", "The enterprise profile limits how weakly the agent may be isolated from the machine."},
		{"quota:tenant/default usdPerMonth", "The quota of tenant default limits how much the tenant may spend on models a month."},
		{"policy:category/tools@v1 tasks.perMinute", "The policy for category tools@v1 limits how many tasks a minute the agent may be given."},
		{"tenant:ghost", "The agent's tenant ghost does not exist: create it, or deploy into another."},
		{"policy:agent/x@v1 something.new", "The policy for agent x@v1 refused it."},
		{"", ""},
	} {
		if got := explainRule(tc.rule); got != tc.want {
			t.Errorf("explainRule(%q) = %q, want %q", tc.rule, got, tc.want)
		}
	}
}

// TestDashboardPolicyKPIs: policy coverage against its 90 % target and
// the manifests validated come from omertad's coverage, live: they move
// when policies and agents change.
func TestDashboardPolicyKPIs(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	_, body := e.get("/", &admin)
	wantContains(t, body, `<strong id="coverage-rate">no agents deployed</strong>`, `<strong id="manifests-rate">no agents deployed</strong>`)
	e.fake.AddAgents(4)
	for _, id := range []string{"agent-000", "agent-001", "agent-002"} {
		resp, b := e.post("/policies", form("csrf", admin.csrf, "kind", "agent", "name", id, "document", agentPolicy(id, "1Gi")), &admin)
		wantStatus(t, resp, b, http.StatusSeeOther)
	}
	e.fake.SetManifestInvalid("agent-003")
	_, body = e.get("/", &admin)
	wantContains(t, body, `<strong id="coverage-rate">75.0 %</strong>`, `data-testid="coverage-verdict">below the target<`, "3 of 4",
		"the target is ≥ 90.0 %", `<strong id="manifests-rate">75.0 %</strong>`, `data-testid="manifests-verdict">below the target<`)
	checkCSPClean(t, "dashboard", body)
	e.post("/policies", form("csrf", admin.csrf, "kind", "agent", "name", "agent-003", "document", agentPolicy("agent-003", "1Gi")), &admin)
	e.fake.SetNonCompliant("agent-001", "policy:agent/agent-001@v1 max.memory", "too big")
	_, body = e.get("/", &admin)
	wantContains(t, body, `<strong id="coverage-rate">75.0 %</strong>`, `data-testid="non-compliant"`, "agent-001</a> (policy:agent/agent-001@v1 max.memory)")
	e2 := newEnv(t, Limits{})
	e2.fake.AddAgents(2)
	a2 := e2.signIn("alice", "admin")
	for _, id := range []string{"agent-000", "agent-001"} {
		e2.post("/policies", form("csrf", a2.csrf, "kind", "agent", "name", id, "document", agentPolicy(id, "1Gi")), &a2)
	}
	_, body = e2.get("/", &a2)
	wantContains(t, body, `<strong id="coverage-rate">100.0 %</strong>`, `data-testid="coverage-verdict">meets the target<`,
		`<strong id="manifests-rate">100.0 %</strong>`, `data-testid="manifests-verdict">meets the target<`)
}

// FuzzExplainRule: any rule omertad sends is explained without a panic,
// in one line; the page escapes it (html/template).
func FuzzExplainRule(f *testing.F) {
	for _, s := range []string{"policy:agent/foo@v3 max.memory", "quota:tenant/acme agents", "tenant:x", "profile:user isolation", ":", " ", "policy:", "a:b c d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rule string) {
		got := explainRule(rule)
		if rule != "" && got == "" {
			t.Fatalf("explainRule(%q) is empty", rule)
		}
	})
}

// A deploy the policy refuses reaches the console's JSON API with its
// decision, and its page says which rule refused it, not "your role".
func TestDeployDeniedByPolicyExplained(t *testing.T) { bothModes(t, testDeployDeniedByPolicyExplained) }

func testDeployDeniedByPolicyExplained(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{}, raw)
	op := e.signIn("olga", "operator")
	e.fake.DenyDeploys("quota:tenant/default agents", "the tenant \"default\" would hold 3 agents against a quota of 2 <b>")
	r := req("POST", "/api/v1/agents", `{"entry":"sample-tool","id":"denied"}`, &op)
	r.Header.Set(CSRFHeader, op.csrf)
	resp, body := e.do(r)
	wantStatus(t, resp, body, http.StatusForbidden)
	var d apitype.Denied
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.Decision.Rule != "quota:tenant/default agents" || len(d.Decision.Denials) != 1 {
		t.Errorf("decision not passed on: %s", body)
	}
	resp, body = e.post("/catalog/sample-tool", form(CSRFField, op.csrf, "agent_id", "denied"), &op)
	wantStatus(t, resp, body, http.StatusForbidden)
	wantContains(t, body, "Refused by policy", "The quota of tenant default limits how many agents the tenant may run.", "&lt;b&gt;")
	wantNotContains(t, body, "Your role may not")
}
