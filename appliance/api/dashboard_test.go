package api

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"testing"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/store"
)

// TestDashboardSectionsPerRole: each role gets exactly the sections whose
// routes it may read, and each section says what that route says.
func TestDashboardSectionsPerRole(t *testing.T) {
	needRoot(t)
	e := wiredEnv(t)
	admin := e.setup()
	logins := map[auth.Role]login{auth.RoleAdmin: admin,
		auth.RoleOperator: e.user(admin, "olga", auth.RoleOperator), auth.RoleAuditor: e.user(admin, "aude", auth.RoleAuditor)}
	for role, l := range logins {
		a := e.other.do("GET", "/api/v1/dashboard", l.read(), nil)
		if a.status != http.StatusOK {
			t.Fatalf("%s: GET /dashboard = %s", role, a)
		}
		var d apitype.Dashboard
		a.decode(t, &d)
		present := map[string]bool{auth.ActionReportsRead: d.Report != nil, auth.ActionProbeRead: d.Probe != nil,
			auth.ActionAgentsRead: d.Agents != nil, auth.ActionPolicyRead: d.Coverage != nil,
			auth.ActionDriftRead: d.Drift != nil, auth.ActionAuditRead: d.Audit != nil}
		for action, got := range present {
			if want := auth.Allowed(role, action); got != want {
				t.Errorf("%s: section of %s present %v, want %v", role, action, got, want)
			}
		}
		checkSectionsMatchRoutes(t, e, l, d)
	}
	if a := e.other.do("GET", "/api/v1/dashboard", nil, nil); a.status != http.StatusUnauthorized {
		t.Errorf("without a session: %s, want 401", a)
	}
}

// checkSectionsMatchRoutes compares each section of d with its route's
// answer to the same caller.
func checkSectionsMatchRoutes(t *testing.T, e *authEnv, l login, d apitype.Dashboard) {
	t.Helper()
	get := func(path string, v any) {
		t.Helper()
		a := e.other.do("GET", path, l.read(), nil)
		if a.status != http.StatusOK {
			t.Fatalf("GET %s = %s", path, a)
		}
		a.decode(t, v)
	}
	if r := d.Report; r != nil {
		var rv apitype.ReportView
		get("/api/v1/report", &rv)
		if !r.OK() || r.Verification != rv.Verification.Status || !reflect.DeepEqual(r.Summary, rv.Summary) || r.LynisAudit == nil {
			t.Errorf("report section %+v, want the summary %+v and verification %q", r, rv.Summary, rv.Verification.Status)
		}
	}
	if p := d.Probe; p != nil {
		var pv apitype.ProbeView
		get("/api/v1/probe", &pv)
		if !p.OK() || p.ProbeID != pv.ProbeID || !reflect.DeepEqual(*p.Verdict, pv.Verdict) {
			t.Errorf("probe section %+v, want probe %d's verdict %+v", p, pv.ProbeID, pv.Verdict)
		}
	}
	if ag := d.Agents; ag != nil {
		var sv apitype.AgentsSummary
		get("/api/v1/summary/agents", &sv)
		if !ag.OK() || ag.Scoped || ag.Summary.Total != sv.Total || ag.Summary.Deploys7d.Attempted != sv.Deploys7d.Attempted {
			t.Errorf("agents section %+v, want %+v", ag, sv)
		}
	}
	if c := d.Coverage; c != nil {
		var cv apitype.CoverageView
		get("/api/v1/coverage", &cv)
		if !c.OK() || c.Coverage.Deployed != cv.Deployed || c.Coverage.Covered != cv.Covered || len(c.Coverage.Agents) != 0 {
			t.Errorf("coverage section %+v, want %+v without its agents", c.Coverage, cv)
		}
	}
	if dr := d.Drift; dr != nil {
		var dv apitype.DriftView
		get("/api/v1/probe/drift?limit=5", &dv)
		if !dr.OK() || !reflect.DeepEqual(dr.Events, dv.Events) {
			t.Errorf("drift section %+v, want %+v", dr.Events, dv.Events)
		}
	}
	if au := d.Audit; au != nil {
		var all []apitype.AuditRecord
		get("/api/v1/audit?limit=1000", &all)
		want := newestFirst(all, apitype.DashboardAuditRecords)
		if !au.OK() || len(au.Records) != len(want) || (len(want) > 0 && au.Records[0].Seq != want[0].Seq) {
			t.Errorf("audit section has %d records from %v, want %d from %d", len(au.Records), seqs(au.Records), len(want), seqs(want))
		}
	}
}

func newestFirst(recs []apitype.AuditRecord, n int) []apitype.AuditRecord {
	var out []apitype.AuditRecord
	for i := len(recs) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, recs[i])
	}
	return out
}

