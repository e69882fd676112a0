package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// Actions (auth's names) that decide what a page shows.
const (
	actAgentsRead   = "agents.read"
	actAgentsWrite  = "agents.write"
	actAgentsLogs   = "agents.logs"
	actTasksRead    = "tasks.read"
	actTasksWrite   = "tasks.write"
	actCatalogRead  = "catalog.read"
	actSecretsWrite = "secrets.write"
	actUsersRead    = "users.read"
	actUsersWrite   = "users.write"
	actTokensRead   = "tokens.read"
	actTokensWrite  = "tokens.write"
	actAuditRead    = "audit.read"
	actReportsRead  = "reports.read"
	actProbeRead    = "probe.read"
	actDriftRead    = "drift.read"
	actEventsRead   = "events.read"
)

// part is one section of a page whose data comes from its own call: a
// failed call spoils that section only, and says so there.
type part[T any] struct {
	V T
	// Missing: not yet there (404), e.g. no report before first boot ends.
	Missing bool
	Err     string
	// Status is omertad's answer when the call failed.
	Status int
	// Hidden: the role may not see it; nothing is rendered.
	Hidden bool
}

func fill[T any](p *part[T], v T, err error) {
	switch {
	case err == nil:
		p.V = v
	case statusOf(err) == http.StatusNotFound:
		p.Missing = true
	default:
		p.Status = statusOf(err)
		_, p.Err = explain(err)
	}
}

type dashboardData struct {
	Report part[reportSummary]
	Probe  part[probeSummary]
	// Agents holds the agents by state and the deploy success KPI, both
	// from the dashboard's agents section (or GET /api/v1/summary/agents).
	Agents part[agentCounts]
	// Policy holds the policy coverage and manifests-validated KPIs,
	// both from its coverage section (or GET /api/v1/coverage).
	Policy part[coverageKPI]
	Drift  part[[]apitype.DriftEvent]
	Audit  part[[]apitype.AuditRecord]
}

// How many records of each list the dashboard shows: as many as
// omertad's one answer carries.
const (
	dashboardDrift = apitype.DashboardDriftEvents
	dashboardAudit = apitype.DashboardAuditRecords
)

// dashboard renders the dashboard from omertad's one answer of GET
// /api/v1/dashboard. An omertad without that route (404) is asked section
// by section instead, as the console did before it (dashboardCalls): the
// console and omertad ship in one binary, so that is only for a console
// run against an older omertad during development.
func (s *Server) dashboard(c *fiber.Ctx) error {
	w, a, ctx := who(c), api(c), c.UserContext()
	if fw, ok := a.(Forwarder); ok {
		return s.dashboardRaw(c, fw, w) // dashmemo.go
	}
	var d dashboardData
	dash, err := a.Dashboard(ctx)
	switch {
	case err == nil:
		d = dashboardFrom(w, dash)
	case statusOf(err) == http.StatusNotFound:
		d = s.dashboardCalls(ctx, w, a)
	default:
		d = dashboardFailed(w, err)
	}
	return s.dashboardPage(c, w, d)
}

// dashboardPage renders d, or sends the person to sign in when omertad
// said the session has ended.
func (s *Server) dashboardPage(c *fiber.Ctx, w *apitype.Whoami, d dashboardData) error {
	if dashboardUnauthorized(d) {
		clearSessionCookie(c)
		return s.toLogin(c)
	}
	return s.render(c, fiber.StatusOK, "dashboard", dashboardView(w, d))
}

func dashboardView(w *apitype.Whoami, d dashboardData) *page {
	return &page{Title: "Dashboard", Nav: "dashboard", Who: w, CSRF: w.CSRFToken, Live: "dashboard", D: d}
}

// dashboardUnauthorized: a section says the session has ended.
func dashboardUnauthorized(d dashboardData) bool {
	return anyUnauthorized(d.Report.Status, d.Probe.Status, d.Agents.Status, d.Policy.Status, d.Drift.Status, d.Audit.Status)
}

