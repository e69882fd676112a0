package uitest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// dashboardOn holds the fakes that serve GET /api/v1/dashboard (see
// ServeDashboard); the others answer it 404, as an omertad older than the
// route does.
var dashboardOn sync.Map // *Fake -> struct{}

// ServeDashboard makes the fake serve GET /api/v1/dashboard, or stop
// serving it. It is off by default, so that the console's tests of the
// dashboard section by section (its answer to an omertad without the
// route) keep their call counts.
func (f *Fake) ServeDashboard(on bool) {
	if on {
		dashboardOn.Store(f, struct{}{})
	} else {
		dashboardOn.Delete(f)
	}
}

// dashboardRoutes serves GET /api/v1/dashboard as omertad does: each
// section gated by its own route's action, and made from that route's
// answer to the same caller (asked inside the fake, so that the hits show
// the one call).
func (f *Fake) dashboardRoutes() {
	f.route("GET /api/v1/dashboard", "self", func(w http.ResponseWriter, r *http.Request, p principal) {
		if _, on := dashboardOn.Load(f); !on {
			fail(w, http.StatusNotFound, "404 page not found")
			return
		}
		may := func(action string) bool { return slices.Contains(permissions[action], p.role) }
		var out apitype.Dashboard
		if may("reports.read") {
			out.Report = f.dashReport(r)
		}
		if may("probe.read") {
			out.Probe = f.dashProbe(r)
		}
		if may("agents.read") {
			out.Agents = &apitype.DashboardAgents{Summary: &apitype.AgentsSummary{}}
			if out.Agents.Section = f.inner(r, "/api/v1/summary/agents", out.Agents.Summary); !out.Agents.OK() {
				out.Agents.Summary = nil
			}
		}
		if may("policy.read") {
			out.Coverage = f.dashCoverage(r)
		}
		if may("drift.read") {
			var dv apitype.DriftView
			out.Drift = &apitype.DashboardDrift{Section: f.inner(r, "/api/v1/probe/drift?limit="+strconv.Itoa(apitype.DashboardDriftEvents), &dv), Events: dv.Events}
		}
		if may("audit.read") {
			out.Audit = f.dashAudit()
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// inner asks the fake's own route path with r's credentials and decodes
// its answer into v; the section says how it went.
func (f *Fake) inner(r *http.Request, path string, v any) apitype.Section {
	in := httptest.NewRequestWithContext(r.Context(), http.MethodGet, path, nil)
	in.Header = r.Header.Clone()
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, in)
	if rec.Code != http.StatusOK {
		var e apitype.Error
		_ = json.Unmarshal(rec.Body.Bytes(), &e) // a body that is not an error says nothing more
		return apitype.Section{Status: rec.Code, Error: e.Error}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		return apitype.Section{Status: http.StatusInternalServerError, Error: "decoding " + path + ": " + err.Error()}
	}
	return apitype.Section{Status: http.StatusOK}
}

// reportAudit is the part of the report that says where the Lynis audit
// is.
type reportAudit struct {
	Header struct {
		LynisAudit struct {
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"lynis_audit"`
	} `json:"header"`
	Addenda []struct {
		Kind   string `json:"kind"`
		Status string `json:"status"`
		Error  string `json:"error"`
		Lynis  *struct {
			Version  string   `json:"version"`
			Index    int      `json:"index"`
			Warnings []string `json:"warnings"`
		} `json:"lynis"`
	} `json:"addenda"`
}

func (f *Fake) dashReport(r *http.Request) *apitype.DashboardReport {
	var rv apitype.ReportView
	out := &apitype.DashboardReport{Section: f.inner(r, "/api/v1/report", &rv)}
	if !out.OK() {
		return out
	}
	out.Summary, out.Verification = rv.Summary, rv.Verification.Status
	var ra reportAudit
	if json.Unmarshal(rv.Report, &ra) != nil {
		return out
	}
	la := &apitype.LynisAuditState{Status: "pending"}
	if ra.Header.LynisAudit.Status == "skipped" {
		la = &apitype.LynisAuditState{Status: "skipped", Reason: ra.Header.LynisAudit.Reason}
	}
	for _, a := range ra.Addenda {
		if a.Kind == "lynis" {
			la = &apitype.LynisAuditState{Status: a.Status, Reason: a.Error}
			if a.Lynis != nil {
				la.Version, la.Index, la.Warnings = a.Lynis.Version, a.Lynis.Index, a.Lynis.Warnings
			}
		}
	}
	out.LynisAudit = la
	return out
}

// probeHost is the part of a probe's result the dashboard shows.
type probeHost struct {
	Host struct {
		CPU struct {
			Model   string `json:"model"`
			Cores   int    `json:"cores"`
			Threads int    `json:"threads"`
		} `json:"cpu"`
		Memory struct {
			TotalBytes uint64 `json:"total_bytes"`
		} `json:"memory"`
	} `json:"host"`
	GPU struct {
		Summary string            `json:"summary"`
		Devices []json.RawMessage `json:"devices"`
	} `json:"gpu"`
}

func (f *Fake) dashProbe(r *http.Request) *apitype.DashboardProbe {
	var pv apitype.ProbeView
	out := &apitype.DashboardProbe{Section: f.inner(r, "/api/v1/probe", &pv)}
	if !out.OK() {
		return out
	}
	var h probeHost
	_ = json.Unmarshal(pv.Result, &h) // what does not decode is not shown
	out.ProbeID, out.At, out.Verdict = pv.ProbeID, pv.At, &pv.Verdict
	out.CPU, out.Cores, out.Threads, out.MemoryBytes = h.Host.CPU.Model, h.Host.CPU.Cores, h.Host.CPU.Threads, h.Host.Memory.TotalBytes
	out.GPU, out.GPUCount = h.GPU.Summary, len(h.GPU.Devices)
	return out
}

func (f *Fake) dashCoverage(r *http.Request) *apitype.DashboardCoverage {
	var cv apitype.CoverageView
	out := &apitype.DashboardCoverage{Section: f.inner(r, "/api/v1/coverage", &cv)}
	if out.OK() {
		cv.Agents = []apitype.AgentPolicyStatus{}
		out.Coverage = &cv
	}
	return out
}

// dashAudit is the newest records of the fake's audit log, newest first.
func (f *Fake) dashAudit() *apitype.DashboardAudit {
	recs := f.Audit()
	out := &apitype.DashboardAudit{Section: apitype.Section{Status: http.StatusOK}, Records: []apitype.AuditRecord{}}
	for i := len(recs) - 1; i >= 0 && len(out.Records) < apitype.DashboardAuditRecords; i-- {
		out.Records = append(out.Records, recs[i])
	}
	return out
}
