package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func tenantDoc(t *testing.T, name, quotas string) *TenantDocument {
	t.Helper()
	tt := ten(t, name, quotas)
	return &TenantDocument{Name: tt.Name, Quotas: tt.Quotas}
}

// TestTenants: create, update, unchanged, and the refusals of delete.
func TestTenants(t *testing.T) {
	e := newEnv(t, "user")
	c, err := e.svc.PutTenant(ctx, "alice", tenantDoc(t, "team-a", "{agents: 2}"))
	if err != nil || !c.Created {
		t.Fatalf("create: %+v %v", c, err)
	}
	if c, err = e.svc.PutTenant(ctx, "alice", tenantDoc(t, "team-a", "{agents: 2}")); err != nil || !c.Unchanged {
		t.Fatalf("unchanged: %+v %v", c, err)
	}
	if c, err = e.svc.PutTenant(ctx, "bob", tenantDoc(t, "team-a", "{agents: 1, memory: 2048Mi}")); err != nil || c.Created || c.Tenant.Quotas.Memory != "2Gi" {
		t.Fatalf("update: %+v %v", c, err)
	}
	got, err := e.svc.Tenant(ctx, "team-a")
	if err != nil || *got.Quotas.Agents != 1 || got.UpdatedBy != "bob" {
		t.Fatalf("tenant: %+v %v", got, err)
	}
	if _, err := e.svc.PutTenant(ctx, "bob", &TenantDocument{Name: "Team A"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
	r := baseReq()
	r.Tenant, r.Usage.Agents = "team-a", 1
	if d := e.svc.Evaluate(r); d.Rule != "quota:tenant/team-a agents" {
		t.Errorf("quota not applied: %+v", d)
	}

	if err := e.svc.DeleteTenant(ctx, "alice", DefaultTenant); !errors.Is(err, ErrConflict) {
		t.Errorf("delete default: %v", err)
	}
	running := baseReq()
	running.Tenant = "team-a"
	e.setRunning(running)
	if err := e.svc.DeleteTenant(ctx, "alice", "team-a"); !errors.Is(err, ErrConflict) {
		t.Errorf("delete with agents: %v", err)
	}
	e.setRunning()
	if _, err := e.svc.Put(ctx, "alice", mustDoc(t, "tenant/team-a", "{max: {pids: 64}}"), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteTenant(ctx, "alice", "team-a"); !errors.Is(err, ErrConflict) {
		t.Errorf("delete with a policy: %v", err)
	}
	if _, err := e.svc.Delete(ctx, "alice", Subject{SubjectTenant, "team-a"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteTenant(ctx, "alice", "team-a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := e.svc.Tenant(ctx, "team-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if d := e.svc.Evaluate(r); d.Rule != "tenant:team-a" {
		t.Errorf("deleted tenant still admits: %+v", d)
	}
	if err := e.svc.DeleteTenant(ctx, "alice", "team-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	checkAudit(t, e.audit(t, 0), []string{
		"alice policy.tenant.create tenant/team-a",
		"bob policy.tenant.update tenant/team-a",
		"bob policy.tenant.put - outcome=refused",
		"alice policy.tenant.delete tenant/default outcome=refused",
		"alice policy.tenant.delete tenant/team-a outcome=refused",
		"alice policy.create tenant/team-a version=1",
		"alice policy.tenant.delete tenant/team-a outcome=refused",
		"alice policy.delete tenant/team-a version=2",
		"alice policy.tenant.delete tenant/team-a",
		"alice policy.tenant.delete tenant/team-a outcome=refused",
	})
}

// TestScope: an unrestricted user sees every tenant; a restricted one
// only those granted, and the others are "not found".
func TestScope(t *testing.T) {
	e := newEnv(t, "user")
	for _, n := range []string{"team-a", "team-b"} {
		if _, err := e.svc.PutTenant(ctx, "admin", tenantDoc(t, n, "{}")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tn := range []string{"", DefaultTenant, "team-a", "team-b"} {
		if err := e.svc.Visible(ctx, "olga", tn); err != nil {
			t.Errorf("unrestricted olga, %q: %v", tn, err)
		}
	}
	if err := e.svc.Visible(ctx, "olga", "ghost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a missing tenant: %v", err)
	}
	sc, err := e.svc.SetScope(ctx, "admin", "olga", true, []string{"team-b", "team-a", "team-a"})
	if err != nil || strings.Join(sc.Tenants, ",") != "team-a,team-b" {
		t.Fatalf("restrict: %+v %v", sc, err)
	}
	for tn, want := range map[string]bool{"team-a": true, "team-b": true, DefaultTenant: false, "": false} {
		err := e.svc.Visible(ctx, "olga", tn)
		if want != (err == nil) || !want && !errors.Is(err, ErrNotFound) {
			t.Errorf("restricted olga, %q: %v", tn, err)
		}
	}
	if err := e.svc.Visible(ctx, "peter", DefaultTenant); err != nil {
		t.Errorf("another user is restricted too: %v", err)
	}
	if _, err := e.svc.SetScope(ctx, "admin", "olga", true, []string{"ghost"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("grant of a missing tenant: %v", err)
	}
	if sc, _ := e.svc.Scope(ctx, "olga"); len(sc.Tenants) != 2 {
		t.Errorf("a refused change changed the scope: %+v", sc)
	}
	if _, err := e.svc.SetScope(ctx, "admin", "olga", true, nil); err != nil {
		t.Fatal(err)
	}
	if sc, _ := e.svc.Scope(ctx, "olga"); !sc.Restricted || sc.Sees("team-a") || sc.Sees(DefaultTenant) {
		t.Errorf("restricted to nothing: %+v", sc)
	}
	if _, err := e.svc.SetScope(ctx, "admin", "olga", true, []string{"team-a"}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteTenant(ctx, "admin", "team-a"); err != nil {
		t.Fatal(err)
	}
	if sc, _ := e.svc.Scope(ctx, "olga"); !sc.Restricted || len(sc.Tenants) != 0 {
		t.Errorf("a deleted tenant's grant stayed: %+v", sc)
	}
	if _, err := e.svc.SetScope(ctx, "admin", "olga", false, []string{"ignored"}); err != nil {
		t.Fatal(err)
	}
	if sc, _ := e.svc.Scope(ctx, "olga"); sc.Restricted || !sc.Sees("team-b") {
		t.Errorf("lifted: %+v", sc)
	}
	if _, err := e.svc.SetScope(ctx, "admin", "bad user", true, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad username: %v", err)
	}
	recs := e.audit(t, 0)
	var scopes []string
	for _, r := range recs {
		if r.Action == "policy.scope.set" {
			scopes = append(scopes, r.Target+" "+string(r.Detail))
		}
	}
	if len(scopes) != 6 || !strings.Contains(scopes[0], `"tenants":["team-a","team-b"]`) || !strings.Contains(scopes[1], `"refused"`) {
		t.Errorf("scope audit: %q", scopes)
	}
}

// TestAdmit: usage from the running agents, the decision recorded (a
// denial audited), commit run only when allowed, the history bounded.
func TestAdmit(t *testing.T) {
	e := newEnv(t, "user", func(o *Options) {
		o.DecisionHistory = 3
		o.MonthUsage = func(_ context.Context, tenant string) (int64, int64, error) {
			if tenant == "team" {
				return 500, 0, nil
			}
			return 0, 0, nil
		}
	})
	if _, err := e.svc.PutTenant(ctx, "admin", tenantDoc(t, "team", "{agents: 2, tokensPerMonth: 500}")); err != nil {
		t.Fatal(err)
	}
	a := baseReq()
	a.Tenant = "team"
	e.setRunning(a)

	// A patch of the running agent: it is not counted twice, and the
	// month's use does not count against it.
	p := a
	p.Op = OpPatch
	committed := 0
	commit := func(Decision) error { committed++; return nil }
	if d, err := e.svc.Admit(ctx, "alice", p, commit); err != nil || !d.Allow || committed != 1 {
		t.Fatalf("patch: %+v %v", d, err)
	}
	// A new agent: the tenant used its tokens this month.
	b := a
	b.Agent = "b1"
	d, err := e.svc.Admit(ctx, "alice", b, commit)
	var de *DeniedError
	if !errors.As(err, &de) || !errors.Is(err, ErrDenied) || d.Allow || committed != 1 || de.Decision.Rule != "quota:tenant/team tokensPerMonth" {
		t.Fatalf("deploy: %+v %v", d, err)
	}
	if !strings.Contains(err.Error(), "has used 500 tokens of its 500 tokens") {
		t.Errorf("error %q", err)
	}
	recs, err := e.svc.Decisions(ctx, DecisionQuery{DeniedOnly: true})
	if err != nil || len(recs) != 1 || recs[0].Agent != "b1" || recs[0].Decision.Rule != d.Rule ||
		recs[0].Request.Usage.TokensMonth != 500 || recs[0].Request.Usage.Agents != 1 {
		t.Fatalf("recorded: %+v %v", recs, err)
	}
	last := e.audit(t, 0)
	if r := last[len(last)-1]; r.Action != "policy.admission.denied" || r.Target != "agent/b1" || !strings.Contains(string(r.Detail), "tokensPerMonth") {
		t.Errorf("denial audit: %+v", r)
	}
	// commit's own error comes back as it is.
	boom := errors.New("boom")
	if _, err := e.svc.Admit(ctx, "alice", p, func(Decision) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("commit error: %v", err)
	}
	for i := range 3 {
		x := baseReq()
		x.Agent = fmt.Sprintf("x%d", i)
		if _, err := e.svc.Admit(ctx, "alice", x, nil); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := e.svc.Decisions(ctx, DecisionQuery{})
	if len(all) != 3 || all[0].Agent != "x2" || all[2].Agent != "x0" {
		t.Errorf("history not bounded to 3, newest first: %+v", all)
	}
	if mine, _ := e.svc.Decisions(ctx, DecisionQuery{Agent: "x1"}); len(mine) != 1 {
		t.Errorf("by agent: %+v", mine)
	}
	if _, err := e.svc.Admit(ctx, "alice", Request{Op: "destroy", Agent: "a"}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad op: %v", err)
	}
}

// TestAdmitSerialises: concurrent deploys into a tenant with room for one
// admit exactly one, since each commit lands before the next admission.
func TestAdmitSerialises(t *testing.T) {
	e := newEnv(t, "user")
	if _, err := e.svc.PutTenant(ctx, "admin", tenantDoc(t, "solo", "{agents: 1}")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := baseReq()
			r.Agent, r.Tenant = fmt.Sprintf("s%d", i), "solo"
			_, err := e.svc.Admit(ctx, "alice", r, func(Decision) error {
				e.mu.Lock()
				e.run = append(e.run, r)
				e.mu.Unlock()
				return nil
			})
			if err == nil {
				mu.Lock()
				allowed++
				mu.Unlock()
			} else if !errors.Is(err, ErrDenied) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if allowed != 1 {
		t.Errorf("%d deploys admitted into a tenant with room for 1", allowed)
	}
}

// TestCoverage: explicit and passing over deployed, with each agent's
// status.
func TestCoverage(t *testing.T) {
	e := newEnv(t, "user")
	if c, err := e.svc.Coverage(ctx); err != nil || c.Ratio != 1 || c.Deployed != 0 {
		t.Fatalf("empty: %+v %v", c, err)
	}
	for _, d := range []*Document{
		mustDoc(t, "agent/a1", "{max: {memory: 1Gi}}"),
		mustDoc(t, "category/coding", "{max: {pids: 1024}}"),
		mustDoc(t, "agent/a4", "{max: {memory: 100Mi}}"),
	} {
		if _, err := e.svc.Put(ctx, "admin", d, 0); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(id, category string) Request {
		r := baseReq()
		r.Agent, r.Category = id, category
		return r
	}
	e.setRunning(mk("a1", ""), mk("a2", "Coding"), mk("a3", "Research"), mk("a4", ""))
	c, err := e.svc.Coverage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Deployed != 4 || c.Explicit != 3 || c.Passing != 3 || c.Covered != 2 || c.Ratio != 0.5 {
		t.Errorf("coverage %+v", c)
	}
	st := map[string]AgentStatus{}
	for _, a := range c.Agents {
		st[a.Agent] = a
	}
	if a := st["a3"]; a.Explicit || !a.Allow || strings.Join(a.Applied, " ") != "profile:user" {
		t.Errorf("a3 (profile only): %+v", a)
	}
	if a := st["a4"]; !a.Explicit || a.Allow || a.Rule != "policy:agent/a4@v1 max.memory" {
		t.Errorf("a4 (failing): %+v", a)
	}
	if a := st["a2"]; !a.Explicit || !a.Allow || a.Applied[1] != "policy:category/coding@v1" {
		t.Errorf("a2 (category): %+v", a)
	}
}

// TestNonCompliantOnChange: a change that breaks running agents names
// them at once, in its result and its audit record; Impact says so before
// saving; a quota change is judged too.
func TestNonCompliantOnChange(t *testing.T) {
	e := newEnv(t, "user")
	small, big := baseReq(), baseReq()
	big.Agent, big.MemoryBytes = "big", 2*gi
	e.setRunning(small, big)

	doc := mustDoc(t, "tenant/default", "{max: {memory: 1Gi}}")
	preview, err := e.svc.Impact(ctx, doc)
	if err != nil || len(preview) != 1 || preview[0].Agent != "big" || preview[0].Decision.Rule != "policy:tenant/default@v1 max.memory" {
		t.Fatalf("impact: %+v %v", preview, err)
	}
	if _, err := e.svc.Get(ctx, doc.Subject); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Impact stored the policy: %v", err)
	}
	c, err := e.svc.Put(ctx, "admin", doc, 0)
	if err != nil || len(c.NonCompliant) != 1 || c.NonCompliant[0].Agent != "big" {
		t.Fatalf("put: %+v %v", c, err)
	}
	recs := e.audit(t, 0)
	if d := string(recs[len(recs)-1].Detail); !strings.Contains(d, `"non_compliant":["big"]`) {
		t.Errorf("audit detail %s", d)
	}
	// Loosening breaks nothing; rolling back to the tight one breaks big again.
	if c, err = e.svc.Put(ctx, "admin", mustDoc(t, "tenant/default", "{max: {memory: 4Gi}}"), 0); err != nil || len(c.NonCompliant) != 0 {
		t.Fatalf("loosen: %+v %v", c, err)
	}
	if c, err = e.svc.Rollback(ctx, "admin", doc.Subject, 1, 0); err != nil || len(c.NonCompliant) != 1 {
		t.Fatalf("rollback: %+v %v", c, err)
	}
	// A tenant quota both agents together exceed flags both.
	tc, err := e.svc.PutTenant(ctx, "admin", tenantDoc(t, DefaultTenant, "{agents: 1}"))
	if err != nil || len(tc.NonCompliant) != 1 || tc.NonCompliant[0].Agent != "a1" {
		// big already fails; only a1 newly does.
		t.Fatalf("quota: %+v %v", tc, err)
	}
	if tc.NonCompliant[0].Decision.Rule != "quota:tenant/default agents" {
		t.Errorf("quota rule %q", tc.NonCompliant[0].Decision.Rule)
	}
}

// TestNonCompliantPure: the function the service uses, on two Sets.
func TestNonCompliantPure(t *testing.T) {
	before := NewSet("user", nil, nil)
	after := before.WithPolicy(pol(t, "category/research", "{isolation: sandbox}"))
	r1, r2 := baseReq(), baseReq()
	r2.Agent, r2.Isolation = "r2", "container"
	r3 := r2
	r3.Agent, r3.Category = "r3", "coding"
	got := NonCompliant(before, after, []Request{r1, r2, r3})
	if len(got) != 1 || got[0].Agent != "r2" || got[0].Decision.Rule != "policy:category/research@v1 isolation" {
		t.Errorf("%+v", got)
	}
	if back := NonCompliant(after, after.WithoutPolicy(Subject{SubjectCategory, "research"}), []Request{r1, r2, r3}); len(back) != 0 {
		t.Errorf("removing a policy broke %+v", back)
	}
}

// TestTaskLimiter: a minute's worth at once, then the rate; a policy
// change applies at once; a rate of 0 refuses every task.
func TestTaskLimiter(t *testing.T) {
	e := newEnv(t, "user")
	if _, err := e.svc.Put(ctx, "admin", mustDoc(t, "agent/a1", "{tasks: {perMinute: 3}}"), 0); err != nil {
		t.Fatal(err)
	}
	tl := e.svc.NewTaskLimiter()
	now := e.clock.Now()
	for i := range 3 {
		if ok, _, _ := tl.Allow("a1", "", "", now); !ok {
			t.Fatalf("task %d refused", i)
		}
	}
	ok, wait, rule := tl.Allow("a1", "", "", now)
	if ok || wait != 20*time.Second || rule != "policy:agent/a1@v1 tasks.perMinute" {
		t.Fatalf("4th task: %v %v %s", ok, wait, rule)
	}
	if ok, _, _ := tl.Allow("a1", "", "", now.Add(20*time.Second)); !ok {
		t.Error("refused after the refill")
	}
	if ok, _, _ := tl.Allow("a2", "", "", now); !ok {
		t.Error("another agent shares the bucket")
	}
	if _, err := e.svc.Put(ctx, "admin", mustDoc(t, "agent/a1", "{tasks: {perMinute: 0}}"), 0); err != nil {
		t.Fatal(err)
	}
	if ok, wait, rule := tl.Allow("a1", "", "", now.Add(time.Hour)); ok || wait != 0 || rule != "policy:agent/a1@v2 tasks.perMinute" {
		t.Errorf("rate 0: %v %v %s", ok, wait, rule)
	}
}
