package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
	"github.com/omertaos/omertaos/firstboot/report"
)

// GET /dashboard answers, in one call, what the console's dashboard used
// to ask six routes for: each of those calls cost omertad a session check
// and its own answer, and the console a round trip, on every page load.
// Each section is made from the same sources as its own route and is
// gated by that route's action, so that the one call shows a role no more
// than the six did.
//
// Sections made from the database alone are kept, encoded, until the
// database changes (SQLite's data_version, as GET /agents and GET /probe
// are), for callers that see every tenant. A caller restricted to some
// tenants gets its agents and coverage figures counted afresh over its
// own tenants, never the kept ones.

// dashboardRoutes serves GET /dashboard.
func (s *Server) dashboardRoutes(r fiber.Router) {
	st := &dashboardState{}
	r.Get("/dashboard", func(c *fiber.Ctx) error { return s.dashboard(c, st) })
}

// dashboardState is what the dashboard keeps between calls.
type dashboardState struct {
	agents, probe, coverage, drift, audit sectionCache
	// report is the digest of the report cache's entry it was made from.
	reportMu    sync.Mutex
	reportEntry *reportEntry
	reportBody  []byte
	// auditHead is the newest audit sequence number seen, where the
	// next read of the newest records starts from.
	auditHead atomic.Int64
}

// sectionKey is what a kept section was made from: the database's
// version, and for the agents section the minute its 7-day window ends.
type sectionKey struct{ ver, minute int64 }

// sectionCache keeps one encoded section. Only one caller makes it at a
// time: a burst after a change waits for one answer.
type sectionCache struct {
	mu   sync.Mutex
	ok   bool
	key  sectionKey
	body []byte
}

// get is the section of key, made by build when the one kept is of
// another key. A section that failed on omertad's side (5xx) is not kept.
func (sc *sectionCache) get(key sectionKey, build func() ([]byte, int)) []byte {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.ok && sc.key == key {
		return sc.body
	}
	b, status := build()
	if status < 500 {
		sc.ok, sc.key, sc.body = true, key, b
	}
	return b
}

// dashboardAnswer is apitype.Dashboard with its sections encoded, each
// by json.Marshal; joined as they are, since encoding them again would
// only scan kept bytes once more. The members are collected first and
// copied once into an answer of their exact size.
type dashboardAnswer struct {
	names    []string
	sections [][]byte
}

// add appends one member, unless the section is absent.
func (a *dashboardAnswer) add(name string, section []byte) {
	if section == nil {
		return
	}
	a.names, a.sections = append(a.names, name), append(a.sections, section)
}

func (a *dashboardAnswer) bytes() []byte {
	if len(a.names) == 0 {
		return []byte("{}")
	}
	size := 1
	for i := range a.names {
		size += len(a.names[i]) + len(a.sections[i]) + 4 // "name": and , or }
	}
	buf := make([]byte, 0, size)
	for i := range a.names {
		sep := byte(',')
		if i == 0 {
			sep = '{'
		}
		buf = append(append(append(append(buf, sep, '"'), a.names[i]...), '"', ':'), a.sections[i]...)
	}
	return append(buf, '}')
}

// dashCall is one GET /dashboard: the caller, its scope and the
// database's version, read once for every section.
type dashCall struct {
	s     *Server
	st    *dashboardState
	ctx   context.Context
	role  auth.Role
	scope policy.Scope
	// restricted: the caller sees only some tenants.
	restricted bool
	ver        int64
	verOK      bool
}

func (s *Server) dashboard(c *fiber.Ctx, st *dashboardState) error {
	sc, restricted, err := s.restricted(c)
	if err != nil {
		return s.fail(c, err)
	}
	ctx := c.UserContext()
	d := &dashCall{s: s, st: st, ctx: ctx, role: principalOf(c).Role, scope: sc, restricted: restricted}
	d.ver, d.verOK = s.dbv.get(ctx)
	out := dashboardAnswer{names: make([]string, 0, 6), sections: make([][]byte, 0, 6)}
	out.add("report", d.section(auth.ActionReportsRead, d.report))
	out.add("probe", d.section(auth.ActionProbeRead, d.probe))
	out.add("agents", d.section(auth.ActionAgentsRead, d.agents))
	out.add("coverage", d.section(auth.ActionPolicyRead, d.coverage))
	out.add("drift", d.section(auth.ActionDriftRead, d.drift))
	out.add("audit", d.section(auth.ActionAuditRead, d.audit))
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(out.bytes())
}

