package api

import (
	"context"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// This file serves the tenants, the users' tenant scopes, the decisions
// and the coverage KPIs (see policyRoutes).

func (s *Server) listTenants(c *fiber.Ctx) error {
	sc, err := s.scopeOf(c)
	if err != nil {
		return s.fail(c, err)
	}
	ts, err := s.deps.Policy.Tenants(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	running, err := s.runningRequests(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	out := apitype.TenantList{Tenants: make([]apitype.TenantView, 0, len(ts))}
	for i := range ts {
		if sc.Sees(ts[i].Name) {
			out.Tenants = append(out.Tenants, tenantView(&ts[i], running))
		}
	}
	return c.JSON(out)
}

func (s *Server) getTenant(c *fiber.Ctx) error {
	name, err := param(c, "name")
	if err != nil {
		return err
	}
	sc, err := s.scopeOf(c)
	if err != nil {
		return s.fail(c, err)
	}
	if err := sc.Check(name); err != nil {
		return s.fail(c, err)
	}
	t, err := s.deps.Policy.Tenant(c.UserContext(), name)
	if err != nil {
		return s.fail(c, err)
	}
	running, err := s.runningRequests(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	return c.JSON(tenantView(&t, running))
}

func (s *Server) putTenant(c *fiber.Ctx) error {
	name, err := param(c, "name")
	if err != nil {
		return err
	}
	var req apitype.TenantPut
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := checkDocumentText(req.Document); err != nil {
		return s.fail(c, err)
	}
	doc, err := policy.ParseTenant([]byte(req.Document))
	if err != nil {
		return s.fail(c, err)
	}
	if doc.Name != name {
		return s.fail(c, invalidField("document.name", manifest.CodeInvalid,
			"is "+quoteValue(doc.Name)+" but the path names "+quoteValue(name)))
	}
	ch, err := s.deps.Policy.PutTenant(c.UserContext(), actor(c), doc)
	if err = s.committed(c, err); err != nil {
		return s.fail(c, err)
	}
	running, err := s.runningRequests(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	status := fiber.StatusOK
	if ch.Created {
		status = fiber.StatusCreated
	}
	return c.Status(status).JSON(apitype.TenantChange{Tenant: tenantView(&ch.Tenant, running), Created: ch.Created,
		Unchanged: ch.Unchanged, NonCompliant: findingViews(ch.NonCompliant)})
}

// runningRequests are the deployed agents as admission sees them (their
// tenant and resources), for the tenants' usage; none when omertad serves
// no agents. An agent without a manifest holds nothing.
func (s *Server) runningRequests(ctx context.Context) ([]policy.Request, error) {
	svc := s.deps.Agents.Service
	if svc == nil {
		return nil, nil
	}
	as, err := svc.List(ctx)
	if err != nil {
		return nil, err
	}
	profile := s.deps.Policy.Set().Profile()
	out := make([]policy.Request, 0, len(as))
	for i := range as {
		if as[i].Manifest == nil || as[i].Desired == agents.DesiredDeleted {
			continue
		}
		out = append(out, policy.RequestFor(policy.OpCheck, as[i].ID, as[i].Tenant, as[i].Manifest, profile))
	}
	return out, nil
}

func tenantView(t *policy.Tenant, running []policy.Request) apitype.TenantView {
	q := t.Quotas
	u := policy.SumUsage(running, t.Name, "")
	return apitype.TenantView{
		Name: t.Name, Description: t.Description, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, UpdatedBy: t.UpdatedBy,
		Quotas: apitype.TenantQuotas{Agents: q.Agents, CPU: string(q.CPU), Memory: string(q.Memory), GPUs: q.GPUs,
			VRAM: string(q.VRAM), TokensPerMonth: q.TokensPerMonth, USDPerMonth: q.USDPerMonth},
		Usage: apitype.TenantUsage{Agents: u.Agents, CPUMillis: u.CPUMillis, CPU: string(manifest.FormatCPU(u.CPUMillis)),
			MemoryBytes: u.MemoryBytes, Memory: string(manifest.FormatBytes(u.MemoryBytes)), GPUs: u.GPUs, VRAMBytes: u.VRAMBytes},
	}
}

// getScope answers GET /users/{name}/tenants. Whether the user exists is
// auth's business: a name without a restriction recorded is unrestricted.
func (s *Server) getScope(c *fiber.Ctx) error {
	name, err := param(c, "name")
	if err != nil {
		return err
	}
	sc, err := s.deps.Policy.Scope(c.UserContext(), name)
	if err != nil {
		return s.fail(c, err)
	}
	return c.JSON(scopeView(sc))
}

func (s *Server) putScope(c *fiber.Ctx) error {
	name, err := param(c, "name")
	if err != nil {
		return err
	}
	var req apitype.TenantScopeSet
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if len(req.Tenants) > apitype.MaxScopeTenants {
		return s.fail(c, invalidField("tenants", manifest.CodeTooMany,
			strconv.Itoa(len(req.Tenants))+" tenants; at most "+strconv.Itoa(apitype.MaxScopeTenants)))
	}
	if !req.Restricted && len(req.Tenants) > 0 {
		return s.fail(c, invalidField("tenants", manifest.CodeInvalid, "an unrestricted user sees every tenant; list tenants only with restricted: true"))
	}
	// A token is scoped by its principal's name, "token:NAME"; a user
	// must exist.
	if s.deps.Auth != nil && !strings.HasPrefix(name, "token:") {
		if _, err := s.deps.Auth.GetUser(c.UserContext(), principalOf(c), name); err != nil {
			return s.authError(c, err)
		}
	}
	sc, err := s.deps.Policy.SetScope(c.UserContext(), actor(c), name, req.Restricted, req.Tenants)
	if err = s.committed(c, err); err != nil {
		return s.fail(c, err)
	}
	return c.JSON(scopeView(sc))
}

func scopeView(sc policy.Scope) apitype.TenantScope {
	v := apitype.TenantScope{User: sc.User, Restricted: sc.Restricted, Tenants: sc.Tenants}
	if v.Tenants == nil {
		v.Tenants = []string{}
	}
	return v
}

func (s *Server) listDecisions(c *fiber.Ctx) error {
	q, err := decisionQuery(c)
	if err != nil {
		return err
	}
	sc, err := s.scopeOf(c)
	if err != nil {
		return s.fail(c, err)
	}
	if q.Tenant != "" {
		if err := sc.Check(q.Tenant); err != nil {
			return s.fail(c, err)
		}
	}
	limit := q.Limit
	if sc.Restricted {
		// Others' decisions are left out after the query: ask for a full
		// page so that a page of the caller's own is still found.
		q.Limit = apitype.DecisionLimitMax
	}
	rs, err := s.deps.Policy.Decisions(c.UserContext(), q)
	if err != nil {
		return s.fail(c, err)
	}
	out := apitype.DecisionList{Decisions: make([]apitype.DecisionRecord, 0, min(len(rs), limit))}
	for i := range rs {
		if len(out.Decisions) == limit {
			break
		}
		r := &rs[i]
		if !sc.Sees(r.Tenant) {
			continue
		}
		out.Decisions = append(out.Decisions, apitype.DecisionRecord{ID: r.ID, At: r.At, Actor: terminal.Escape(r.Actor), Op: string(r.Op),
			Agent: r.Agent, Tenant: r.Tenant, Decision: decisionView(&r.Decision)})
	}
	return c.JSON(out)
}

// decisionQuery reads GET /decisions's filters: agent, tenant, denied,
// before (an id, for paging) and limit.
func decisionQuery(c *fiber.Ctx) (policy.DecisionQuery, error) {
	var q policy.DecisionQuery
	for name, dst := range map[string]*string{"agent": &q.Agent, "tenant": &q.Tenant} {
		v := c.Query(name)
		if len(v) > maxParam {
			return q, fiber.NewError(fiber.StatusBadRequest, "query parameter "+name+": longer than "+strconv.Itoa(maxParam)+" bytes")
		}
		*dst = v
	}
	denied, err := queryBool(c, "denied")
	if err != nil {
		return q, err
	}
	q.DeniedOnly = denied
	limit, err := queryInt(c, "limit", apitype.DecisionLimitDefault)
	if err != nil {
		return q, err
	}
	if limit < 1 || limit > apitype.DecisionLimitMax {
		return q, fiber.NewError(fiber.StatusBadRequest, "query parameter limit: must be between 1 and "+strconv.Itoa(apitype.DecisionLimitMax))
	}
	q.Limit = limit
	before, err := queryInt(c, "before", 0)
	if err != nil {
		return q, err
	}
	q.Before = int64(before)
	return q, nil
}

// coverage answers GET /coverage: the policy coverage KPI over the
// deployed agents the caller may see, and the manifests-validated KPI.
func (s *Server) coverage(c *fiber.Ctx) error {
	sc, err := s.scopeOf(c)
	if err != nil {
		return s.fail(c, err)
	}
	cov, err := s.deps.Policy.Coverage(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	out := coverageView(cov, sc)
	if s.deps.Agents.Service != nil {
		m, err := s.manifestStats(c.UserContext(), sc)
		if err != nil {
			return s.fail(c, err)
		}
		out.Manifests = &m
	}
	return c.JSON(out)
}

// coverageView counts again over the agents sc sees, so that a restricted
// operator's figures say nothing of the other tenants.
func coverageView(cov policy.Coverage, sc policy.Scope) apitype.CoverageView {
	out := apitype.CoverageView{Target: apitype.PolicyCoverageTarget, Agents: []apitype.AgentPolicyStatus{},
		NonCompliant: []apitype.AgentPolicyStatus{}}
	for _, a := range cov.Agents {
		if !sc.Sees(a.Tenant) {
			continue
		}
		v := apitype.AgentPolicyStatus{Agent: a.Agent, Tenant: a.Tenant, Explicit: a.Explicit, Allow: a.Allow,
			Rule: terminal.Escape(a.Rule), Reason: terminal.Escape(a.Reason), Applied: a.Applied}
		if v.Applied == nil {
			v.Applied = []string{}
		}
		out.Deployed++
		if a.Explicit {
			out.Explicit++
		}
		if a.Allow {
			out.Passing++
		} else {
			out.NonCompliant = append(out.NonCompliant, v)
		}
		if a.Explicit && a.Allow {
			out.Covered++
		}
		out.Agents = append(out.Agents, v)
	}
	if out.Deployed > 0 {
		r := float64(out.Covered) / float64(out.Deployed)
		out.Ratio = &r
	}
	return out
}

// manifestStats checks the stored manifest of every deployed agent sc
// sees, as a deploy checks it: 100 % by construction (a manifest that
// fails is refused at deploy), measured so that a stored one that no
// longer passes, or is missing, shows.
func (s *Server) manifestStats(ctx context.Context, sc policy.Scope) (apitype.ManifestStats, error) {
	var out apitype.ManifestStats
	as, err := s.deps.Agents.Service.List(ctx)
	if err != nil {
		return out, err
	}
	for i := range as {
		a := &as[i]
		if !sc.Sees(a.Tenant) {
			continue
		}
		if a.Desired == agents.DesiredDeleted {
			continue
		}
		out.Deployed++
		if manifestPasses(a.Manifest) {
			out.Validated++
		} else {
			out.Invalid = append(out.Invalid, a.ID)
		}
	}
	if out.Deployed > 0 {
		r := float64(out.Validated) / float64(out.Deployed)
		out.Ratio = &r
	}
	return out, nil
}

// manifestPasses reads m again as a deploy reads a manifest (its YAML
// through manifest.Parse, which checks it): on a copy, since Check
// normalises in place and the service's manifests may be shared. Secret
// values are redacted in what the service lists, as they are in Marshal.
func manifestPasses(m *manifest.Manifest) bool {
	if m == nil {
		return false
	}
	b, err := manifest.Marshal(m)
	if err != nil {
		return false
	}
	_, err = manifest.Parse(b)
	return err == nil
}
