package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Who may call the agents routes is decided in front of every route, by
// authenticate and the table in authz.go: a change needs a role that
// allows it (root on the socket is the system principal), and an image
// import is root's alone, because omertad opens the path it is given and
// a session must not make root read what its holder could not. What a
// route records as its actor is Actor(c).Name: "system:root",
// "user:alice", "token:ci".

// actor names the caller in the audit log.
func actor(c *fiber.Ctx) string { return Actor(c).String() }

// decodeBody decodes the request's JSON body into v strictly: one value,
// no unknown field, nothing after it. The body is already bounded by
// Limits.Body.
func decodeBody(c *fiber.Ctx, v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fiber.NewError(fiber.StatusBadRequest, "request body: empty; a JSON object is expected")
		}
		return fiber.NewError(fiber.StatusBadRequest, "request body: "+terminal.Escape(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fiber.NewError(fiber.StatusBadRequest, "request body: more than one JSON value")
	}
	return nil
}

// codeOf maps the agents domain's sentinel errors (and those of the
// runtime, the catalog and the policy under it) to HTTP statuses; 0 means
// none matched, a 500.
func codeOf(err error) int {
	switch {
	case errors.Is(err, agents.ErrInvalid), errors.Is(err, catalog.ErrInvalid), errors.Is(err, runtime.ErrInvalid),
		errors.Is(err, runtime.ErrDigestMismatch), errors.Is(err, policy.ErrInvalid):
		return fiber.StatusBadRequest
	case errors.Is(err, agents.ErrNotFound), errors.Is(err, catalog.ErrNotFound), errors.Is(err, runtime.ErrNotFound),
		errors.Is(err, policy.ErrNotFound):
		return fiber.StatusNotFound
	case errors.Is(err, agents.ErrExists), errors.Is(err, agents.ErrConflict), errors.Is(err, catalog.ErrDuplicate),
		errors.Is(err, runtime.ErrExists), errors.Is(err, runtime.ErrState), errors.Is(err, policy.ErrConflict):
		return fiber.StatusConflict
	case errors.Is(err, policy.ErrDenied):
		return fiber.StatusForbidden
	case errors.Is(err, agents.ErrRateLimited), errors.Is(err, agents.ErrBusy):
		return fiber.StatusTooManyRequests
	case errors.Is(err, agents.ErrUnavailable), errors.Is(err, runtime.ErrUnavailable):
		return fiber.StatusServiceUnavailable
	case errors.Is(err, agents.ErrStartFailed), errors.Is(err, runtime.ErrStartFailed):
		return fiber.StatusBadGateway
	case errors.Is(err, runtime.ErrTimeout):
		return fiber.StatusGatewayTimeout
	// Last: a file the caller named (an archive) that cannot be used.
	case errors.Is(err, safeio.ErrNotRegular), errors.Is(err, safeio.ErrTooLarge),
		errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		return fiber.StatusBadRequest
	}
	return 0
}

// fail answers err: a refusal with field problems as an apitype.Invalid
// body, an admission refusal as a 403 with its decision (apitype.Denied),
// a rate limit as a 429 with Retry-After, a known sentinel with its status
// and the error's message, anything else as a 500 (logged by the error
// handler).
func (s *Server) fail(c *fiber.Ctx, err error) error {
	if ps, ok := problemsOf(err); ok {
		return c.Status(fiber.StatusBadRequest).JSON(apitype.Invalid{Error: terminal.Escape(err.Error()), Problems: ps})
	}
	if de, ok := deniedOf(err); ok {
		return c.Status(fiber.StatusForbidden).JSON(apitype.Denied{Error: terminal.Escape(err.Error()), Decision: decisionView(&de.Decision)})
	}
	code := codeOf(err)
	if code == 0 {
		return err
	}
	if code == fiber.StatusTooManyRequests {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds(err)))
	}
	// Answered here rather than by the error handler, which logs every
	// 5xx: containerd being down is an expected state, reported by the
	// agents service once, not an error per request.
	return c.Status(code).JSON(apitype.Error{Error: terminal.Escape(err.Error())})
}