// section is one section when the caller's role may take action, nil
// otherwise.
func (d *dashCall) section(action string, build func() []byte) []byte {
	if !auth.Allowed(d.role, action) {
		return nil
	}
	return build()
}

// kept is build's section, kept in sc until the database changes when
// pure says it is made from the database alone.
func (d *dashCall) kept(sc *sectionCache, pure bool, minute int64, build func() ([]byte, int)) []byte {
	if !pure || !d.verOK {
		b, _ := build()
		return b
	}
	return sc.get(sectionKey{ver: d.ver, minute: minute}, build)
}

// encode is a section's answer and its status.
func encode(v any, sec apitype.Section) ([]byte, int) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(apitype.Section{Status: http.StatusInternalServerError, Error: "encoding the section: " + err.Error()})
		return b, http.StatusInternalServerError
	}
	return b, sec.Status
}

var sectionOK = apitype.Section{Status: http.StatusOK}

// sectionOf is the status and message a route would have answered err
// with.
func (s *Server) sectionOf(what string, err error) apitype.Section {
	code := codeOf(err)
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code = fe.Code
	}
	if code == 0 {
		code = http.StatusInternalServerError
	}
	if code >= 500 {
		s.log.Warn("making a dashboard section", "section", what, "err", err)
	}
	return apitype.Section{Status: code, Error: terminal.Escape(err.Error())}
}

// notServed is a section of a domain omertad runs without.
func notServed(what string) apitype.Section {
	return apitype.Section{Status: http.StatusNotFound, Error: "omertad serves no " + what}
}

// --- the sections ------------------------------------------------------------

// report is the report's digest, made once per verification the report
// cache holds (the cache itself checks the files on every call).
func (d *dashCall) report() []byte {
	s := d.s
	if s.deps.Report.Root.Dir() == "" {
		sec := notServed("first-boot report")
		b, _ := encode(apitype.DashboardReport{Section: sec}, sec)
		return b
	}
	e, err := s.verifiedReport()
	if err != nil {
		sec := s.sectionOf("report", err)
		b, _ := encode(apitype.DashboardReport{Section: sec}, sec)
		return b
	}
	st := d.st
	st.reportMu.Lock()
	defer st.reportMu.Unlock()
	if st.reportEntry != e {
		st.reportBody, _ = encode(reportDigest(e), sectionOK)
		st.reportEntry = e
	}
	return st.reportBody
}

func reportDigest(e *reportEntry) apitype.DashboardReport {
	out := apitype.DashboardReport{Section: sectionOK, Verification: verificationView(e.v).Status}
	if r := e.v.Report; r != nil {
		out.Summary = reportSummary(r)
		a := r.AuditState()
		if a.Status == report.AuditPending && r.Header.LynisAudit.Status != report.AuditDeferred {
			return out // a report that says nothing of the audit
		}
		la := &apitype.LynisAuditState{Status: a.Status, Reason: a.Reason}
		if l := a.Lynis; l != nil {
			la.Version, la.Index, la.Warnings = l.Version, l.Index, l.Warnings
		}
		out.LynisAudit = la
	}
	return out
}

func (d *dashCall) probe() []byte {
	_, pure := d.s.deps.Probe.(*probe.Monitor)
	return d.kept(&d.st.probe, pure, 0, d.probeSection)
}

