package api

import (
	"strings"

	"github.com/omertaos/omertaos/appliance/auth"
)

// rule is what a route needs of its caller. Every route the API registers
// has exactly one (TestEveryRouteHasARule walks fiber's routes); a request
// that matches none is answered 404 before anything else runs, so a route
// left out of the table can never be reached: deny by default.
type rule struct {
	method string // GET, POST, PUT, PATCH or DELETE; HEAD is GET's
	path   string // fiber's pattern: "/api/v1/users/:name"
	// action is the auth.Action* the caller's role must allow; "" only
	// for a public route.
	action string
	// public routes serve anyone who can connect, with or without
	// credentials (setup, login, the OpenAPI document, /healthz).
	public bool
	// rootOnly routes serve only root on the socket (auth.System), on
	// top of action: omertad opens a path the caller names, and a
	// session must not make root read what its holder could not.
	rootOnly bool

	segs []string // path split at "/"; ":x" matches one segment
}

func (r *rule) key() string { return r.method + " " + r.path }

// mutating reports whether the method changes state: such requests need
// a session's CSRF token, and a refusal is audited.
func mutating(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS":
		return false
	}
	return true
}

func pub(method, path string) rule { return rule{method: method, path: path, public: true} }

func need(method, path, action string) rule { return rule{method: method, path: path, action: action} }

func rootNeed(method, path, action string) rule {
	return rule{method: method, path: path, action: action, rootOnly: true}
}

// rules is the API's whole authorization table: a route, what it needs.
// The roles behind each action are auth.Permissions'. Routes of a domain
// whose handle is nil are not served, but keep their rule.
var rules = compileRules([]rule{
	pub("GET", "/healthz"),
	pub("GET", "/api/v1/openapi.json"),
	need("GET", "/api/v1/version", auth.ActionSelf),

	// Authentication (setup.go, auth.go).
	pub("GET", "/api/v1/setup"),
	pub("POST", "/api/v1/setup"),
	pub("POST", "/api/v1/login"),
	pub("POST", "/api/v1/reset"),
	need("POST", "/api/v1/logout", auth.ActionSelf),
	need("GET", "/api/v1/whoami", auth.ActionSelf),
	need("POST", "/api/v1/password", auth.ActionSelf),

	// Users and API tokens (users.go, tokens.go).
	need("GET", "/api/v1/users", auth.ActionUsersRead),
	need("POST", "/api/v1/users", auth.ActionUsersWrite),
	need("GET", "/api/v1/users/:name", auth.ActionUsersRead),
	need("POST", "/api/v1/users/:name/disable", auth.ActionUsersWrite),
	need("POST", "/api/v1/users/:name/enable", auth.ActionUsersWrite),
	need("POST", "/api/v1/users/:name/reset", auth.ActionUsersWrite),
	need("PUT", "/api/v1/users/:name/role", auth.ActionUsersWrite),
	need("GET", "/api/v1/tokens", auth.ActionTokensRead),
	need("POST", "/api/v1/tokens", auth.ActionTokensWrite),
	need("DELETE", "/api/v1/tokens/:id", auth.ActionTokensWrite),

	// Evidence (audit.go, probe.go, report.go).
	need("GET", "/api/v1/audit", auth.ActionAuditRead),
	need("GET", "/api/v1/audit/status", auth.ActionAuditRead),
	need("GET", "/api/v1/probe", auth.ActionProbeRead),
	need("GET", "/api/v1/probe/drift", auth.ActionDriftRead),
	// GPUs (gpus.go): hardware, as the probe is.
	need("GET", "/api/v1/gpus", auth.ActionProbeRead),
	need("GET", "/api/v1/gpus/:uuid", auth.ActionProbeRead),
	// The gateway's models and their verification (models.go): what an
	// agent's policy may allow, as policies are.
	need("GET", "/api/v1/models", auth.ActionPolicyRead),
	need("GET", "/api/v1/report", auth.ActionReportsRead),
	need("GET", "/api/v1/report.html", auth.ActionReportsRead),
	// The dashboard in one call (dashboard.go): every role has one; each
	// section is gated by the action of the route it stands for.
	need("GET", "/api/v1/dashboard", auth.ActionSelf),

	// Agents (agents.go, catalog.go, images.go, logs.go, events.go,
	// metrics.go).
	need("GET", "/api/v1/catalog", auth.ActionCatalogRead),
	need("POST", "/api/v1/catalog", auth.ActionCatalogWrite),
	need("GET", "/api/v1/catalog/:id", auth.ActionCatalogRead),
	need("GET", "/api/v1/images", auth.ActionAgentsRead),
	rootNeed("POST", "/api/v1/images/import", auth.ActionAgentsWrite),
	need("POST", "/api/v1/images/pull", auth.ActionAgentsWrite),
	need("GET", "/api/v1/agents", auth.ActionAgentsRead),
	need("GET", "/api/v1/summary/agents", auth.ActionAgentsRead),
	need("POST", "/api/v1/agents", auth.ActionAgentsWrite),
	need("GET", "/api/v1/agents/:id", auth.ActionAgentsRead),
	need("PATCH", "/api/v1/agents/:id", auth.ActionAgentsWrite),
	need("DELETE", "/api/v1/agents/:id", auth.ActionAgentsWrite),
	need("POST", "/api/v1/agents/:id/disable", auth.ActionAgentsWrite),
	need("POST", "/api/v1/agents/:id/enable", auth.ActionAgentsWrite),
	need("POST", "/api/v1/agents/:id/restart", auth.ActionAgentsWrite),
	need("GET", "/api/v1/agents/:id/logs", auth.ActionAgentsLogs),
	need("GET", "/api/v1/agents/:id/tasks", auth.ActionTasksRead),
	need("POST", "/api/v1/agents/:id/tasks", auth.ActionTasksWrite),
	need("GET", "/api/v1/tasks/:id", auth.ActionTasksRead),
	need("POST", "/api/v1/tasks/:id/cancel", auth.ActionTasksWrite),
	// An agent's own UI (agentui.go): interactive, so agents.write, not
	// agents.read; "*" is the rest of the path, passed to the agent.
	need("GET", "/api/v1/agents/:id/ui/*", auth.ActionAgentsWrite),
	need("POST", "/api/v1/agents/:id/ui/*", auth.ActionAgentsWrite),
	need("PUT", "/api/v1/agents/:id/ui/*", auth.ActionAgentsWrite),
	need("PATCH", "/api/v1/agents/:id/ui/*", auth.ActionAgentsWrite),
	need("DELETE", "/api/v1/agents/:id/ui/*", auth.ActionAgentsWrite),
	need("GET", "/api/v1/events", auth.ActionEventsRead),
	need("GET", "/metrics", auth.ActionEventsRead),

	// Policies, tenants, scopes, decisions and coverage (policy.go,
	// policy_tenants.go). A caller restricted to some tenants is further
	// scoped by the handlers: the others' are 404.
	need("GET", "/api/v1/policies", auth.ActionPolicyRead),
	need("GET", "/api/v1/policies/:kind/:name", auth.ActionPolicyRead),
	need("PUT", "/api/v1/policies/:kind/:name", auth.ActionPolicyWrite),
	need("GET", "/api/v1/policies/:kind/:name/history", auth.ActionPolicyRead),
	need("POST", "/api/v1/policies/:kind/:name/rollback", auth.ActionPolicyWrite),
	need("GET", "/api/v1/tenants", auth.ActionPolicyRead),
	need("GET", "/api/v1/tenants/:name", auth.ActionPolicyRead),
	need("PUT", "/api/v1/tenants/:name", auth.ActionPolicyWrite),
	need("GET", "/api/v1/users/:name/tenants", auth.ActionUsersRead),
	need("PUT", "/api/v1/users/:name/tenants", auth.ActionUsersWrite),
	need("GET", "/api/v1/decisions", auth.ActionPolicyRead),
	need("GET", "/api/v1/coverage", auth.ActionPolicyRead),
})

