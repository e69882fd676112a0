package apitype

import (
	"encoding/json"
	"time"
)

// This file holds the bodies of the policy routes: versioned policies,
// tenants and their quotas, operators' tenant scopes, admission decisions
// and the policy coverage KPI (docs/agents-api.md). They mirror
// appliance/policy's types as plain structs: the console, which decodes
// them, may not link the policy package (it links the store).

// Policy subject kinds: what a policy applies to.
const (
	SubjectAgent    = "agent"
	SubjectCategory = "category"
	SubjectTenant   = "tenant"
)

// Limits of the policy routes, shared by server and client.
const (
	// MaxPolicyDocument bounds a policy or tenant document's text.
	MaxPolicyDocument = 32 << 10
	// DecisionLimitDefault and DecisionLimitMax bound GET /decisions.
	DecisionLimitDefault = 50
	DecisionLimitMax     = 200
	// PolicyHistoryLimitDefault bounds GET .../history without ?limit.
	PolicyHistoryLimitDefault = 50
	// MaxScopeTenants bounds the tenants one user may be granted.
	MaxScopeTenants = 256
)

// PolicyCoverageTarget is the seed's target for policy coverage: at least
// 90 % of the deployed agents run under an explicit policy they pass.
const PolicyCoverageTarget = 0.9

// PolicySubject names what a policy applies to: Kind is SubjectAgent,
// SubjectCategory or SubjectTenant.
type PolicySubject struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// PolicyView is a policy's current version. Spec is the rules as JSON
// (appliance/policy's Spec); Document, in the answer for one policy only,
// is the whole document as JSON text, which PUT accepts back as it is.
type PolicyView struct {
	Subject     PolicySubject   `json:"subject"`
	Version     int64           `json:"version"`
	Description string          `json:"description,omitempty"`
	Spec        json.RawMessage `json:"spec"`
	Document    string          `json:"document,omitempty"`
	UpdatedAt   time.Time       `json:"updated_at"`
	UpdatedBy   string          `json:"updated_by"`
}

// PolicyList is GET /api/v1/policies. Profile is the profile whose
// defaults every policy layers over.
type PolicyList struct {
	Profile  string       `json:"profile"`
	Policies []PolicyView `json:"policies"`
}

// PolicyPut is PUT /api/v1/policies/{kind}/{name}: the policy document as
// YAML or JSON text (kind Policy; its subject must be the path's).
// IfVersion, or the If-Match header, refuses the change (409) unless the
// policy is at that version; 0 or absent checks nothing.
type PolicyPut struct {
	Document  string `json:"document"`
	IfVersion int64  `json:"if_version,omitempty"`
}

// PolicyRollback is POST /api/v1/policies/{kind}/{name}/rollback: a new
// version equal to Version. IfVersion is PolicyPut's.
type PolicyRollback struct {
	Version   int64 `json:"version"`
	IfVersion int64 `json:"if_version,omitempty"`
}

// PolicyChange answers a PUT or a rollback: the version now current, what
// made it (create, update, rollback), whether nothing changed, and the
// deployed agents the change made non-compliant, flagged at once.
type PolicyChange struct {
	Policy       PolicyView      `json:"policy"`
	Action       string          `json:"action"`
	Unchanged    bool            `json:"unchanged,omitempty"`
	NonCompliant []PolicyFinding `json:"non_compliant"`
}

// PolicyVersion is one entry of a policy's history; a deletion has no
// Spec. FromVersion is the version a rollback copied.
type PolicyVersion struct {
	Version     int64           `json:"version"`
	Action      string          `json:"action"`
	FromVersion int64           `json:"from_version,omitempty"`
	Description string          `json:"description,omitempty"`
	Spec        json.RawMessage `json:"spec,omitempty"`
	Actor       string          `json:"actor"`
	At          time.Time       `json:"at"`
}

// PolicyHistory is GET /api/v1/policies/{kind}/{name}/history, newest
// first.
type PolicyHistory struct {
	Subject  PolicySubject   `json:"subject"`
	Versions []PolicyVersion `json:"versions"`
}

// TenantQuotas bound a tenant's agents in all; a field absent is
// unbounded. Quantities are as manifests write them ("4", "500m", "16Gi").
type TenantQuotas struct {
	Agents         *int64   `json:"agents,omitempty"`
	CPU            string   `json:"cpu,omitempty"`
	Memory         string   `json:"memory,omitempty"`
	GPUs           *int64   `json:"gpus,omitempty"`
	VRAM           string   `json:"vram,omitempty"`
	TokensPerMonth *int64   `json:"tokens_per_month,omitempty"`
	USDPerMonth    *float64 `json:"usd_per_month,omitempty"`
}

// TenantUsage is what a tenant's deployed agents hold now.
type TenantUsage struct {
	Agents      int64  `json:"agents"`
	CPU         string `json:"cpu"`
	CPUMillis   int64  `json:"cpu_millis"`
	Memory      string `json:"memory"`
	MemoryBytes int64  `json:"memory_bytes"`
	GPUs        int64  `json:"gpus"`
	VRAMBytes   int64  `json:"vram_bytes"`
}