func (d *dashCall) probeSection() ([]byte, int) {
	if d.s.deps.Probe == nil {
		sec := notServed("hardware probe")
		return encode(apitype.DashboardProbe{Section: sec}, sec)
	}
	cur, err := d.s.deps.Probe.Current(d.ctx)
	if errors.Is(err, probe.ErrNoProbe) {
		sec := apitype.Section{Status: http.StatusNotFound, Error: err.Error()}
		return encode(apitype.DashboardProbe{Section: sec}, sec)
	}
	if err != nil {
		sec := d.s.sectionOf("probe", err)
		return encode(apitype.DashboardProbe{Section: sec}, sec)
	}
	return encode(probeDigest(cur), sectionOK)
}

func probeDigest(cur probe.Current) apitype.DashboardProbe {
	v := verdictView(cur.Verdict)
	out := apitype.DashboardProbe{Section: sectionOK, Verdict: &v}
	if p := cur.Probe; p != nil {
		out.ProbeID, out.At = p.ID, p.At
		if r := p.Result; r != nil {
			cpu := r.Host.CPU
			out.CPU, out.Cores, out.Threads = cpu.Model, cpu.Cores, cpu.Threads
			out.MemoryBytes, out.GPU, out.GPUCount = r.Host.Memory.TotalBytes, r.GPU.Summary, len(r.GPU.Devices)
		}
	}
	return out
}

func (d *dashCall) agents() []byte {
	svc := d.s.deps.Agents.Service
	if svc == nil {
		sec := notServed("agents")
		b, _ := encode(apitype.DashboardAgents{Section: sec}, sec)
		return b
	}
	if d.restricted {
		b, _ := d.scopedAgents()
		return b
	}
	_, pure := svc.(*agents.Service)
	// The 7-day window ends at the current minute, so that a kept
	// section is at most a minute behind a window sliding past a deploy.
	now := time.Now().Truncate(time.Minute)
	return d.kept(&d.st.agents, pure, now.Unix(), func() ([]byte, int) { return d.agentsSection(now) })
}

func (d *dashCall) agentsSection(now time.Time) ([]byte, int) {
	svc := d.s.deps.Agents.Service
	counts, err := svc.CountByState(d.ctx)
	if err != nil {
		sec := d.s.sectionOf("agents", err)
		return encode(apitype.DashboardAgents{Section: sec}, sec)
	}
	st, err := svc.DeployStats(d.ctx, now.Add(-apitype.DeployWindow))
	if err != nil {
		sec := d.s.sectionOf("agents", err)
		return encode(apitype.DashboardAgents{Section: sec}, sec)
	}
	sum := summaryView(counts, st)
	return encode(apitype.DashboardAgents{Section: sectionOK, Summary: &sum}, sectionOK)
}

// scopedAgents counts the agents of the caller's tenants by state. The
// deploy KPI is left out: deploys are recorded for the appliance, and the
// other tenants' are not the caller's to count.
func (d *dashCall) scopedAgents() ([]byte, int) {
	as, err := d.s.deps.Agents.Service.List(d.ctx)
	if err != nil {
		sec := d.s.sectionOf("agents", err)
		return encode(apitype.DashboardAgents{Section: sec}, sec)
	}
	counts := map[agents.State]int{}
	for i := range as {
		if d.scope.Sees(as[i].Tenant) {
			counts[as[i].Status.State]++
		}
	}
	sum := summaryView(counts, agents.DeployStats{})
	return encode(apitype.DashboardAgents{Section: sectionOK, Summary: &sum, Scoped: true}, sectionOK)
}

func (d *dashCall) coverage() []byte {
	s := d.s
	_, polPure := s.deps.Policy.(*policy.Service)
	_, agPure := s.deps.Agents.Service.(*agents.Service)
	pure := polPure && (agPure || s.deps.Agents.Service == nil) && !d.restricted
	return d.kept(&d.st.coverage, pure, 0, d.coverageSection)
}

