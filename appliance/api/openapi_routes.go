package api

import (
	"github.com/omertaos/omertaos/appliance/apitype"
)

// opDoc documents one route for the OpenAPI document. Every rule has one
// (TestEveryRuleIsDocumented).
type opDoc struct {
	summary     string
	description string
	tag         string
	request     any // a value of the JSON request body's type; nil: no body
	ok          int // the success status; 0 is 200
	okDesc      string
	response    any      // a value of the JSON answer's type
	content     []string // or the media types of a non-JSON answer
	query       []queryParam
	errors      []int // 4xx answers beyond those errorCodes infers
}

type queryParam struct {
	name, desc string
	schema     map[string]any
}

func intParam(name, desc string, min, max, def int) queryParam {
	return queryParam{name: name, desc: desc, schema: map[string]any{"type": "integer", "minimum": min, "maximum": max, "default": def}}
}

func boolParam(name, desc string) queryParam {
	return queryParam{name: name, desc: desc, schema: map[string]any{"type": "boolean", "default": false}}
}

func strParam(name, desc string) queryParam {
	return queryParam{name: name, desc: desc, schema: map[string]any{"type": "string"}}
}

var tagDocs = []struct{ name, desc string }{
	{"system", "omertad's health, version and this document"},
	{"auth", "setup with first boot's one-time token, login, logout, password reset, who the caller is"},
	{"users", "the console's accounts and their roles (admin)"},
	{"tokens", "API tokens for automation, scoped to a role (admin)"},
	{"evidence", "the audit log, the hardware probe and its drift, the signed first-boot report"},
	{"gpus", "the NVIDIA GPUs omertad hands out and the agents holding them"},
	{"catalog", "the agents that can be deployed"},
	{"images", "OCI images in omertad's containerd namespace"},
	{"agents", "deployed agents, their lifecycle and logs"},
	{"tasks", "tasks run on agents"},
	{"events", "live events and metrics"},
	{"policy", "versioned policies, tenants and their quotas, operators' tenant scopes, admission decisions and coverage"},
	{"models", "the model gateway's models and whether each was enabled, its manifest verified against the signed registries"},
}

const (
	sse       = "text/event-stream"
	textPlain = "text/plain"
)