func problemsOf(err error) ([]apitype.Problem, bool) {
	var ie *agents.InvalidError
	var ce *catalog.ImportError
	var pe *policy.InvalidError
	var ps manifest.Problems
	switch {
	case errors.As(err, &ie):
		ps = ie.Problems
	case errors.As(err, &pe):
		ps = pe.Problems
	case errors.As(err, &ce):
		ps = ce.Problems
	case errors.As(err, &ps):
	default:
		return nil, false
	}
	return problemViews(ps), true
}

// retryAfterSeconds is when a rate-limited caller may try again: the
// policy's wait, rounded up, or a second for a busy service.
func retryAfterSeconds(err error) int {
	var rl *agents.RateLimitedError
	if errors.As(err, &rl) && rl.RetryAfter > 0 {
		return max(1, int((rl.RetryAfter+time.Second-1)/time.Second))
	}
	return 1
}

func problemViews(ps manifest.Problems) []apitype.Problem {
	out := make([]apitype.Problem, 0, len(ps))
	for _, p := range ps {
		out = append(out, apitype.Problem{Path: terminal.Escape(p.Path), Code: string(p.Code), Reason: terminal.Escape(p.Reason)})
	}
	return out
}

// AgentService is what the agent and task routes use; *agents.Service is
// one.
type AgentService interface {
	Deploy(ctx context.Context, req agents.DeployRequest) (agents.Agent, error)
	List(ctx context.Context) ([]agents.Agent, error)
	Get(ctx context.Context, id string) (agents.Agent, error)
	Patch(ctx context.Context, id string, req agents.PatchRequest) (agents.Agent, error)
	Disable(ctx context.Context, id, actor string) (agents.Agent, error)
	Enable(ctx context.Context, id, actor string) (agents.Agent, error)
	Restart(ctx context.Context, id, actor string) (agents.Agent, error)
	Delete(ctx context.Context, id string, purge bool, actor string) error
	RunTask(ctx context.Context, req agents.TaskRequest) (agents.Task, error)
	WaitTask(ctx context.Context, id string) (agents.Task, error)
	GetTask(ctx context.Context, id string) (agents.Task, error)
	ListTasks(ctx context.Context, agent string, limit int) ([]agents.Task, error)
	CancelTask(ctx context.Context, id, actor string) (agents.Task, error)
	AgentSummaryService
}

// AgentsDeps are the handles of the agents routes; a nil one leaves its
// routes out.
type AgentsDeps struct {
	// Catalog serves /catalog; Service serves /agents and /tasks (it needs
	// Catalog for deploys); Images serves /images; Events serves /events.
	Catalog CatalogService
	Service AgentService
	Images  ImageService
	Events  EventSource
	// Archives, when set, verifies each image archive before POST
	// /images/import imports it: a refusal is 403 with the reason, and
	// the import must have the digest the vouching registry pins. Nil
	// imports without asking (tests, tools).
	Archives ArchiveVerifier
	// Logs serves /agents/{id}/logs.
	Logs LogSource
	// Metrics serves /metrics (Prometheus text format).
	Metrics http.Handler
	// Heartbeat is the time between the event stream's keep-alive
	// comments (default DefaultHeartbeat); MaxStreams bounds the event
	// and log streams open at once (default DefaultMaxStreams).
	Heartbeat  time.Duration
	MaxStreams int
}

// agentsState is what the agents routes keep between requests.
type agentsState struct {
	imports   chan struct{}
	streams   chan struct{}
	done      chan struct{} // closed at Shutdown: streams end
	closeOnce *sync.Once
	heartbeat time.Duration
}

func newAgentsState(d AgentsDeps) agentsState {
	st := agentsState{imports: make(chan struct{}, maxImageImports), done: make(chan struct{}), closeOnce: &sync.Once{},
		heartbeat: d.Heartbeat}
	if st.heartbeat <= 0 {
		st.heartbeat = DefaultHeartbeat
	}
	n := d.MaxStreams
	if n <= 0 {
		n = DefaultMaxStreams
	}
	st.streams = make(chan struct{}, n)
	return st
}

// closeStreams ends every event and log stream: they would hold Shutdown
// until its deadline.
func (s *Server) closeStreams() { s.agents.closeOnce.Do(func() { close(s.agents.done) }) }