func (d *dashCall) coverageSection() ([]byte, int) {
	s := d.s
	if s.deps.Policy == nil {
		sec := notServed("policies")
		return encode(apitype.DashboardCoverage{Section: sec}, sec)
	}
	cov, err := s.deps.Policy.Coverage(d.ctx)
	if err != nil {
		sec := s.sectionOf("coverage", err)
		return encode(apitype.DashboardCoverage{Section: sec}, sec)
	}
	out := coverageView(cov, d.scope)
	out.Agents = []apitype.AgentPolicyStatus{} // the dashboard shows the figures, not every agent
	if s.deps.Agents.Service != nil {
		m, err := s.manifestStats(d.ctx, d.scope)
		if err != nil {
			sec := s.sectionOf("coverage", err)
			return encode(apitype.DashboardCoverage{Section: sec}, sec)
		}
		out.Manifests = &m
	}
	return encode(apitype.DashboardCoverage{Section: sectionOK, Coverage: &out}, sectionOK)
}

func (d *dashCall) drift() []byte {
	_, pure := d.s.deps.Probe.(*probe.Monitor)
	return d.kept(&d.st.drift, pure, 0, d.driftSection)
}

func (d *dashCall) driftSection() ([]byte, int) {
	if d.s.deps.Probe == nil {
		sec := notServed("hardware probe")
		return encode(apitype.DashboardDrift{Section: sec}, sec)
	}
	ev, err := d.s.deps.Probe.Drift(d.ctx, apitype.DashboardDriftEvents)
	if err != nil {
		sec := d.s.sectionOf("drift", err)
		return encode(apitype.DashboardDrift{Section: sec}, sec)
	}
	out := apitype.DashboardDrift{Section: sectionOK, Events: make([]apitype.DriftEvent, 0, len(ev))}
	for _, e := range ev {
		out.Events = append(out.Events, driftView(e))
	}
	return encode(out, sectionOK)
}

func (d *dashCall) audit() []byte {
	return d.kept(&d.st.audit, true, 0, d.auditSection)
}

func (d *dashCall) auditSection() ([]byte, int) {
	recs, err := d.s.recentAudit(d.ctx, d.st, apitype.DashboardAuditRecords)
	if err != nil {
		sec := d.s.sectionOf("audit", err)
		return encode(apitype.DashboardAudit{Section: sec}, sec)
	}
	out := apitype.DashboardAudit{Section: sectionOK, Records: make([]apitype.AuditRecord, 0, len(recs))}
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		out.Records = append(out.Records, apitype.AuditRecord{Seq: r.Seq, At: r.At, Actor: r.Actor, Action: r.Action,
			Target: r.Target, Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash})
	}
	return encode(out, sectionOK)
}

// maxAuditPages bounds one walk to the end of the audit log, a thousand
// records a page.
const maxAuditPages = 16

// recentAudit is the last n records of the audit log, oldest first. The
// walk starts n records before the newest head seen (at first the one
// verified when omertad started) and reads on to the end of the log; a
// log longer than the walk's bound since then is caught up with over the
// next calls.
func (s *Server) recentAudit(ctx context.Context, st *dashboardState, n int) ([]store.AuditRecord, error) {
	head := st.auditHead.Load()
	if head == 0 && s.deps.AuditChain != nil {
		head = s.deps.AuditChain.HeadSeq
	}
	tail, err := s.auditFrom(ctx, max(0, head-int64(n)), n)
	if err == nil && len(tail) == 0 && head > 0 {
		// A head beyond the log (one that was not this database's):
		// start again from its beginning.
		tail, err = s.auditFrom(ctx, 0, n)
	}
	if err != nil {
		return nil, err
	}
	if k := len(tail); k > 0 {
		st.auditHead.Store(tail[k-1].Seq)
	}
	return tail, nil
}

// auditFrom reads the log after seq from, keeping the last n records.
func (s *Server) auditFrom(ctx context.Context, from int64, n int) ([]store.AuditRecord, error) {
	var tail []store.AuditRecord
	for range maxAuditPages {
		recs, err := s.deps.Store.AuditLog(ctx, from, apitype.MaxListLimit)
		if err != nil {
			return nil, err
		}
		tail = append(tail, recs...)
		if len(tail) > n {
			tail = append([]store.AuditRecord(nil), tail[len(tail)-n:]...)
		}
		if len(recs) < apitype.MaxListLimit {
			break
		}
		from = recs[len(recs)-1].Seq
	}
	return tail, nil
}
