package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/policy"
)

// An operator limited to tenant acme sees nothing of the default
// tenant's agents: not in the list, and 404 (as for an agent that does
// not exist) on every route naming one; it cannot deploy there either.
func TestRestrictedOperatorSeesOnlyItsAgents(t *testing.T) {
	needRoot(t)
	pe := newPolicyEnv(t)
	ctx := t.Context()
	admin := pe.setup()
	op := pe.user(admin, "olga", auth.RoleOperator)
	if _, err := pe.c.PutTenant(ctx, "acme", acmeTenant); err != nil {
		t.Fatal(err)
	}
	pe.deployIn(t, "mine", "acme")
	pe.deployIn(t, "theirs", "")
	if a := pe.other.do("PUT", "/api/v1/users/olga/tenants", admin.change(), apitype.TenantScopeSet{Restricted: true, Tenants: []string{"acme"}}); a.status != http.StatusOK {
		t.Fatalf("restricting olga = %s", a)
	}
	var al apitype.AgentList
	pe.other.do("GET", "/api/v1/agents", op.read(), nil).decode(t, &al)
	if len(al.Agents) != 1 || al.Agents[0].ID != "mine" {
		t.Errorf("olga's agents = %+v", al.Agents)
	}
	pe.other.do("GET", "/api/v1/agents", admin.read(), nil).decode(t, &al)
	if len(al.Agents) != 2 {
		t.Errorf("the admin's agents = %d, want 2 (the restricted list must not be cached for everyone)", len(al.Agents))
	}
	for _, rq := range []struct{ method, path string }{
		{"GET", "/api/v1/agents/theirs"}, {"GET", "/api/v1/agents/theirs/logs"}, {"GET", "/api/v1/agents/theirs/tasks"},
		{"POST", "/api/v1/agents/theirs/restart"}, {"DELETE", "/api/v1/agents/theirs"}, {"GET", "/api/v1/agents/nosuch"},
	} {
		h := op.read()
		if rq.method != "GET" {
			h = op.change()
		}
		a := pe.other.do(rq.method, rq.path, h, nil)
		if a.status != http.StatusNotFound || strings.Contains(a.String(), "tenant") {
			t.Errorf("olga %s %s = %s, want a plain 404", rq.method, rq.path, a)
		}
	}
	if a := pe.other.do("GET", "/api/v1/agents/mine", op.read(), nil); a.status != http.StatusOK {
		t.Errorf("olga GET her own agent = %s", a)
	}
	a := pe.other.do("POST", "/api/v1/agents", op.change(), apitype.AgentDeploy{Entry: "tool", ID: "sneaky"})
	if a.status != http.StatusNotFound {
		t.Errorf("olga deploying into default = %s, want 404", a)
	}
	// Into acme the deploy reaches admission, and acme's quota of one
	// agent (held by "mine") refuses it: the tenant was passed on.
	a = pe.other.do("POST", "/api/v1/agents", op.change(), apitype.AgentDeploy{Entry: "tool", ID: "hers", Tenant: "acme"})
	var d apitype.Denied
	a.decode(t, &d)
	if a.status != http.StatusForbidden || d.Decision.Rule != "quota:tenant/acme agents" {
		t.Errorf("olga deploying into acme = %s, want acme's quota", a)
	}
	var sum apitype.AgentsSummary
	pe.other.do("GET", "/api/v1/summary/agents", op.read(), nil).decode(t, &sum)
	if sum.Total != 1 || sum.Deploys7d.Attempted != 0 {
		t.Errorf("olga's summary = %+v, want her one agent and no deploy figures", sum)
	}
	pe.other.do("GET", "/api/v1/summary/agents", admin.read(), nil).decode(t, &sum)
	if sum.Total != 2 {
		t.Errorf("the admin's summary counts %d agents, want 2", sum.Total)
	}
	// Her event stream's filter: her tenant's agents only.
	visible := pe.srv.agentVisible(policy.Scope{User: "olga", Restricted: true, Tenants: []string{"acme"}})
	if !visible("mine") || visible("theirs") || visible("nosuch") {
		t.Error("the event filter shows the wrong agents")
	}
}