// agentsRoutes mounts each agents route whose handle is set.
func (s *Server) agentsRoutes(v1 fiber.Router) {
	d := s.deps.Agents
	if d.Catalog != nil {
		s.catalogRoutes(v1)
	}
	if d.Images != nil {
		s.imageRoutes(v1)
	}
	if d.Service != nil && d.Catalog != nil {
		s.agentRoutes(v1)
	}
	if d.Logs != nil {
		s.logRoutes(v1)
	}
	if d.Events != nil {
		s.eventRoutes(v1)
	}
	if d.Metrics != nil {
		s.metricsRoutes()
	}
}

// agentRoutes serves the agents and their tasks. Reads: GET /agents,
// /agents/{id}, /agents/{id}/tasks, /tasks/{id}. Changes: POST
// /agents (deploy), PATCH and DELETE /agents/{id} (?purge=true also removes
// its data and logs), POST /agents/{id}/disable|enable|restart, POST
// /agents/{id}/tasks (?wait=30s waits that long for the task to end), POST
// /tasks/{id}/cancel.
func (s *Server) agentRoutes(r fiber.Router) {
	s.summaryRoutes(r)
	r.Get("/agents", s.listAgents)
	r.Post("/agents", s.deployAgent)
	r.Get("/agents/:id", s.scopedAgent(s.getAgent))
	r.Patch("/agents/:id", s.scopedAgent(s.patchAgent))
	r.Delete("/agents/:id", s.scopedAgent(s.deleteAgent))
	r.Post("/agents/:id/disable", s.scopedAgent(s.agentVerb("disable")))
	r.Post("/agents/:id/enable", s.scopedAgent(s.agentVerb("enable")))
	r.Post("/agents/:id/restart", s.scopedAgent(s.agentVerb("restart")))
	r.Get("/agents/:id/tasks", s.scopedAgent(s.listTasks))
	r.Post("/agents/:id/tasks", s.scopedAgent(s.runTask))
	r.Get("/tasks/:id", s.scopedTask(s.getTask))
	r.Post("/tasks/:id/cancel", s.scopedTask(s.cancelTask))
	s.agentUIRoutes(r) // agentui.go
}