var opDocs = map[string]opDoc{
	"GET /healthz": {summary: "Health", tag: "system", response: apitype.Health{},
		description: "200 while the state database answers, 503 with the store's error otherwise; a bad audit chain shows but is not unhealthy."},
	"GET /api/v1/openapi.json": {summary: "This OpenAPI document", tag: "system", response: map[string]any{},
		description: "The routes this omertad serves, generated from the table that authorises them."},
	"GET /api/v1/version": {summary: "Build version", tag: "system", response: apitype.Version{}},

	"GET /api/v1/setup": {summary: "Whether setup is done", tag: "auth", response: apitype.SetupState{}},
	"POST /api/v1/setup": {summary: "Create the first admin", tag: "auth", request: apitype.SetupRequest{}, ok: 201,
		okDesc: "the admin exists and is logged in", response: apitype.Session{}, errors: []int{403, 409, 429},
		description: "Redeems the one-time token first boot printed (403 when it does not match, was used or expired), creates the first admin and starts its session. Once done it answers 409, for good."},
	"POST /api/v1/login": {summary: "Log in", tag: "auth", request: apitype.LoginRequest{}, response: apitype.Session{}, errors: []int{401, 429},
		description: "Every failure is the same 401, whatever failed. The session sent with the request, if any, ends: a new ID at every login."},
	"POST /api/v1/reset": {summary: "Set a password with a reset link", tag: "auth", request: apitype.ResetRequest{}, ok: 204, errors: []int{403, 429},
		description: "The link works once; the user's sessions end."},
	"POST /api/v1/logout": {summary: "End this session", tag: "auth", ok: 204, okDesc: "the session ended",
		description: "A session only; a token or root gets 401."},
	"GET /api/v1/whoami": {summary: "Who the caller is", tag: "auth", response: apitype.Whoami{},
		description: "The role, the actions it allows, the session's CSRF token and the calling process as the kernel reports it."},
	"POST /api/v1/password": {summary: "Change one's own password", tag: "auth", request: apitype.PasswordChange{}, ok: 204, errors: []int{429},
		description: "A console session only; the account's other sessions end. A wrong current password counts against the account's rate limit."},

	"GET /api/v1/users": {summary: "List users", tag: "users", response: apitype.UserList{}},
	"POST /api/v1/users": {summary: "Create a user", tag: "users", request: apitype.UserCreate{}, ok: 201, response: apitype.UserCreated{}, errors: []int{409},
		description: "Without a password the answer carries a one-time reset link for the user to set one."},
	"GET /api/v1/users/:name":          {summary: "Get a user", tag: "users", response: apitype.User{}},
	"POST /api/v1/users/:name/disable": {summary: "Disable a user", tag: "users", response: apitype.User{}, errors: []int{409}, description: "Ends all of the user's sessions. The last enabled admin cannot be disabled (409)."},
	"POST /api/v1/users/:name/enable":  {summary: "Enable a user", tag: "users", response: apitype.User{}},
	"POST /api/v1/users/:name/reset":   {summary: "Issue a reset link", tag: "users", ok: 201, response: apitype.ResetLink{}, errors: []int{409}, description: "Replaces any earlier link; shown once."},
	"PUT /api/v1/users/:name/role":     {summary: "Change a user's role", tag: "users", request: apitype.RoleChange{}, response: apitype.User{}, errors: []int{409}, description: "Ends all of the user's sessions. The last enabled admin keeps the role (409)."},

	"GET /api/v1/tokens":        {summary: "List API tokens", tag: "tokens", response: apitype.TokenList{}, description: "Never their secrets; revoked tokens included."},
	"POST /api/v1/tokens":       {summary: "Issue an API token", tag: "tokens", request: apitype.TokenCreate{}, ok: 201, response: apitype.TokenIssued{}, errors: []int{409}, description: "The secret is in this answer and nowhere else."},
	"DELETE /api/v1/tokens/:id": {summary: "Revoke an API token", tag: "tokens", ok: 204, errors: []int{409}},

	"GET /api/v1/audit": {summary: "Audit log records", tag: "evidence", response: []apitype.AuditRecord{},
		description: "Records with seq greater than after, oldest first.",
		query: []queryParam{intParam("after", "return records after this seq", 0, 1<<62, 0),
			intParam("limit", "at most this many records", 1, apitype.MaxListLimit, apitype.AuditLimitDefault)}},
	"GET /api/v1/audit/status": {summary: "Audit chain as verified at start", tag: "evidence", response: apitype.AuditStatus{}, errors: []int{503}},
	"GET /api/v1/probe":        {summary: "Latest hardware probe and verdict", tag: "evidence", response: apitype.ProbeView{}, errors: []int{404}},
	"GET /api/v1/probe/drift": {summary: "Drift from the baseline", tag: "evidence", response: apitype.DriftView{},
		query: []queryParam{intParam("limit", "at most this many events, newest first", 1, apitype.MaxListLimit, apitype.DriftLimitDefault)}},
	"GET /api/v1/report": {summary: "The first-boot report and its verification", tag: "evidence", response: apitype.ReportView{}, errors: []int{404},
		description: "The signed report as stored, verified against the device's public key."},
	"GET /api/v1/dashboard": {summary: "Every figure of the console's dashboard in one answer", tag: "evidence", response: apitype.Dashboard{},
		description: "A section is absent when the role may not read the route it stands for (report, probe, agents summary, coverage, drift, audit); each present section carries the status that route would have answered. Agents and coverage are counted over the tenants the caller sees."},
	"GET /api/v1/report.html": {summary: "The first-boot report as a printable page", tag: "evidence", content: []string{"text/html"}, errors: []int{404, 422}},

	"GET /api/v1/gpus": {summary: "List the GPUs, their MIG devices and holders", tag: "gpus", response: apitype.GPUList{},
		description: "From the GPU service's last refresh and telemetry pass (nothing asks NVML during a request); without a driver or a supported GPU, available is false and reason says why."},
	"GET /api/v1/gpus/:uuid": {summary: "Get a GPU by its UUID or one of its MIG devices'", tag: "gpus", response: apitype.GPUView{},
		description: "404 names a GPU that is gone while an agent still holds it."},

	"GET /api/v1/models": {summary: "List the gateway's models and whether each is enabled", tag: "models", response: apitype.ModelList{},
		description: "Each model the site configuration routes, as verified at omertad's start: enabled only when a configured registry lists its manifest, which matches the registry's signed lock, is valid, and fits the free memory of one GPU; unsigned is the profile's decision. reason names what refused it; the gateway answers a model that is not enabled 403 model_not_enabled."},

	"GET /api/v1/catalog":     {summary: "List catalog entries", tag: "catalog", response: apitype.CatalogList{}},
	"GET /api/v1/catalog/:id": {summary: "Get a catalog entry and its manifest", tag: "catalog", response: apitype.CatalogEntryView{}},
	"POST /api/v1/catalog": {summary: "Import a catalog document", tag: "catalog", request: apitype.CatalogImport{}, ok: 201, response: apitype.CatalogImported{}, errors: []int{409},
		description: "Every agent of the document is added, or none."},
	"GET /api/v1/images": {summary: "List images", tag: "images", response: apitype.ImageList{}},
	"POST /api/v1/images/import": {summary: "Import an image archive from omertad's machine", tag: "images", request: apitype.ImageImport{}, ok: 201, response: apitype.ImageImported{}, errors: []int{403, 409, 503},
		description: "Root on the socket only: omertad opens the path it is given. The archive is verified first against the signed registries: " +
			"one that fails verification, or is unsigned on the enterprise profile, is refused with 403 and the reason (apitype.Denied); " +
			"one a registry vouches for must have the digest that registry pins (409 when the request's digest differs). " +
			"The answer names the signer's key ID and carries the verification's warnings (an unsigned archive allowed by the user or pro profile)."},
	"POST /api/v1/images/pull": {summary: "Pull an image from its registry, pinned by digest", tag: "images", request: apitype.ImagePull{}, ok: 201, response: apitype.ImagePulled{}, errors: []int{404, 503, 504},
		description: "omertad resolves the tag through containerd's resolver (HTTPS, or plain HTTP for a loopback registry); a digest given must match or nothing is kept."},
	"GET /api/v1/agents": {summary: "List agents", tag: "agents", response: apitype.AgentList{}},
	"GET /api/v1/summary/agents": {summary: "Agents by state and the deploy success rate", tag: "agents", response: apitype.AgentsSummary{},
		description: "Counts by observed state, and the deploys and patches of the last 7 days with their success rate (null when none) against the target of 98 %."},
	"POST /api/v1/agents": {summary: "Deploy a catalog entry", tag: "agents", request: apitype.AgentDeploy{}, ok: 201, response: apitype.Agent{}, errors: []int{409},
		description: deniedDoc},
	"GET /api/v1/agents/:id": {summary: "Get an agent", tag: "agents", response: apitype.Agent{}},
	"PATCH /api/v1/agents/:id": {summary: "Change an agent's configuration or resources", tag: "agents", request: apitype.AgentPatch{}, response: apitype.Agent{}, errors: []int{409},
		description: deniedDoc},
	"DELETE /api/v1/agents/:id": {summary: "Delete an agent", tag: "agents", ok: 204, errors: []int{409},
		query: []queryParam{boolParam("purge", "also remove the agent's data and logs")}},
	"POST /api/v1/agents/:id/disable": {summary: "Stop an agent and keep it stopped", tag: "agents", response: apitype.Agent{}, errors: []int{409}},
	"POST /api/v1/agents/:id/enable":  {summary: "Start a disabled agent", tag: "agents", response: apitype.Agent{}, errors: []int{409}},
	"POST /api/v1/agents/:id/restart": {summary: "Restart an agent", tag: "agents", response: apitype.Agent{}, errors: []int{409}},
	"GET /api/v1/agents/:id/logs": {summary: "An agent's log", tag: "agents", content: []string{textPlain, sse},
		description: "The last lines as text/plain, the raw bytes the agent wrote; with follow=true a stream of server-sent events (event: log, data: a JSON string).",
		query: []queryParam{intParam("tail", "the last this many lines", 1, apitype.LogTailMax, apitype.LogTailDefault),
			boolParam("follow", "stream the log as server-sent events")}},
	"GET /api/v1/agents/:id/ui/*":    agentUIDoc("Read a page of an agent's own UI"),
	"POST /api/v1/agents/:id/ui/*":   agentUIDoc("Send a form or request to an agent's own UI"),
	"PUT /api/v1/agents/:id/ui/*":    agentUIDoc("Send a PUT to an agent's own UI"),
	"PATCH /api/v1/agents/:id/ui/*":  agentUIDoc("Send a PATCH to an agent's own UI"),
	"DELETE /api/v1/agents/:id/ui/*": agentUIDoc("Send a DELETE to an agent's own UI"),
	"GET /api/v1/agents/:id/tasks": {summary: "An agent's tasks", tag: "tasks", response: apitype.TaskList{},
		query: []queryParam{intParam("limit", "at most this many tasks, newest first", 1, apitype.MaxListLimit, apitype.TaskLimitDefault)}},
	"POST /api/v1/agents/:id/tasks": {summary: "Run a task on an agent", tag: "tasks", request: apitype.TaskCreate{}, ok: 201, response: apitype.Task{}, errors: []int{409, 429},
		description: "429 with Retry-After when the agent's task rate (the policy's tasks.perMinute) is spent or too many tasks run; 403 with the decision (apitype.Denied) when the policy allows the agent no tasks.",
		query:       []queryParam{strParam("wait", "wait up to this long (0s to 10m, as 30s) for the task to end")}},
	"GET /api/v1/tasks/:id":         {summary: "Get a task", tag: "tasks", response: apitype.Task{}},
	"POST /api/v1/tasks/:id/cancel": {summary: "Cancel a task", tag: "tasks", response: apitype.Task{}, errors: []int{409}},
	"GET /api/v1/events": {summary: "Live events", tag: "events", content: []string{sse}, errors: []int{503},
		description: "Server-sent events: each has id (seq), event (its type) and data (an Event as JSON); a lagged or shutdown event ends the stream.",
		query: []queryParam{strParam("types", "comma-separated event types: agent.state, agent.deleted, task, telemetry, telemetry.gpu"),
			strParam("agent", "only this agent's events"), strParam("task", "only this task's events")}},
	"GET /metrics": {summary: "Prometheus metrics", tag: "events", content: []string{textPlain}},

	"GET /api/v1/policies": {summary: "List the policies", tag: "policy", response: apitype.PolicyList{},
		description: "The current version of every live policy the caller may see, and the profile whose defaults they layer over."},
	"GET /api/v1/policies/:kind/:name": {summary: "Get a policy", tag: "policy", response: apitype.PolicyView{},
		description: "kind is agent, category or tenant; the answer's document is the whole policy as JSON, which PUT takes back."},
	"PUT /api/v1/policies/:kind/:name": {summary: "Store a new version of a policy", tag: "policy", request: apitype.PolicyPut{}, response: apitype.PolicyChange{}, errors: []int{409},
		description: "document is the Policy as YAML or JSON text; its subject must be the path's. if_version or If-Match refuses a stale change (409). 201 when the policy is created. Agents the change makes non-compliant are listed at once; every change is audited."},
	"GET /api/v1/policies/:kind/:name/history": {summary: "A policy's versions", tag: "policy", response: apitype.PolicyHistory{},
		query: []queryParam{intParam("limit", "at most this many versions, newest first", 1, 1000, apitype.PolicyHistoryLimitDefault),
			intParam("before", "only versions below this one", 0, 1<<62, 0)}},
	"POST /api/v1/policies/:kind/:name/rollback": {summary: "Roll a policy back", tag: "policy", request: apitype.PolicyRollback{}, response: apitype.PolicyChange{}, errors: []int{409},
		description: "Adds a version equal to an earlier one; history is never rewritten."},
	"GET /api/v1/tenants": {summary: "List the tenants", tag: "policy", response: apitype.TenantList{},
		description: "The tenants the caller may see, with their quotas and what their deployed agents hold."},
	"GET /api/v1/tenants/:name": {summary: "Get a tenant", tag: "policy", response: apitype.TenantView{}},
	"PUT /api/v1/tenants/:name": {summary: "Create or change a tenant", tag: "policy", request: apitype.TenantPut{}, response: apitype.TenantChange{},
		description: "document is the Tenant as YAML or JSON text; its name must be the path's. 201 when created."},
	"GET /api/v1/users/:name/tenants": {summary: "The tenants a user may see", tag: "policy", response: apitype.TenantScope{}},
	"PUT /api/v1/users/:name/tenants": {summary: "Restrict a user to some tenants", tag: "policy", request: apitype.TenantScopeSet{}, response: apitype.TenantScope{},
		description: "restricted: false lifts every restriction. A restricted user sees nothing of the other tenants: 404, as for what does not exist."},
	"GET /api/v1/decisions": {summary: "Admission decisions", tag: "policy", response: apitype.DecisionList{},
		description: "Newest first: the rule that decided and the reason, with the numbers.",
		query: []queryParam{strParam("agent", "only this agent's"), strParam("tenant", "only this tenant's"), boolParam("denied", "only denials"),
			intParam("limit", "at most this many", 1, apitype.DecisionLimitMax, apitype.DecisionLimitDefault),
			intParam("before", "only decisions with a lower id (paging)", 0, 1<<62, 0)}},
	"GET /api/v1/coverage": {summary: "Policy coverage and manifests validated", tag: "policy", response: apitype.CoverageView{},
		description: "Deployed agents under an explicit policy they pass, over deployed agents (target ≥ 90 %), each agent's status and those that fail; and the deployed agents whose stored manifest passes the manifest checks."},
}

// deniedDoc is the description of a route that admission guards.
const deniedDoc = "Admission judges the agent against the policies and its tenant's quota: a refusal is 403 with the decision (apitype.Denied: the rule that decided and the reason, with numbers)."

// agentUIDoc documents the agent UI route (agentui.go) for one method.
func agentUIDoc(summary string) opDoc {
	return opDoc{summary: summary, tag: "agents", content: []string{"*/*"}, okDesc: "the agent's answer, with its own status",
		errors: []int{409, 501},
		description: "Passed to the port the agent's manifest names for its UI (spec.ports: the one named ui, else http, else the first) " +
			"on its address on the agents' network; the path below /ui/ and the query are passed on, with X-Forwarded-Prefix: /agents/{id}/ui. " +
			"The caller's Authorization, Cookie and X-Omerta-* headers never reach the agent; the answer is streamed, cut at 32 MiB. " +
			"409 for an agent whose spec.network.mode is not gateway (it has no network), 503 while the agents' network or the agent is not up, " +
			"502 when the agent does not answer, 501 for a WebSocket upgrade. One agents.ui.open audit record per session and agent every 10 minutes."}
}
