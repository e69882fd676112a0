package ui

import (
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/ui/uitest"
)

var testIDs = regexp.MustCompile(`data-testid="([^"]+)"`)

// sectionsShown is the dashboard's data-testid markers, in order.
func sectionsShown(body string) []string {
	var out []string
	for _, m := range testIDs.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestDashboardOneCall: with omertad's GET /api/v1/dashboard the page
// costs whoami and that one call, and shows each role what the page made
// section by section showed it, figure for figure.
func TestDashboardOneCall(t *testing.T) {
	e := newEnv(t, Limits{})
	e.fake.AddAgents(5)
	e.fake.SetDeploys(100, 97)
	users := map[string]user{"admin": e.signIn("alice", "admin"), "operator": e.signIn("olga", "operator"), "auditor": e.signIn("carol", "auditor")}
	for _, verb := range []string{"disable", "enable", "disable", "enable", "disable", "enable", "disable", "enable", "disable", "enable"} {
		admin := users["admin"]
		resp, body := e.post("/agents/agent-001", form(CSRFField, admin.csrf, "action", verb), &admin)
		wantStatus(t, resp, body, http.StatusSeeOther)
	}
	for _, role := range []string{"admin", "operator", "auditor"} {
		u := users[role]
		e.fake.ServeDashboard(false)
		_, old := e.get("/", &u)
		e.fake.ServeDashboard(true)
		n := len(e.fake.Hits())
		resp, body := e.get("/", &u)
		wantStatus(t, resp, body, http.StatusOK)
		// whoami comes from the identity cache unless the identity seen
		// just before is older than its TTL already.
		hits := slices.DeleteFunc(e.fake.Hits()[n:], func(h string) bool { return h == "GET /api/v1/whoami" })
		if !slices.Equal(hits, []string{"GET /api/v1/dashboard"}) {
			t.Errorf("%s: the dashboard called %v, want the dashboard alone", role, hits)
		}
		if got, want := sectionsShown(body), sectionsShown(old); !slices.Equal(got, want) {
			t.Errorf("%s: sections %v, want those of the calls one by one %v", role, got, want)
		}
		wantContains(t, body, "omerta-test", `data-testid="report-verification">verified`, "hardening index 71 (Lynis 3.1.4)",
			"Test CPU 9000", "8 cores / 16 threads", "1 × NVIDIA H200", "memory.total: below the recommended (needs 128 GiB, has 64 GiB)",
			`<strong id="agents-total">5</strong>`, `data-state-count="running">3<`, `<strong id="deploy-rate">97.0 %</strong>`,
			"the kernel command line changed")
		if role != "operator" {
			recs := e.fake.Audit()
			wantContains(t, body, "<tr><td>"+strconv.FormatInt(recs[len(recs)-1].Seq, 10)+"</td>")
		} else {
			wantNotContains(t, body, `data-testid="recent-audit"`)
		}
		checkCSPClean(t, "dashboard "+role, body)
	}
}

// TestDashboardFrom: each section's status from omertad shows as the call
// it stands for would have: 404 as nothing yet (and no policy figures at
// all), an error with what to do, 401 as the end of the session; a
// section the role may not read stays hidden even when sent; a scoped
// caller's counts come without the appliance's deploy KPI.
func TestDashboardFrom(t *testing.T) {
	w := &apitype.Whoami{Role: "operator", Actions: uitest.Actions("operator")}
	sum := apitype.AgentsSummary{ByState: map[string]int{"running": 2}, Total: 2}
	d := dashboardFrom(w, apitype.Dashboard{
		Report:   &apitype.DashboardReport{Section: apitype.Section{Status: http.StatusNotFound, Error: "no report yet"}},
		Probe:    &apitype.DashboardProbe{Section: apitype.Section{Status: http.StatusServiceUnavailable, Error: "database locked"}},
		Agents:   &apitype.DashboardAgents{Section: apitype.Section{Status: http.StatusOK}, Summary: &sum, Scoped: true},
		Coverage: &apitype.DashboardCoverage{Section: apitype.Section{Status: http.StatusNotFound}},
		Drift:    &apitype.DashboardDrift{Section: apitype.Section{Status: http.StatusUnauthorized, Error: "session expired"}},
		Audit:    &apitype.DashboardAudit{Section: apitype.Section{Status: http.StatusOK}, Records: []apitype.AuditRecord{{Seq: 1}}},
	})
	if !d.Report.Missing || d.Report.Err != "" {
		t.Errorf("a 404 report: %+v, want missing", d.Report)
	}
	if d.Probe.Status != http.StatusServiceUnavailable || !strings.Contains(d.Probe.Err, "database locked") {
		t.Errorf("a failed probe: %+v", d.Probe)
	}
	if !d.Agents.V.Scoped || d.Agents.V.Total != 2 || d.Agents.Hidden {
		t.Errorf("scoped agents: %+v", d.Agents)
	}
	if !d.Policy.Hidden {
		t.Error("coverage of an omertad without policies is shown")
	}
	if !anyUnauthorized(d.Drift.Status) {
		t.Errorf("a 401 section: %+v, want the session's end", d.Drift)
	}
	if !d.Audit.Hidden || d.Audit.V != nil {
		t.Errorf("an operator's audit section: %+v, want hidden", d.Audit)
	}
	if d := dashboardFrom(w, apitype.Dashboard{}); !d.Report.Hidden || !d.Agents.Hidden {
		t.Error("sections omertad did not send are shown")
	}
}

// TestDashboardOneCallFails: when the one call fails, every section the
// role may see says why, and those it may not stay hidden.
func TestDashboardOneCallFails(t *testing.T) {
	w := &apitype.Whoami{Role: "operator", Actions: uitest.Actions("operator")}
	d := dashboardFailed(w, errors.New("connection refused"))
	if d.Report.Err == "" || d.Agents.Err == "" || d.Policy.Err == "" || !d.Audit.Hidden || d.Audit.Err != "" {
		t.Errorf("failed dashboard: %+v", d)
	}
}

// BenchmarkDashboardOneCall renders the dashboard for an admin with 200
// agents through GET /api/v1/dashboard; omertad-calls/op is the calls
// that reached the fake omertad per page (whoami and the dashboard).
func BenchmarkDashboardOneCall(b *testing.B) { benchDashboard(b, true) }

// BenchmarkDashboardCalls is BenchmarkDashboardOneCall against an omertad
// without the route: one call per section.
func BenchmarkDashboardCalls(b *testing.B) { benchDashboard(b, false) }

func benchDashboard(b *testing.B, one bool) {
	e := newEnvMode(b, Limits{}, true)
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(200)
	e.fake.ServeDashboard(one)
	h := e.s.App().Handler()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/")
	ctx.Request.Header.SetHost("console.test")
	ctx.Request.Header.Set("Cookie", admin.cookie)
	ctx.Request.Header.Set("Sec-Fetch-Site", "same-origin")
	before, pages := e.fake.Requests(), int64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ctx.Response.Reset()
		ctx.ResetUserValues()
		h(&ctx)
		if ctx.Response.StatusCode() != http.StatusOK {
			b.Fatalf("dashboard: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		pages++
	}
	b.StopTimer()
	b.ReportMetric(float64(e.fake.Requests()-before)/float64(pages), "omertad-calls/op")
}
