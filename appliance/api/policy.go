package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// PolicyService is what the policy routes use; *policy.Service is one.
// Every change it makes is audited by the service itself, refusals too.
type PolicyService interface {
	List(ctx context.Context) ([]policy.Policy, error)
	Get(ctx context.Context, sub policy.Subject) (policy.Policy, error)
	Put(ctx context.Context, actor string, doc *policy.Document, ifVersion int64) (policy.Change, error)
	History(ctx context.Context, sub policy.Subject, before int64, limit int) ([]policy.Version, error)
	Rollback(ctx context.Context, actor string, sub policy.Subject, to, ifVersion int64) (policy.Change, error)
	Tenants(ctx context.Context) ([]policy.Tenant, error)
	Tenant(ctx context.Context, name string) (policy.Tenant, error)
	PutTenant(ctx context.Context, actor string, doc *policy.TenantDocument) (policy.TenantChange, error)
	Scope(ctx context.Context, user string) (policy.Scope, error)
	SetScope(ctx context.Context, actor, user string, restricted bool, tenants []string) (policy.Scope, error)
	Decisions(ctx context.Context, q policy.DecisionQuery) ([]policy.DecisionRecord, error)
	Coverage(ctx context.Context) (policy.Coverage, error)
	Set() *policy.Set
}

var _ PolicyService = (*policy.Service)(nil)

// policyRoutes serves the policies, tenants, scopes, decisions and
// coverage. Reads: GET /policies, /policies/{kind}/{name},
// /policies/{kind}/{name}/history, /tenants, /tenants/{name},
// /users/{name}/tenants, /decisions, /coverage. Changes (admin): PUT
// /policies/{kind}/{name}, POST /policies/{kind}/{name}/rollback, PUT
// /tenants/{name}, PUT /users/{name}/tenants.
//
// A caller restricted to some tenants (policy.Scope) sees nothing of the
// others: a tenant, a tenant's policy, an agent's policy, a decision or
// an agent's coverage outside its scope is answered 404, or left out of a
// list, exactly as what does not exist.
func (s *Server) policyRoutes(v1 fiber.Router) {
	v1.Get("/policies", s.listPolicies)
	v1.Get("/policies/:kind/:name", s.getPolicy)
	v1.Put("/policies/:kind/:name", s.putPolicy)
	v1.Get("/policies/:kind/:name/history", s.policyHistory)
	v1.Post("/policies/:kind/:name/rollback", s.rollbackPolicy)
	v1.Get("/tenants", s.listTenants)
	v1.Get("/tenants/:name", s.getTenant)
	v1.Put("/tenants/:name", s.putTenant)
	v1.Get("/users/:name/tenants", s.getScope)
	v1.Put("/users/:name/tenants", s.putScope)
	v1.Get("/decisions", s.listDecisions)
	v1.Get("/coverage", s.coverage)
}

// maxParam bounds a name taken from the path.
const maxParam = 253

// param is the path parameter name, unescaped (a category may hold spaces
// or a "/", sent as %2F) and bounded.
func param(c *fiber.Ctx, name string) (string, error) {
	raw := c.Params(name)
	v, err := url.PathUnescape(raw)
	if err != nil || v == "" || len(v) > maxParam || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fiber.NewError(fiber.StatusBadRequest, "path parameter "+name+": "+quoteValue(raw)+" is not 1 to 253 printable characters")
	}
	return v, nil
}

// subjectOf is the policy subject the path names.
func subjectOf(c *fiber.Ctx) (policy.Subject, error) {
	kind := policy.SubjectKind(c.Params("kind"))
	switch kind {
	case policy.SubjectAgent, policy.SubjectCategory, policy.SubjectTenant:
	default:
		return policy.Subject{}, fiber.NewError(fiber.StatusBadRequest, "path parameter kind: "+quoteValue(string(kind))+" is not agent, category or tenant")
	}
	name, err := param(c, "name")
	if err != nil {
		return policy.Subject{}, err
	}
	return policy.Subject{Kind: kind, Name: name}, nil
}

// scopeOf is which tenants the caller may see. Administrators and root
// see every tenant without asking; an operator's or auditor's session or
// token is looked up by its username ("token:<name>" for a token).
func (s *Server) scopeOf(c *fiber.Ctx) (policy.Scope, error) {
	p := principalOf(c)
	if p.Kind == auth.KindSystem || p.Role == auth.RoleAdmin {
		return policy.Scope{User: p.User}, nil
	}
	sc, err := s.deps.Policy.Scope(c.UserContext(), p.User)
	if err != nil {
		return sc, err
	}
	return sc, nil
}

// sees reports whether a caller of scope sc may see the policy of sub:
// a category's policy concerns no tenant in particular and is seen by
// all; a tenant's by those who see the tenant; an agent's by those who
// see the agent's tenant, or by an unrestricted caller when no deployed
// agent has that id.
func (s *Server) sees(ctx context.Context, sc policy.Scope, sub policy.Subject) bool {
	if !sc.Restricted {
		return true
	}
	switch sub.Kind {
	case policy.SubjectCategory:
		return true
	case policy.SubjectTenant:
		return sc.Sees(sub.Name)
	}
	t, ok := s.agentTenant(ctx, sub.Name)
	return ok && sc.Sees(t)
}

