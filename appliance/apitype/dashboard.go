package apitype

import "time"

// How many of the newest records the dashboard's lists carry.
const (
	DashboardDriftEvents  = 5
	DashboardAuditRecords = 8
)

// Dashboard is GET /api/v1/dashboard: every figure the console's
// dashboard shows, in one answer instead of one call per section (each
// call costs omertad a session check and the console a round trip).
//
// A section is absent when the caller's role may not take the action of
// the route its figures otherwise come from (reports.read for Report,
// probe.read for Probe, agents.read for Agents, policy.read for Coverage,
// drift.read for Drift, audit.read for Audit). A section present says in
// its Status what that route would have answered: 200 with the figures,
// 404 when there is nothing yet (no report before first boot ends, no
// probe, a domain omertad does not serve), another code with Error when
// making it failed. One failed section spoils no other.
type Dashboard struct {
	Report   *DashboardReport   `json:"report,omitempty"`
	Probe    *DashboardProbe    `json:"probe,omitempty"`
	Agents   *DashboardAgents   `json:"agents,omitempty"`
	Coverage *DashboardCoverage `json:"coverage,omitempty"`
	Drift    *DashboardDrift    `json:"drift,omitempty"`
	Audit    *DashboardAudit    `json:"audit,omitempty"`
}

// Section is how one section of the dashboard came out.
type Section struct {
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// OK reports whether the section holds its figures.
func (s Section) OK() bool { return s.Status == 200 }

// DashboardReport is the first-boot report's digest: its summary (absent
// when the report did not decode), its verification status (one of the
// Report* statuses) and where the Lynis audit is.
type DashboardReport struct {
	Section
	Summary      *ReportSummary `json:"summary,omitempty"`
	Verification string         `json:"verification,omitempty"`
	// LynisAudit is absent when the report did not decode.
	LynisAudit *LynisAuditState `json:"lynis_audit,omitempty"`
}

// LynisAuditState mirrors report.AuditState: Status is "skipped",
// "pending" (deferred, not sealed into the report yet), "done" or
// "failed"; Reason says why it was skipped or failed.
type LynisAuditState struct {
	Status   string   `json:"status"`
	Reason   string   `json:"reason,omitempty"`
	Version  string   `json:"version,omitempty"`
	Index    int      `json:"index,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// DashboardProbe is the hardware summary and the verdict of the latest
// probe (GET /probe without its raw result).
type DashboardProbe struct {
	Section
	ProbeID     int64     `json:"probe_id,omitempty"`
	At          time.Time `json:"at,omitzero"`
	Verdict     *Verdict  `json:"verdict,omitempty"`
	CPU         string    `json:"cpu,omitempty"`
	Cores       int       `json:"cores,omitempty"`
	Threads     int       `json:"threads,omitempty"`
	MemoryBytes uint64    `json:"memory_bytes,omitempty"`
	GPU         string    `json:"gpu,omitempty"`
	GPUCount    int       `json:"gpu_count,omitempty"`
}

// DashboardAgents is GET /summary/agents's answer, counted over the
// agents the caller may see. For a caller restricted to some tenants,
// Scoped is set and the deploy KPI is left out (its Deploys7d zero):
// deploys are recorded for the appliance, not per tenant, and the
// others' figures are not the caller's to see.
type DashboardAgents struct {
	Section
	Summary *AgentsSummary `json:"summary,omitempty"`
	Scoped  bool           `json:"scoped,omitempty"`
}

// DashboardCoverage is GET /coverage's answer without its per-agent list
// (Agents is empty; NonCompliant is kept).
type DashboardCoverage struct {
	Section
	Coverage *CoverageView `json:"coverage,omitempty"`
}

// DashboardDrift is the newest DashboardDriftEvents drift events, newest
// first.
type DashboardDrift struct {
	Section
	Events []DriftEvent `json:"events,omitempty"`
}

// DashboardAudit is the newest DashboardAuditRecords audit records,
// newest first.
type DashboardAudit struct {
	Section
	Records []AuditRecord `json:"records,omitempty"`
}