func seqs(recs []apitype.AuditRecord) []int64 {
	out := make([]int64, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

// TestDashboardRestrictedScoped: an operator limited to tenant acme counts
// acme's agents only, with no deploy KPI, and the figures kept for
// everyone are never handed to it, nor its figures to the admin.
func TestDashboardRestrictedScoped(t *testing.T) {
	needRoot(t)
	pe := newPolicyEnv(t)
	admin := pe.setup()
	op := pe.user(admin, "olga", auth.RoleOperator)
	if _, err := pe.c.PutTenant(t.Context(), "acme", acmeTenant); err != nil {
		t.Fatal(err)
	}
	pe.deployIn(t, "mine", "acme")
	pe.deployIn(t, "theirs", "")
	if a := pe.other.do("PUT", "/api/v1/users/olga/tenants", admin.change(), apitype.TenantScopeSet{Restricted: true, Tenants: []string{"acme"}}); a.status != http.StatusOK {
		t.Fatalf("restricting olga = %s", a)
	}
	dash := func(l login) apitype.Dashboard {
		t.Helper()
		var d apitype.Dashboard
		a := pe.other.do("GET", "/api/v1/dashboard", l.read(), nil)
		if a.status != http.StatusOK {
			t.Fatalf("GET /dashboard = %s", a)
		}
		a.decode(t, &d)
		return d
	}
	for range 2 { // the second round from what was kept, if anything
		d := dash(admin)
		if d.Agents.Summary.Total != 2 || d.Agents.Scoped || d.Coverage.Coverage.Deployed != 2 {
			t.Errorf("the admin's agents %+v, coverage %+v: want both agents", d.Agents.Summary, d.Coverage.Coverage)
		}
		d = dash(op)
		if s := d.Agents.Summary; s.Total != 1 || !d.Agents.Scoped || s.Deploys7d.Attempted != 0 || s.Deploys7d.Rate != nil {
			t.Errorf("olga's agents %+v (scoped %v): want acme's one agent and no deploy KPI", s, d.Agents.Scoped)
		}
		if c := d.Coverage.Coverage; c.Deployed != 1 || c.Manifests == nil || c.Manifests.Deployed != 1 {
			t.Errorf("olga's coverage %+v: want acme's one agent", c)
		}
		if d.Audit != nil {
			t.Error("an operator got the audit section")
		}
	}
}

// TestDashboardKeptUntilChange: a kept section follows the database: a
// deploy shows in the next answer, and the audit records it wrote too.
func TestDashboardKeptUntilChange(t *testing.T) {
	needRoot(t)
	pe := newPolicyEnv(t)
	pe.setup()
	dash := func() apitype.Dashboard {
		t.Helper()
		d, err := pe.c.Dashboard(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := dash()
	if again := dash(); !reflect.DeepEqual(before, again) || before.Agents.Summary.Total != 0 {
		t.Fatalf("two answers without a change differ, or agents exist: %+v / %+v", before.Agents, again.Agents)
	}
	pe.deployIn(t, "tool-1", "")
	after := dash()
	if after.Agents.Summary.Total != 1 || after.Coverage.Coverage.Deployed != 1 {
		t.Errorf("after a deploy: agents %+v, coverage %+v", after.Agents.Summary, after.Coverage.Coverage)
	}
	recs, err := pe.c.Audit(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Audit.Records; len(got) == 0 || got[0].Seq != recs[len(recs)-1].Seq {
		t.Errorf("newest audit record %v, want %d", seqs(got), recs[len(recs)-1].Seq)
	}
}

// TestRecentAudit: the newest records, newest last, across pages of the
// log, from a stale head or one beyond the log.
func TestRecentAudit(t *testing.T) {
	e := newAuthEnv(t)
	ctx := context.Background()
	for i := range 2100 {
		if err := e.st.Audit(ctx, store.AuditEntry{Actor: "test", Action: "test.record", Target: "r" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := e.st.AuditLog(ctx, 2000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1].Seq
	for _, head := range []int64{0, 3, last, last + 500} {
		st := &dashboardState{}
		st.auditHead.Store(head)
		got, err := e.srv.recentAudit(ctx, st, 8)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 8 || got[7].Seq != last || got[0].Seq != last-7 || st.auditHead.Load() != last {
			t.Errorf("from head %d: %d records %d..%d, head kept %d; want 8 up to %d", head, len(got), first(got), lastSeq(got), st.auditHead.Load(), last)
		}
	}
}

func first(recs []store.AuditRecord) int64 {
	if len(recs) == 0 {
		return 0
	}
	return recs[0].Seq
}

func lastSeq(recs []store.AuditRecord) int64 {
	if len(recs) == 0 {
		return 0
	}
	return recs[len(recs)-1].Seq
}

// TestDashboardAnswerJoin: the sections joined as they are make one JSON
// object, an empty one when no section is there.
func TestDashboardAnswerJoin(t *testing.T) {
	var empty dashboardAnswer
	if got := string(empty.bytes()); got != "{}" {
		t.Errorf("no sections: %s", got)
	}
	var a dashboardAnswer
	a.add("report", nil)
	a.add("agents", []byte(`{"status":200,"summary":{"total":3}}`))
	a.add("audit", []byte(`{"status":403,"error":"no"}`))
	var d apitype.Dashboard
	if err := json.Unmarshal(a.bytes(), &d); err != nil || d.Report != nil || d.Agents.Summary.Total != 3 || d.Audit.Status != 403 {
		t.Errorf("joined %s: %+v, %v", a.bytes(), d, err)
	}
}
