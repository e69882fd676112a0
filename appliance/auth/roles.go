package auth

import (
	"maps"
	"slices"
)

// Role is what a user or an API token may do, through Permissions.
type Role string

// The roles. There are no others: a role read from anywhere is checked with
// ParseRole.
const (
	RoleAdmin    Role = "admin"    // everything
	RoleOperator Role = "operator" // agents, tasks, catalog; secrets write-only; no users
	RoleAuditor  Role = "auditor"  // read-only evidence; no secrets
)

// Roles lists every role, most privileged first.
func Roles() []Role { return []Role{RoleAdmin, RoleOperator, RoleAuditor} }

// ParseRole accepts exactly one of the role names.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleOperator, RoleAuditor:
		return r, nil
	}
	return "", invalid("role", "must be one of admin, operator, auditor")
}

// The actions that routes are checked against. A route names exactly one.
const (
	ActionAgentsRead   = "agents.read"   // agent list, state, config, resources, telemetry
	ActionAgentsWrite  = "agents.write"  // deploy, patch, enable, disable, restart, delete
	ActionAgentsLogs   = "agents.logs"   // an agent's output may carry anything it was given
	ActionTasksRead    = "tasks.read"    // tasks and their results
	ActionTasksWrite   = "tasks.write"   // submit, cancel
	ActionCatalogRead  = "catalog.read"  // catalog entries and their config schemas
	ActionCatalogWrite = "catalog.write" // add or remove catalog entries
	ActionSecretsRead  = "secrets.read"  // secret values
	ActionSecretsWrite = "secrets.write" // set or replace a secret (the value never comes back)
	ActionUsersRead    = "users.read"
	ActionUsersWrite   = "users.write" // create, disable, enable, change role, reset link
	ActionTokensRead   = "tokens.read" // list API tokens (never their secrets)
	ActionTokensWrite  = "tokens.write"
	ActionAuditRead    = "audit.read"
	ActionReportsRead  = "reports.read" // first-boot report, its verification, downloads
	ActionProbeRead    = "probe.read"   // hardware, GPUs, compatibility verdict
	ActionDriftRead    = "drift.read"
	ActionEventsRead   = "events.read"  // the live event stream (agents' state, metrics)
	ActionSelf         = "self"         // one's own session: whoami, logout, own password
	ActionPolicyRead   = "policy.read"  // policies, tenants and quotas, decisions, coverage
	ActionPolicyWrite  = "policy.write" // a policy's new version or rollback, a tenant, a user's tenant scope
)

var (
	allRoles   = []Role{RoleAdmin, RoleOperator, RoleAuditor}
	adminOnly  = []Role{RoleAdmin}
	adminOp    = []Role{RoleAdmin, RoleOperator}
	adminAudit = []Role{RoleAdmin, RoleAuditor}
)

// permissions is the whole authorization policy: an action, the roles that
// may take it. Anything not here is denied.
//
// The operator reads reports, probe and drift because the dashboard every
// operator lands on shows the first-boot verdict and the hardware summary;
// it does not read the audit log, which is the auditor's and the admin's.
var permissions = map[string][]Role{
	ActionAgentsRead:   allRoles,
	ActionAgentsWrite:  adminOp,
	ActionAgentsLogs:   adminOp,
	ActionTasksRead:    adminOp,
	ActionTasksWrite:   adminOp,
	ActionCatalogRead:  adminOp,
	ActionCatalogWrite: adminOp,
	ActionSecretsRead:  adminOnly,
	ActionSecretsWrite: adminOp,
	ActionUsersRead:    adminOnly,
	ActionUsersWrite:   adminOnly,
	ActionTokensRead:   adminOnly,
	ActionTokensWrite:  adminOnly,
	ActionAuditRead:    adminAudit,
	ActionReportsRead:  allRoles,
	ActionProbeRead:    allRoles,
	ActionDriftRead:    allRoles,
	ActionEventsRead:   allRoles,
	ActionSelf:         allRoles,
	// What an agent may do is the administrator's to decide; everyone
	// may read it, so that a refusal can be understood.
	ActionPolicyRead:  allRoles,
	ActionPolicyWrite: adminOnly,
}

// Allowed reports whether role may take action. Unknown roles and unknown
// actions are denied.
func Allowed(role Role, action string) bool {
	return slices.Contains(permissions[action], role)
}

// Permissions returns a copy of the policy, action to roles, so that the
// API layer's route test can walk every route with every role.
func Permissions() map[string][]Role {
	out := make(map[string][]Role, len(permissions))
	for a, rs := range permissions {
		out[a] = slices.Clone(rs)
	}
	return out
}

// Actions lists every known action, sorted.
func Actions() []string { return slices.Sorted(maps.Keys(permissions)) }