// listAgents answers GET /agents. An *agents.Service's list is a function
// of the database alone (the agents' rows, specs and secret names; nothing
// from memory), and the same for every caller allowed to read it, so its
// encoded answer is kept until the database changes: making it costs two
// queries per agent, and the console's agents page and the API ask often.
// Should the list ever carry state that is not in the database (live
// telemetry), this cache must go.
func (s *Server) listAgents(c *fiber.Ctx) error {
	ctx := c.UserContext()
	sc, restricted, err := s.restricted(c)
	if err != nil {
		return s.fail(c, err)
	}
	build := func() ([]byte, error) { return s.agentListJSON(ctx, nil) }
	_, pure := s.deps.Agents.Service.(*agents.Service)
	var b []byte
	if restricted {
		// Made afresh: the cached list is everyone's.
		b, err = s.agentListJSON(ctx, sc.Sees)
	} else {
		b, err = s.fromDB(ctx, pure, &s.agentList, build)
	}
	if err != nil {
		return s.fail(c, err)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// agentListJSON is GET /agents's answer, made afresh: every agent, or,
// with sees, the agents of the tenants it sees (a restricted caller's).
func (s *Server) agentListJSON(ctx context.Context, sees func(tenant string) bool) ([]byte, error) {
	as, err := s.deps.Agents.Service.List(ctx)
	if err != nil {
		return nil, err
	}
	out := apitype.AgentList{Agents: make([]apitype.AgentSummary, 0, len(as))}
	for i := range as {
		if sees == nil || sees(as[i].Tenant) {
			out.Agents = append(out.Agents, agentSummary(&as[i]))
		}
	}
	return json.Marshal(out)
}

func (s *Server) getAgent(c *fiber.Ctx) error {
	a, err := s.deps.Agents.Service.Get(c.UserContext(), c.Params("id"))
	return s.answerAgent(c, fiber.StatusOK, a, err)
}

func (s *Server) deployAgent(c *fiber.Ctx) error {
	var req apitype.AgentDeploy
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Entry == "" {
		return s.fail(c, &agents.InvalidError{Problems: manifest.Problems{{Path: "entry", Code: manifest.CodeRequired, Reason: "names the catalog entry to deploy"}}})
	}
	it, err := s.deps.Agents.Catalog.Get(c.UserContext(), req.Entry)
	if err != nil {
		return s.fail(c, err)
	}
	if ok, why := it.Deployable(); !ok {
		return fiber.NewError(fiber.StatusConflict, "catalog entry "+quoteValue(req.Entry)+": "+why)
	}
	if err := s.deployScope(c, req.Tenant); err != nil {
		return s.fail(c, err)
	}
	a, err := s.deps.Agents.Service.Deploy(c.UserContext(), agents.DeployRequest{
		Manifest: it.Manifest, ID: req.ID, Tenant: req.Tenant, Config: req.Config, Secrets: req.Secrets, Actor: actor(c),
	})
	return s.answerAgent(c, fiber.StatusCreated, a, err)
}

func (s *Server) patchAgent(c *fiber.Ctx) error {
	var req apitype.AgentPatch
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	pr := agents.PatchRequest{Config: req.Config, Secrets: req.Secrets, Actor: actor(c)}
	if r := req.Resources; r != nil {
		pr.Resources = &manifest.Resources{CPU: manifest.Quantity(r.CPU), Memory: manifest.Quantity(r.Memory), PIDs: r.PIDs, GPUs: r.GPUs}
	}
	a, err := s.deps.Agents.Service.Patch(c.UserContext(), c.Params("id"), pr)
	return s.answerAgent(c, fiber.StatusOK, a, err)
}

func (s *Server) deleteAgent(c *fiber.Ctx) error {
	purge, err := queryBool(c, "purge")
	if err != nil {
		return err
	}
	if err := s.deps.Agents.Service.Delete(c.UserContext(), c.Params("id"), purge, actor(c)); err != nil {
		return s.fail(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Server) agentVerb(verb string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		svc, id, who := s.deps.Agents.Service, c.Params("id"), actor(c)
		var a agents.Agent
		var err error
		switch verb {
		case "disable":
			a, err = svc.Disable(c.UserContext(), id, who)
		case "enable":
			a, err = svc.Enable(c.UserContext(), id, who)
		default:
			a, err = svc.Restart(c.UserContext(), id, who)
		}
		return s.answerAgent(c, fiber.StatusOK, a, err)
	}
}

// answerAgent answers with the agent, or with err. An agent recorded whose
// container did not start is a 502 that says so: the reconciler retries.
func (s *Server) answerAgent(c *fiber.Ctx, code int, a agents.Agent, err error) error {
	if err != nil {
		return s.fail(c, err)
	}
	v, err := agentView(&a)
	if err != nil {
		return err
	}
	return c.Status(code).JSON(v)
}

func agentView(a *agents.Agent) (apitype.Agent, error) {
	v := apitype.Agent{AgentSummary: agentSummary(a), Config: a.Config, SecretKeys: a.SecretKeys}
	if v.Config == nil {
		v.Config = map[string]any{}
	}
	if v.SecretKeys == nil {
		v.SecretKeys = []string{}
	}
	// The Service redacts secret values in its manifest already; this is
	// the belt to its braces.
	raw, err := redactedManifest(a.Manifest)
	if err != nil {
		return v, err
	}
	v.Manifest = raw
	return v, nil
}

// agentSummary is a as the list shows it.
func agentSummary(a *agents.Agent) apitype.AgentSummary {
	v := apitype.AgentSummary{
		ID: a.ID, Tenant: a.Tenant, Desired: string(a.Desired),
		Generation: a.Generation, PatchPending: a.PatchPending, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
		Status: statusView(a.Status), GPUs: agentGPUsView(a.GPUs),
	}
	if m := a.Manifest; m != nil {
		v.Name, v.Isolation = m.Metadata.Name, string(m.Spec.Isolation)
		if img := m.Spec.Image; img != nil {
			v.Image = &apitype.ImageRef{Ref: img.Ref, Digest: img.Digest}
		}
	}
	return v
}

func statusView(s agents.Status) apitype.AgentStatus {
	out := apitype.AgentStatus{
		State: string(s.State), Reason: s.Reason, Container: s.Container, Restarts: s.Restarts, OOMKills: s.OOMKills,
		LastExitCode: s.LastExitCode, UpdatedAt: s.UpdatedAt,
	}
	out.LastExitAt, out.NextStartAt, out.CrashLoopSince = s.LastExitAt, s.NextStartAt, s.CrashLoopSince
	return out
}

func (s *Server) runTask(c *fiber.Ctx) error {
	var req apitype.TaskCreate
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	wait, err := queryDuration(c, "wait", apitype.MaxTaskWait)
	if err != nil {
		return err
	}
	tr := agents.TaskRequest{Agent: c.Params("id"), Input: req.Input, IdempotencyKey: req.IdempotencyKey, Actor: actor(c)}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			return s.fail(c, &agents.InvalidError{Problems: manifest.Problems{{Path: "timeout", Code: manifest.CodeInvalid,
				Reason: quoteValue(req.Timeout) + " is not a positive duration such as 30s"}}})
		}
		tr.Timeout = d
	}
	t, err := s.deps.Agents.Service.RunTask(c.UserContext(), tr)
	if err != nil {
		return s.fail(c, err)
	}
	if wait > 0 && !t.State.Final() {
		ctx, cancel := context.WithTimeout(c.UserContext(), wait)
		waited, err := s.deps.Agents.Service.WaitTask(ctx, t.ID)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t = waited
		} else {
			return s.fail(c, err)
		}
	}
	return c.Status(fiber.StatusCreated).JSON(taskView(&t))
}

