package ui

import (
	"net/url"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// route is one (method, path pattern) of omertad's API that the console
// forwards. A pattern is split at "/"; a segment "{x}" matches one path
// segment that is a plausible name or id (see validParam) and is handed to
// call as param x; any other segment matches itself exactly. call makes
// the request through the typed API client: the console forwards what it
// understands, decoded and encoded again, and nothing else.
type route struct {
	method  string
	pattern string
	call    func(f *fwd) (any, error)
	// status is the answer's status on success (200 when 0).
	status int
	// stream: the call may open a stream, which takes one of the
	// console's stream slots.
	stream bool
	// public: omertad serves it without credentials. Every other route is
	// refused by the console itself (401) when the request carries
	// neither a session nor a token: omertad takes a caller without
	// credentials for root when the peer is root, and a console started
	// as root by mistake must not lend a stranger root's powers.
	public bool
	// slow: the call changes agents, which omertad does in containerd;
	// the console waits Limits.Slow for it, not Limits.Call.
	slow bool
	// waits: the call waits as long as its ?wait= query says, and the
	// console that much longer.
	waits bool
}

// timeout is how long the console waits for omertad's answer to rt.
func (rt *route) timeout(l Limits, q url.Values) time.Duration {
	d := l.Call
	if rt.slow {
		d = l.Slow
	}
	if rt.waits {
		if w, err := time.ParseDuration(q.Get("wait")); err == nil && w > 0 {
			d += min(w, apitype.MaxTaskWait)
		}
	}
	return d
}

// allowList is every /api/v1 route the console forwards; anything else is
// answered 404 by the console and never reaches omertad. It is the
// contract's list (CONSOLE_CONTRACT.md) less the routes that the console's
// pages own: POST /setup, /login, /logout and /reset (they set and clear
// the cookie, so they go through the pages), and POST /images/import,
// which makes omertad open a file on its own machine by path: that is for
// root on the machine, not for a browser.
var allowList = []route{
	{method: "GET", pattern: "/api/v1/setup", public: true, call: func(f *fwd) (any, error) { return f.api.SetupState(f.ctx) }},
	{method: "GET", pattern: "/api/v1/whoami", call: func(f *fwd) (any, error) { return f.api.Identity(f.ctx) }},
	{method: "GET", pattern: "/api/v1/version", call: func(f *fwd) (any, error) { return f.api.Version(f.ctx) }},
	{method: "GET", pattern: "/api/v1/openapi.json", public: true, call: func(f *fwd) (any, error) {
		b, err := f.api.OpenAPI(f.ctx)
		return raw(fiberJSON, b), err
	}},

	{method: "GET", pattern: "/api/v1/users", call: func(f *fwd) (any, error) {
		us, err := f.api.Users(f.ctx)
		return apitype.UserList{Users: us}, err
	}},
	{method: "POST", pattern: "/api/v1/users", status: 201, call: func(f *fwd) (any, error) {
		var req apitype.UserCreate
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return f.api.CreateUser(f.ctx, req)
	}},
	{method: "GET", pattern: "/api/v1/users/{name}", call: func(f *fwd) (any, error) { return f.api.User(f.ctx, f.p["name"]) }},
	{method: "POST", pattern: "/api/v1/users/{name}/disable", call: func(f *fwd) (any, error) { return f.api.DisableUser(f.ctx, f.p["name"]) }},
	{method: "POST", pattern: "/api/v1/users/{name}/enable", call: func(f *fwd) (any, error) { return f.api.EnableUser(f.ctx, f.p["name"]) }},
	{method: "POST", pattern: "/api/v1/users/{name}/reset", call: func(f *fwd) (any, error) { return f.api.ResetUser(f.ctx, f.p["name"]) }},
	{method: "PUT", pattern: "/api/v1/users/{name}/role", call: func(f *fwd) (any, error) {
		var req apitype.RoleChange
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return f.api.SetUserRole(f.ctx, f.p["name"], req.Role)
	}},
	{method: "GET", pattern: "/api/v1/tokens", call: func(f *fwd) (any, error) {
		ts, err := f.api.Tokens(f.ctx)
		return apitype.TokenList{Tokens: ts}, err
	}},
	{method: "POST", pattern: "/api/v1/tokens", status: 201, call: func(f *fwd) (any, error) {
		var req apitype.TokenCreate
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return f.api.CreateToken(f.ctx, req)
	}},
	{method: "DELETE", pattern: "/api/v1/tokens/{id}", status: 204, call: func(f *fwd) (any, error) {
		id, err := f.int64Param("id")
		if err != nil {
			return nil, err
		}
		return nil, f.api.RevokeToken(f.ctx, id)
	}},

	{method: "GET", pattern: "/api/v1/audit", call: func(f *fwd) (any, error) {
		after, err := f.int64Query("after", 0)
		if err != nil {
			return nil, err
		}
		limit, err := f.intQuery("limit", 0)
		if err != nil {
			return nil, err
		}
		return f.api.Audit(f.ctx, after, limit)
	}},
	{method: "GET", pattern: "/api/v1/audit/status", call: func(f *fwd) (any, error) { return f.api.AuditStatus(f.ctx) }},
	{method: "GET", pattern: "/api/v1/probe", call: func(f *fwd) (any, error) { return f.api.Probe(f.ctx) }},
	{method: "GET", pattern: "/api/v1/gpus", call: func(f *fwd) (any, error) { return f.api.GPUs(f.ctx) }},
	{method: "GET", pattern: "/api/v1/gpus/{uuid}", call: func(f *fwd) (any, error) { return f.api.GPU(f.ctx, f.p["uuid"]) }},
	{method: "GET", pattern: "/api/v1/models", call: func(f *fwd) (any, error) { return f.api.Models(f.ctx) }},
	{method: "GET", pattern: "/api/v1/probe/drift", call: func(f *fwd) (any, error) {
		limit, err := f.intQuery("limit", 0)
		if err != nil {
			return nil, err
		}
		return f.api.Drift(f.ctx, limit)
	}},
	{method: "GET", pattern: "/api/v1/report", call: func(f *fwd) (any, error) { return f.api.Report(f.ctx) }},
	{method: "GET", pattern: "/api/v1/report.html", call: func(f *fwd) (any, error) {
		b, err := f.api.ReportHTML(f.ctx)
		return raw("text/html; charset=utf-8", b), err
	}},

	{method: "GET", pattern: "/api/v1/catalog", call: func(f *fwd) (any, error) { return f.api.Catalog(f.ctx) }},
	{method: "POST", pattern: "/api/v1/catalog", slow: true, status: 201, call: func(f *fwd) (any, error) {
		var req apitype.CatalogImport
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return f.api.ImportCatalog(f.ctx, req)
	}},
	{method: "GET", pattern: "/api/v1/catalog/{id}", call: func(f *fwd) (any, error) { return f.api.CatalogEntry(f.ctx, f.p["id"]) }},
	{method: "GET", pattern: "/api/v1/images", call: func(f *fwd) (any, error) { return f.api.Images(f.ctx) }},

	{method: "GET", pattern: "/api/v1/agents", call: func(f *fwd) (any, error) { return f.api.Agents(f.ctx) }},
	{method: "GET", pattern: "/api/v1/summary/agents", call: func(f *fwd) (any, error) { return f.api.AgentsSummary(f.ctx) }},
	{method: "GET", pattern: "/api/v1/dashboard", call: func(f *fwd) (any, error) { return f.api.Dashboard(f.ctx) }},
	{method: "POST", pattern: "/api/v1/agents", slow: true, status: 201, call: func(f *fwd) (any, error) {
		var req apitype.AgentDeploy
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return f.api.DeployAgent(f.ctx, req)
	}},
	{method: "GET", pattern: "/api/v1/agents/{id}", call: func(f *fwd) (any, error) { return f.api.Agent(f.ctx, f.p["id"]) }},
	{method: "PATCH", pattern: "/api/v1/agents/{id}", slow: true, call: func(f *fwd) (any, error) {
		var req apitype.AgentPatch
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return f.api.PatchAgent(f.ctx, f.p["id"], req)
	}},
	{method: "DELETE", pattern: "/api/v1/agents/{id}", slow: true, status: 204, call: func(f *fwd) (any, error) {
		purge, err := f.boolQuery("purge")
		if err != nil {
			return nil, err
		}
		return nil, f.api.DeleteAgent(f.ctx, f.p["id"], purge)
	}},
	{method: "POST", pattern: "/api/v1/agents/{id}/disable", slow: true, call: agentVerb(apiclient.ActionDisable)},
	{method: "POST", pattern: "/api/v1/agents/{id}/enable", slow: true, call: agentVerb(apiclient.ActionEnable)},
	{method: "POST", pattern: "/api/v1/agents/{id}/restart", slow: true, call: agentVerb(apiclient.ActionRestart)},
	{method: "GET", pattern: "/api/v1/agents/{id}/logs", call: agentLogs, stream: true},
	{method: "GET", pattern: "/api/v1/agents/{id}/tasks", call: func(f *fwd) (any, error) {
		limit, err := f.intQuery("limit", 0)
		if err != nil {
			return nil, err
		}
		return f.api.Tasks(f.ctx, f.p["id"], limit)
	}},
	{method: "POST", pattern: "/api/v1/agents/{id}/tasks", slow: true, waits: true, status: 201, call: func(f *fwd) (any, error) {
		var req apitype.TaskCreate
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		wait, err := f.durationQuery("wait")
		if err != nil {
			return nil, err
		}
		return f.api.RunTask(f.ctx, f.p["id"], req, wait)
	}},
	{method: "GET", pattern: "/api/v1/tasks/{id}", call: func(f *fwd) (any, error) { return f.api.Task(f.ctx, f.p["id"]) }},
	{method: "POST", pattern: "/api/v1/tasks/{id}/cancel", call: func(f *fwd) (any, error) { return f.api.CancelTask(f.ctx, f.p["id"]) }},
	{method: "GET", pattern: "/api/v1/events", call: events, stream: true},

	// Policies, tenants, scopes, decisions and coverage: omertad changes
	// its database only, not containerd, so no write is slow. The
	// If-Match header is not forwarded: the body's if_version says it.
	{method: "GET", pattern: "/api/v1/policies", call: withPolicy(func(f *fwd, p policyAPI) (any, error) { return p.Policies(f.ctx) })},
	{method: "GET", pattern: "/api/v1/policies/{kind}/{name}", call: withPolicy(func(f *fwd, p policyAPI) (any, error) {
		return p.Policy(f.ctx, f.p["kind"], f.p["name"])
	})},
	{method: "PUT", pattern: "/api/v1/policies/{kind}/{name}", slow: false, call: withPolicy(func(f *fwd, p policyAPI) (any, error) {
		var req apitype.PolicyPut
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return p.PutPolicy(f.ctx, f.p["kind"], f.p["name"], req.Document, req.IfVersion)
	})},
	{method: "GET", pattern: "/api/v1/policies/{kind}/{name}/history", call: withPolicy(func(f *fwd, p policyAPI) (any, error) {
		before, err := f.int64Query("before", 0)
		if err != nil {
			return nil, err
		}
		limit, err := f.intQuery("limit", 0)
		if err != nil {
			return nil, err
		}
		return p.PolicyHistory(f.ctx, f.p["kind"], f.p["name"], before, limit)
	})},
	{method: "POST", pattern: "/api/v1/policies/{kind}/{name}/rollback", slow: false, call: withPolicy(func(f *fwd, p policyAPI) (any, error) {
		var req apitype.PolicyRollback
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return p.RollbackPolicy(f.ctx, f.p["kind"], f.p["name"], req.Version, req.IfVersion)
	})},
	{method: "GET", pattern: "/api/v1/tenants", call: withPolicy(func(f *fwd, p policyAPI) (any, error) { return p.Tenants(f.ctx) })},
	{method: "GET", pattern: "/api/v1/tenants/{name}", call: withPolicy(func(f *fwd, p policyAPI) (any, error) { return p.Tenant(f.ctx, f.p["name"]) })},
	{method: "PUT", pattern: "/api/v1/tenants/{name}", slow: false, call: withPolicy(func(f *fwd, p policyAPI) (any, error) {
		var req apitype.TenantPut
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return p.PutTenant(f.ctx, f.p["name"], req.Document)
	})},
	{method: "GET", pattern: "/api/v1/users/{name}/tenants", call: withPolicy(func(f *fwd, p policyAPI) (any, error) {
		return p.TenantScope(f.ctx, f.p["name"])
	})},
	{method: "PUT", pattern: "/api/v1/users/{name}/tenants", slow: false, call: withPolicy(func(f *fwd, p policyAPI) (any, error) {
		var req apitype.TenantScopeSet
		if err := f.decode(&req); err != nil {
			return nil, err
		}
		return p.SetTenantScope(f.ctx, f.p["name"], req)
	})},
	{method: "GET", pattern: "/api/v1/decisions", call: withPolicy(decisions)},
	{method: "GET", pattern: "/api/v1/coverage", call: withPolicy(func(f *fwd, p policyAPI) (any, error) { return p.Coverage(f.ctx) })},
}

// withPolicy calls a policy route through the API's policy calls.
func withPolicy(call func(f *fwd, p policyAPI) (any, error)) func(f *fwd) (any, error) {
	return func(f *fwd) (any, error) { return call(f, f.api) }
}

func decisions(f *fwd, p policyAPI) (any, error) {
	var df apiclient.DecisionFilter
	df.Agent, df.Tenant = f.query.Get("agent"), f.query.Get("tenant")
	if len(df.Agent) > maxParam || len(df.Tenant) > maxParam {
		return nil, badf("agent and tenant: at most %d bytes", maxParam)
	}
	var err error
	if df.Denied, err = f.boolQuery("denied"); err != nil {
		return nil, err
	}
	if df.Before, err = f.int64Query("before", 0); err != nil {
		return nil, err
	}
	if df.Limit, err = f.intQuery("limit", 0); err != nil {
		return nil, err
	}
	if df.Limit > apitype.DecisionLimitMax {
		return nil, badf("limit: at most %d", apitype.DecisionLimitMax)
	}
	return p.Decisions(f.ctx, df)
}

func agentVerb(verb string) func(f *fwd) (any, error) {
	return func(f *fwd) (any, error) { return f.api.AgentAction(f.ctx, f.p["id"], verb) }
}

// Bounds of what is forwarded.
const (
	maxParam     = 128
	maxQuery     = 2048
	maxQueryKeys = 16
)

// matchRoute finds the allow-listed route for method and path (as the
// browser sent it, percent-encoded) and returns omertad's path rebuilt
// from the checked segments. ok is false for anything not on the list,
// including other spellings of a listed path (a trailing slash, doubled
// slashes, "..", an encoded slash inside a segment, other letter case).
func matchRoute(method, rawPath string) (*route, map[string]string, bool) {
	if !strings.HasPrefix(rawPath, "/api/v1/") {
		return nil, nil, false
	}
	segs := strings.Split(rawPath[1:], "/")
	for i := range allowList {
		cand := &allowList[i]
		if cand.method != method {
			continue
		}
		if params, ok := matchPattern(cand.pattern, segs); ok {
			return cand, params, true
		}
	}
	return nil, nil, false
}

func matchPattern(pattern string, segs []string) (map[string]string, bool) {
	psegs := strings.Split(pattern[1:], "/")
	if len(psegs) != len(segs) {
		return nil, false
	}
	var params map[string]string
	for i, ps := range psegs {
		if strings.HasPrefix(ps, "{") {
			v, err := url.PathUnescape(segs[i])
			if err != nil || !validParam(v) {
				return nil, false
			}
			if params == nil {
				params = map[string]string{}
			}
			params[strings.Trim(ps, "{}")] = v
			continue
		}
		if segs[i] != ps {
			return nil, false
		}
	}
	return params, true
}

// validParam accepts the ids and names omertad hands out: letters,
// digits and ._-@: , at most maxParam bytes, not "." or "..".
func validParam(s string) bool {
	if s == "" || len(s) > maxParam || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '-', c == '@', c == ':':
		default:
			return false
		}
	}
	return true
}