// agentTenant is the tenant of a deployed agent, when omertad serves
// agents and it is one.
func (s *Server) agentTenant(ctx context.Context, id string) (string, bool) {
	svc := s.deps.Agents.Service
	if svc == nil {
		return "", false
	}
	a, err := svc.Get(ctx, id)
	if err != nil {
		return "", false
	}
	return a.Tenant, true
}

// notFoundFor answers a subject outside the caller's scope, as omertad
// answers one that does not exist.
func notFoundFor(sub policy.Subject) error {
	return fiber.NewError(fiber.StatusNotFound, "no policy for "+terminal.Escape(sub.String()))
}

func (s *Server) listPolicies(c *fiber.Ctx) error {
	sc, err := s.scopeOf(c)
	if err != nil {
		return s.fail(c, err)
	}
	ps, err := s.deps.Policy.List(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	out := apitype.PolicyList{Profile: string(s.deps.Policy.Set().Profile()), Policies: make([]apitype.PolicyView, 0, len(ps))}
	for i := range ps {
		if s.sees(c.UserContext(), sc, ps[i].Subject) {
			out.Policies = append(out.Policies, policyView(&ps[i], false))
		}
	}
	return c.JSON(out)
}

func (s *Server) getPolicy(c *fiber.Ctx) error {
	sub, err := subjectOf(c)
	if err != nil {
		return err
	}
	if err := s.checkSees(c, sub); err != nil {
		return err
	}
	p, err := s.deps.Policy.Get(c.UserContext(), sub)
	if err != nil {
		return s.fail(c, err)
	}
	return c.JSON(policyView(&p, true))
}

// checkSees answers 404 for a subject outside the caller's scope.
func (s *Server) checkSees(c *fiber.Ctx, sub policy.Subject) error {
	sc, err := s.scopeOf(c)
	if err != nil {
		return s.fail(c, err)
	}
	if !s.sees(c.UserContext(), sc, sub) {
		return notFoundFor(sub)
	}
	return nil
}

func (s *Server) putPolicy(c *fiber.Ctx) error {
	sub, err := subjectOf(c)
	if err != nil {
		return err
	}
	var req apitype.PolicyPut
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := checkDocumentText(req.Document); err != nil {
		return s.fail(c, err)
	}
	ifVersion, err := ifVersionOf(c, req.IfVersion)
	if err != nil {
		return s.fail(c, err)
	}
	doc, err := policy.Parse([]byte(req.Document))
	if err != nil {
		return s.fail(c, err)
	}
	if want := normalSubject(sub); doc.Subject != want {
		return s.fail(c, invalidField("document.subject", manifest.CodeInvalid,
			"names "+doc.Subject.String()+" but the path names "+want.String()))
	}
	ch, err := s.deps.Policy.Put(c.UserContext(), actor(c), doc, ifVersion)
	if err = s.committed(c, err); err != nil {
		return s.fail(c, err)
	}
	status := fiber.StatusOK
	if ch.Action == policy.ActionCreate {
		status = fiber.StatusCreated
	}
	return c.Status(status).JSON(changeView(&ch))
}

// normalSubject is sub as the policy package normalises it: a category
// compared without regard to case or surrounding spaces.
func normalSubject(sub policy.Subject) policy.Subject {
	if sub.Kind == policy.SubjectCategory {
		sub.Name = strings.ToLower(strings.TrimSpace(sub.Name))
	}
	return sub
}

// checkDocumentText bounds a document before it is parsed.
func checkDocumentText(doc string) error {
	switch {
	case strings.TrimSpace(doc) == "":
		return invalidField("document", manifest.CodeRequired, "the policy or tenant document, as YAML or JSON text")
	case len(doc) > apitype.MaxPolicyDocument:
		return invalidField("document", manifest.CodeRange,
			strconv.Itoa(len(doc))+" bytes; at most "+strconv.Itoa(apitype.MaxPolicyDocument))
	}
	return nil
}

// ifVersionOf is the version a change expects: the body's if_version, or
// the If-Match header (a number, quoted or not); both given must agree.
func ifVersionOf(c *fiber.Ctx, body int64) (int64, error) {
	if body < 0 {
		return 0, invalidField("if_version", manifest.CodeInvalid, "a version is 1 or more; 0 checks nothing")
	}
	h := strings.TrimSpace(c.Get(fiber.HeaderIfMatch))
	if h == "" {
		return body, nil
	}
	n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil || n < 1 {
		return 0, invalidField("If-Match", manifest.CodeInvalid, quoteValue(h)+" is not a policy version such as \"3\"")
	}
	if body != 0 && body != n {
		return 0, invalidField("if_version", manifest.CodeInvalid, "is "+strconv.FormatInt(body, 10)+" but If-Match says "+strconv.FormatInt(n, 10))
	}
	return n, nil
}

func invalidField(path string, code manifest.Code, reason string) error {
	return &policy.InvalidError{Problems: manifest.Problems{{Path: path, Code: code, Reason: reason}}}
}

func (s *Server) policyHistory(c *fiber.Ctx) error {
	sub, err := subjectOf(c)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", apitype.PolicyHistoryLimitDefault)
	if err != nil {
		return err
	}
	if limit < 1 || limit > policy.MaxHistory {
		return fiber.NewError(fiber.StatusBadRequest, "query parameter limit: must be between 1 and "+strconv.Itoa(policy.MaxHistory))
	}
	before, err := queryInt(c, "before", 0)
	if err != nil {
		return err
	}
	if err := s.checkSees(c, sub); err != nil {
		return err
	}
	vs, err := s.deps.Policy.History(c.UserContext(), sub, int64(before), limit)
	if err != nil {
		return s.fail(c, err)
	}
	out := apitype.PolicyHistory{Subject: subjectView(normalSubject(sub)), Versions: make([]apitype.PolicyVersion, 0, len(vs))}
	for _, v := range vs {
		out.Versions = append(out.Versions, versionView(&v))
	}
	return c.JSON(out)
}

func (s *Server) rollbackPolicy(c *fiber.Ctx) error {
	sub, err := subjectOf(c)
	if err != nil {
		return err
	}
	var req apitype.PolicyRollback
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Version < 1 {
		return s.fail(c, invalidField("version", manifest.CodeRequired, "the version to roll back to, 1 or more"))
	}
	ifVersion, err := ifVersionOf(c, req.IfVersion)
	if err != nil {
		return s.fail(c, err)
	}
	ch, err := s.deps.Policy.Rollback(c.UserContext(), actor(c), sub, req.Version, ifVersion)
	if err = s.committed(c, err); err != nil {
		return s.fail(c, err)
	}
	return c.JSON(changeView(&ch))
}

// specJSON is a policy's rules as JSON; a Spec always encodes.
func specJSON(sp *policy.Spec) json.RawMessage {
	b, err := json.Marshal(sp)
	if err != nil {
		return json.RawMessage("{}")
	}
	return b
}

func subjectView(sub policy.Subject) apitype.PolicySubject {
	return apitype.PolicySubject{Kind: string(sub.Kind), Name: sub.Name}
}

// policyView is p's view; withDocument adds the whole document as JSON
// text, which PUT takes back as it is.
func policyView(p *policy.Policy, withDocument bool) apitype.PolicyView {
	v := apitype.PolicyView{Subject: subjectView(p.Subject), Version: p.Version, Description: p.Description,
		Spec: specJSON(&p.Spec), UpdatedAt: p.UpdatedAt, UpdatedBy: p.UpdatedBy}
	if withDocument {
		doc := policy.Document{APIVersion: policy.APIVersion, Kind: policy.KindPolicy, Subject: p.Subject, Description: p.Description, Spec: p.Spec}
		if b, err := json.MarshalIndent(doc, "", "  "); err == nil {
			v.Document = string(b) + "\n"
		}
	}
	return v
}

func versionView(v *policy.Version) apitype.PolicyVersion {
	out := apitype.PolicyVersion{Version: v.Version, Action: string(v.Action), FromVersion: v.FromVersion,
		Description: v.Description, Actor: v.Actor, At: v.At}
	if v.Spec != nil {
		out.Spec = specJSON(v.Spec)
	}
	return out
}

func changeView(ch *policy.Change) apitype.PolicyChange {
	return apitype.PolicyChange{Policy: policyView(&ch.Policy, true), Action: string(ch.Action), Unchanged: ch.Unchanged,
		NonCompliant: findingViews(ch.NonCompliant)}
}

func findingViews(fs []policy.Finding) []apitype.PolicyFinding {
	out := make([]apitype.PolicyFinding, 0, len(fs))
	for _, f := range fs {
		out = append(out, apitype.PolicyFinding{Agent: f.Agent, Tenant: f.Tenant, Decision: decisionView(&f.Decision)})
	}
	return out
}

// decisionView mirrors a decision; its reasons carry foreign names
// (quoted by the policy package) and are escaped here for terminals.
func decisionView(d *policy.Decision) apitype.PolicyDecision {
	v := apitype.PolicyDecision{Allow: d.Allow, Rule: terminal.Escape(d.Rule), Reason: terminal.Escape(d.Reason),
		Applied: make([]string, 0, len(d.Applied)), Explicit: d.Explicit}
	for _, dn := range d.Denials {
		v.Denials = append(v.Denials, apitype.PolicyDenial{Rule: terminal.Escape(dn.Rule), Reason: terminal.Escape(dn.Reason)})
	}
	for _, w := range d.Warnings {
		v.Warnings = append(v.Warnings, terminal.Escape(w))
	}
	for _, a := range d.Applied {
		v.Applied = append(v.Applied, terminal.Escape(a))
	}
	return v
}

// deniedOf is the decision of an admission refusal, when err is one.
func deniedOf(err error) (*policy.DeniedError, bool) {
	var de *policy.DeniedError
	if errors.As(err, &de) {
		return de, true
	}
	return nil, false
}