func (s *Server) listTasks(c *fiber.Ctx) error {
	limit, err := queryInt(c, "limit", apitype.TaskLimitDefault)
	if err != nil {
		return err
	}
	if limit < 1 || limit > apitype.MaxListLimit {
		return fiber.NewError(fiber.StatusBadRequest, "query parameter limit: must be between 1 and "+strconv.Itoa(apitype.MaxListLimit))
	}
	id := c.Params("id")
	if _, err := s.deps.Agents.Service.Get(c.UserContext(), id); err != nil {
		return s.fail(c, err)
	}
	ts, err := s.deps.Agents.Service.ListTasks(c.UserContext(), id, limit)
	if err != nil {
		return s.fail(c, err)
	}
	out := apitype.TaskList{Tasks: make([]apitype.Task, 0, len(ts))}
	for i := range ts {
		out.Tasks = append(out.Tasks, taskView(&ts[i]))
	}
	return c.JSON(out)
}

func (s *Server) getTask(c *fiber.Ctx) error {
	t, err := s.deps.Agents.Service.GetTask(c.UserContext(), c.Params("id"))
	if err != nil {
		return s.fail(c, err)
	}
	return c.JSON(taskView(&t))
}

func (s *Server) cancelTask(c *fiber.Ctx) error {
	t, err := s.deps.Agents.Service.CancelTask(c.UserContext(), c.Params("id"), actor(c))
	if err != nil {
		return s.fail(c, err)
	}
	return c.JSON(taskView(&t))
}

// taskView shows a task's output as JSON when it is JSON (and whole), as
// text otherwise.
func taskView(t *agents.Task) apitype.Task {
	v := apitype.Task{
		ID: t.ID, Agent: t.Agent, IdempotencyKey: t.IdempotencyKey, State: string(t.State), Actor: t.Actor,
		Input: t.Input, Truncated: t.Truncated, ExitCode: t.ExitCode, Error: t.Error, Timeout: t.Timeout.String(),
		CreatedAt: t.CreatedAt, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt,
	}
	if len(v.Input) == 0 || !json.Valid(v.Input) {
		v.Input = json.RawMessage("{}")
	}
	out := bytes.TrimSpace(t.Output)
	switch {
	case len(out) == 0:
	case !t.Truncated && json.Valid(out):
		v.Output = json.RawMessage(out)
	default:
		v.OutputText = strings.ToValidUTF8(string(t.Output), "\uFFFD")
	}
	return v
}

func queryBool(c *fiber.Ctx, name string) (bool, error) {
	switch v := c.Query(name); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, fiber.NewError(fiber.StatusBadRequest, "query parameter "+name+": "+quoteValue(v)+" is not true or false")
	}
}

func queryDuration(c *fiber.Ctx, name string, max time.Duration) (time.Duration, error) {
	v := c.Query(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > max {
		return 0, fiber.NewError(fiber.StatusBadRequest, "query parameter "+name+": "+quoteValue(v)+" is not a duration from 0s to "+max.String())
	}
	return d, nil
}