// TenantView is one tenant with its quotas and its usage.
type TenantView struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Quotas      TenantQuotas `json:"quotas"`
	Usage       TenantUsage  `json:"usage"`
	CreatedAt   time.Time    `json:"created_at"`
	UpdatedAt   time.Time    `json:"updated_at"`
	UpdatedBy   string       `json:"updated_by"`
}

// TenantList is GET /api/v1/tenants: the tenants the caller may see.
type TenantList struct {
	Tenants []TenantView `json:"tenants"`
}

// TenantPut is PUT /api/v1/tenants/{name}: the tenant document (kind
// Tenant) as YAML or JSON text; its name must be the path's.
type TenantPut struct {
	Document string `json:"document"`
}

// TenantChange answers PUT /api/v1/tenants/{name}.
type TenantChange struct {
	Tenant       TenantView      `json:"tenant"`
	Created      bool            `json:"created,omitempty"`
	Unchanged    bool            `json:"unchanged,omitempty"`
	NonCompliant []PolicyFinding `json:"non_compliant"`
}

// TenantScope is which tenants a user may see (GET and PUT
// /api/v1/users/{name}/tenants). Unrestricted sees every tenant;
// restricted sees only Tenants, and nothing of the others (404).
type TenantScope struct {
	User       string   `json:"user,omitempty"`
	Restricted bool     `json:"restricted"`
	Tenants    []string `json:"tenants"`
}

// TenantScopeSet is PUT /api/v1/users/{name}/tenants: restrict the user
// to Tenants (restricted true; an empty list is no tenant at all), or lift
// every restriction (restricted false, no tenants).
type TenantScopeSet struct {
	Restricted bool     `json:"restricted"`
	Tenants    []string `json:"tenants,omitempty"`
}

// PolicyDenial is one rule that refused.
type PolicyDenial struct {
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

// PolicyDecision is an admission's outcome: Rule is what decided
// ("policy:agent/foo@v3 max.memory", "quota:tenant/default agents"),
// Reason why, with the numbers; Denials every rule that refused; Applied
// the layers that applied, lowest first; Explicit whether a stored policy
// applied rather than only the profile's defaults.
type PolicyDecision struct {
	Allow    bool           `json:"allow"`
	Rule     string         `json:"rule,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Denials  []PolicyDenial `json:"denials,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
	Applied  []string       `json:"applied"`
	Explicit bool           `json:"explicit"`
}

// Denied is the body of a 403 answer to a deploy, patch or task that
// admission refused: the error, and the decision with its rule and
// numbers. A 403 without a decision is a role that may not.
type Denied struct {
	Error    string         `json:"error"`
	Decision PolicyDecision `json:"decision"`
}

// DecisionRecord is one recorded admission decision. Op is deploy, patch
// or check.
type DecisionRecord struct {
	ID       int64          `json:"id"`
	At       time.Time      `json:"at"`
	Actor    string         `json:"actor"`
	Op       string         `json:"op"`
	Agent    string         `json:"agent"`
	Tenant   string         `json:"tenant"`
	Decision PolicyDecision `json:"decision"`
}

// DecisionList is GET /api/v1/decisions, newest first.
type DecisionList struct {
	Decisions []DecisionRecord `json:"decisions"`
}

// PolicyFinding is a deployed agent that a change made non-compliant, or
// that fails the policies in force, and the decision that says why.
type PolicyFinding struct {
	Agent    string         `json:"agent"`
	Tenant   string         `json:"tenant"`
	Decision PolicyDecision `json:"decision"`
}

// AgentPolicyStatus is one deployed agent judged against the policies in
// force.
type AgentPolicyStatus struct {
	Agent    string   `json:"agent"`
	Tenant   string   `json:"tenant"`
	Explicit bool     `json:"explicit"`
	Allow    bool     `json:"allow"`
	Rule     string   `json:"rule,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Applied  []string `json:"applied"`
}

// ManifestStats is the manifests-validated KPI: of the deployed agents,
// how many have a stored manifest that passes the manifest checks as they
// stand now. Ratio is null when no agent is deployed.
type ManifestStats struct {
	Deployed  int      `json:"deployed"`
	Validated int      `json:"validated"`
	Ratio     *float64 `json:"ratio"`
	Invalid   []string `json:"invalid,omitempty"`
}

// CoverageView is GET /api/v1/coverage: the policy coverage KPI (deployed
// agents under an explicit policy they pass, over deployed agents; Ratio
// null when none is deployed) against Target, each agent's status, those
// that fail, and the manifests-validated KPI (absent when omertad serves
// no agents).
type CoverageView struct {
	Deployed     int                 `json:"deployed"`
	Explicit     int                 `json:"explicit"`
	Passing      int                 `json:"passing"`
	Covered      int                 `json:"covered"`
	Ratio        *float64            `json:"ratio"`
	Target       float64             `json:"target"`
	Agents       []AgentPolicyStatus `json:"agents"`
	NonCompliant []AgentPolicyStatus `json:"non_compliant"`
	Manifests    *ManifestStats      `json:"manifests,omitempty"`
}