// dashboardCalls makes the dashboard with one call per section.
func (s *Server) dashboardCalls(ctx context.Context, w *apitype.Whoami, a API) dashboardData {
	var d dashboardData
	var wg sync.WaitGroup
	run := func(allowed bool, hidden *bool, f func()) {
		if !allowed {
			*hidden = true
			return
		}
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	run(can(w, actReportsRead), &d.Report.Hidden, func() {
		r, err := s.reports.get(ctx, a)
		fill(&d.Report, r, err)
	})
	run(can(w, actProbeRead), &d.Probe.Hidden, func() {
		p, err := s.probes.get(ctx, a)
		fill(&d.Probe, p, err)
	})
	run(can(w, actAgentsRead), &d.Agents.Hidden, func() {
		sum, err := a.AgentsSummary(ctx)
		fill(&d.Agents, summaryCounts(sum), err)
	})
	run(can(w, actPolicyRead), &d.Policy.Hidden, func() {
		cov, err := a.Coverage(ctx)
		fill(&d.Policy, coverageKPIOf(cov), err)
		// An omertad that serves no policy routes has no such figures.
		d.Policy.Hidden = d.Policy.Missing
	})
	run(can(w, actDriftRead), &d.Drift.Hidden, func() {
		v, err := a.Drift(ctx, dashboardDrift)
		fill(&d.Drift, v.Events, err)
	})
	run(can(w, actAuditRead), &d.Audit.Hidden, func() {
		recs, err := s.recentAudit(ctx, a, dashboardAudit)
		fill(&d.Audit, recs, err)
	})
	wg.Wait()
	return d
}

// dashboardFailed is every section the role may see saying why the one
// call failed.
func dashboardFailed(w *apitype.Whoami, err error) dashboardData {
	var d dashboardData
	failed := func(allowed bool, hidden *bool, fillErr func()) {
		if *hidden = !allowed; allowed {
			fillErr()
		}
	}
	failed(can(w, actReportsRead), &d.Report.Hidden, func() { fill(&d.Report, reportSummary{}, err) })
	failed(can(w, actProbeRead), &d.Probe.Hidden, func() { fill(&d.Probe, probeSummary{}, err) })
	failed(can(w, actAgentsRead), &d.Agents.Hidden, func() { fill(&d.Agents, agentCounts{}, err) })
	failed(can(w, actPolicyRead), &d.Policy.Hidden, func() { fill(&d.Policy, coverageKPI{}, err) })
	failed(can(w, actDriftRead), &d.Drift.Hidden, func() { fill(&d.Drift, nil, err) })
	failed(can(w, actAuditRead), &d.Audit.Hidden, func() { fill(&d.Audit, nil, err) })
	return d
}

// dashboardFrom is the page's view of omertad's answer. A section is
// shown when the role may read it and omertad sent it; each says what
// its own status was.
func dashboardFrom(w *apitype.Whoami, dash apitype.Dashboard) dashboardData {
	var d dashboardData
	if r := dash.Report; shown(&d.Report, can(w, actReportsRead) && r != nil) && sectionOK(&d.Report, r.Section) {
		d.Report.V = reportDigest(r)
	}
	if p := dash.Probe; shown(&d.Probe, can(w, actProbeRead) && p != nil) && sectionOK(&d.Probe, p.Section) {
		d.Probe.V = probeDigest(p)
	}
	if ag := dash.Agents; shown(&d.Agents, can(w, actAgentsRead) && ag != nil) && sectionOK(&d.Agents, ag.Section) && ag.Summary != nil {
		d.Agents.V = summaryCounts(*ag.Summary)
		d.Agents.V.Scoped = ag.Scoped
	}
	if cv := dash.Coverage; shown(&d.Policy, can(w, actPolicyRead) && cv != nil) && sectionOK(&d.Policy, cv.Section) && cv.Coverage != nil {
		d.Policy.V = coverageKPIOf(*cv.Coverage)
	}
	d.Policy.Hidden = d.Policy.Hidden || d.Policy.Missing // no policy service, no such figures
	if dr := dash.Drift; shown(&d.Drift, can(w, actDriftRead) && dr != nil) && sectionOK(&d.Drift, dr.Section) {
		d.Drift.V = dr.Events
	}
	if au := dash.Audit; shown(&d.Audit, can(w, actAuditRead) && au != nil) && sectionOK(&d.Audit, au.Section) {
		d.Audit.V = au.Records
	}
	return d
}

// shown hides p unless it is to be shown, and says which.
func shown[T any](p *part[T], show bool) bool {
	p.Hidden = !show
	return show
}

// sectionOK sets p from a section's status as fill does from a call's
// error, and reports whether the section holds its figures.
func sectionOK[T any](p *part[T], sec apitype.Section) bool {
	switch {
	case sec.OK():
		return true
	case sec.Status == http.StatusNotFound:
		p.Missing = true
	default:
		p.Status = sec.Status
		_, p.Err = explain(&apiclient.Error{Method: http.MethodGet, Path: "/api/v1/dashboard", Status: sec.Status, Message: sec.Error})
	}
	return false
}

// reportDigest is the report's summary as the dashboard shows it.
func reportDigest(r *apitype.DashboardReport) reportSummary {
	out := reportSummary{Verification: r.Verification}
	if sum := r.Summary; sum != nil {
		out.Hostname, out.Profile, out.FinishedAt, out.ProbeStatus, out.Summary = sum.Hostname, sum.Profile, sum.FinishedAt, sum.ProbeStatus, sum.Outcomes
	}
	if la := r.LynisAudit; la != nil {
		state := la.Status
		if state == "pending" { // deferred until after first boot, not sealed yet
			state = "running"
		}
		out.Audit = auditView{State: state, Reason: la.Reason, Version: la.Version, Index: la.Index, Warnings: la.Warnings}
	}
	return out
}

// probeDigest is the hardware summary as the dashboard shows it.
func probeDigest(p *apitype.DashboardProbe) probeSummary {
	out := probeSummary{At: p.At, CPU: p.CPU, Cores: p.Cores, Threads: p.Threads, Memory: p.MemoryBytes, GPU: p.GPU, GPUCount: p.GPUCount}
	if v := p.Verdict; v != nil {
		out.Verdict = *v
		for _, ch := range v.Checks {
			if ch.Status != "pass" {
				out.Failing = append(out.Failing, ch)
			}
		}
	}
	return out
}

// anyUnauthorized: a session that ended between whoami and the data
// calls shows as every section saying so; send the person to sign in.
func anyUnauthorized(statuses ...int) bool {
	for _, st := range statuses {
		if st == http.StatusUnauthorized {
			return true
		}
	}
	return false
}

// recentAudit is the last n records of the audit log, newest first. Once
// the console has seen the log's head, one call reads the n records up to
// it and whatever came after: that is the end of the log when it answers
// with fewer than a full page, starting right after what was asked for (a
// log that no longer holds the head seen, a new database, does not).
// Otherwise the head is found first (auditHead).
func (s *Server) recentAudit(ctx context.Context, a API, n int) ([]apitype.AuditRecord, error) {
	if seen := s.auditSeen.Load(); seen > 0 {
		from := max(0, seen-int64(n))
		recs, err := a.Audit(ctx, from, apitype.MaxListLimit)
		if err != nil {
			return nil, err
		}
		if k := len(recs); k > 0 && k < apitype.MaxListLimit && recs[0].Seq == from+1 && recs[k-1].Seq >= seen {
			s.auditSeen.Store(recs[k-1].Seq)
			recs = recs[max(0, k-n):]
			slices.Reverse(recs)
			return recs, nil
		}
	}
	head, err := s.auditHead(ctx, a)
	if err != nil {
		return nil, err
	}
	recs, err := a.Audit(ctx, max(0, head-int64(n)), n)
	if err != nil {
		return nil, err
	}
	slices.Reverse(recs)
	return recs, nil
}

// auditHeadPages bounds the walk to the end of the log.
const auditHeadPages = 8

// auditHead is the sequence number of the newest audit record. The
// status's head is the one verified when omertad started; records written
// since are walked over, a page of a thousand at a time, from the newest
// head the console has seen (a number, not a record: each caller still
// reads the records with its own session).
func (s *Server) auditHead(ctx context.Context, a API) (int64, error) {
	st, err := a.AuditStatus(ctx)
	if err != nil {
		return 0, err
	}
	head := st.HeadSeq
	if seen := s.auditSeen.Load(); seen > head {
		// A head beyond what the log now holds (a new database) is
		// forgotten.
		if recs, err := a.Audit(ctx, seen-1, 1); err == nil && len(recs) == 1 {
			head = seen
		}
	}
	defer func() { s.auditSeen.Store(head) }()
	for range auditHeadPages {
		recs, err := a.Audit(ctx, head, apitype.MaxListLimit)
		if err != nil {
			return 0, err
		}
		if len(recs) == 0 {
			break
		}
		head = recs[len(recs)-1].Seq
		if len(recs) < apitype.MaxListLimit {
			break
		}
	}
	return head, nil
}

// reportSummary is the dashboard's view of the first-boot report.
type reportSummary struct {
	Hostname     string
	Profile      string
	FinishedAt   time.Time
	ProbeStatus  string
	Summary      map[string]int
	Verification string
	Audit        auditView
}

type reportHeader struct {
	Header struct {
		Hostname   string         `json:"hostname"`
		Profile    string         `json:"profile"`
		FinishedAt time.Time      `json:"finished_at"`
		Summary    map[string]int `json:"summary"`
		Probe      struct {
			Status string `json:"status"`
		} `json:"probe"`
	} `json:"header"`
}

func summarizeReport(r apitype.ReportView) reportSummary {
	var h reportHeader
	_ = json.Unmarshal(r.Report, &h) // a report that is not JSON shows what omertad summarized, if anything
	s := reportSummary{
		Hostname: h.Header.Hostname, Profile: h.Header.Profile, FinishedAt: h.Header.FinishedAt,
		ProbeStatus: h.Header.Probe.Status, Summary: h.Header.Summary, Verification: r.Verification.Status,
	}
	if sum := r.Summary; sum != nil {
		s.Hostname, s.Profile, s.FinishedAt, s.ProbeStatus, s.Summary = sum.Hostname, sum.Profile, sum.FinishedAt, sum.ProbeStatus, sum.Outcomes
	}
	var a reportAuditJSON
	_ = json.Unmarshal(r.Report, &a) // as above: what does not decode says nothing of the audit
	s.Audit = a.audit()
	return s
}

// probeSummary is the hardware and GPU summary with the verdict.
type probeSummary struct {
	At       time.Time
	Verdict  apitype.Verdict
	Failing  []apitype.Check
	CPU      string
	Cores    int
	Threads  int
	Memory   uint64
	GPU      string
	GPUCount int
}

type probeResult struct {
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

func summarizeProbe(p apitype.ProbeView) probeSummary {
	var r probeResult
	_ = json.Unmarshal(p.Result, &r)
	s := probeSummary{
		At: p.At, Verdict: p.Verdict, CPU: r.Host.CPU.Model, Cores: r.Host.CPU.Cores, Threads: r.Host.CPU.Threads,
		Memory: r.Host.Memory.TotalBytes, GPU: r.GPU.Summary, GPUCount: len(r.GPU.Devices),
	}
	for _, ch := range p.Verdict.Checks {
		if ch.Status != "pass" {
			s.Failing = append(s.Failing, ch)
		}
	}
	return s
}

// agentCounts are the agents by state, and the deploy success KPI.
type agentCounts struct {
	Total   int
	ByState []stateCount
	Deploys deployKPI
	// Scoped: the caller sees only some tenants; the counts are theirs
	// and omertad sends no deploy KPI (it is the appliance's).
	Scoped bool
}

type stateCount struct {
	State string
	Count int
}

// deployKPI is the deploy success rate over 7 days against its target,
// in percent.
type deployKPI struct {
	Attempted, Succeeded int
	// HasRate is false when nothing was deployed: no rate, not 100 %.
	HasRate bool
	Rate    float64
	Target  float64
	Met     bool
}

func summaryCounts(s apitype.AgentsSummary) agentCounts {
	out := agentCounts{Total: s.Total}
	for st, n := range s.ByState {
		out.ByState = append(out.ByState, stateCount{State: st, Count: n})
	}
	sort.Slice(out.ByState, func(i, j int) bool { return out.ByState[i].State < out.ByState[j].State })
	target := s.Target
	if !(target > 0 && target <= 1) { // an omertad that sent none, or nonsense
		target = apitype.DeploySuccessTarget
	}
	d := s.Deploys7d
	out.Deploys = deployKPI{Attempted: d.Attempted, Succeeded: d.Succeeded, Target: target * 100}
	if d.Rate != nil && *d.Rate >= 0 && *d.Rate <= 1 {
		out.Deploys.HasRate, out.Deploys.Rate = true, *d.Rate*100
		out.Deploys.Met = *d.Rate >= target
	}
	return out
}