func compileRules(rs []rule) []rule {
	for i := range rs {
		rs[i].segs = strings.Split(rs[i].path, "/")
	}
	return rs
}

// matchRule returns the rule of a request, or nil. It matches as fiber
// routes with StrictRouting, CaseSensitive and no unescaping: a ":x"
// segment is one non-empty path segment, a last "*" segment the rest of
// the path (any number of segments, empty ones too, or none: "/x/*"
// matches "/x" as in fiber), anything else is
// compared byte for byte. No two rules of a method overlap (TestRulesDoNotOverlap), so
// the one found is the one whose route fiber runs
// (TestMatchRuleAgreesWithFiber, FuzzMatchRule).
func matchRule(method, path string) *rule {
	if method == "HEAD" {
		method = "GET" // fiber serves HEAD with every GET route
	}
	segs := strings.Split(path, "/")
	for i := range rules {
		r := &rules[i]
		if r.method == method && segsMatch(r.segs, segs) {
			return r
		}
	}
	return nil
}

func segsMatch(pattern, segs []string) bool {
	if n := len(pattern); n > 0 && pattern[n-1] == "*" && len(segs) >= n-1 {
		// fiber's "/x/*" matches "/x" too: the slash before it is part of
		// the optional rest.
		pattern, segs = pattern[:n-1], segs[:n-1]
	}
	if len(pattern) != len(segs) {
		return false
	}
	for i, p := range pattern {
		switch {
		case strings.HasPrefix(p, ":"):
			if segs[i] == "" {
				return false
			}
		case p != segs[i]:
			return false
		}
	}
	return true
}
