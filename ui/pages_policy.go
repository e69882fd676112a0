package ui

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// policyAPI is the part of API (backend.go) that the policy pages and
// routes call.
type policyAPI interface {
	Policies(ctx context.Context) (apitype.PolicyList, error)
	Policy(ctx context.Context, kind, name string) (apitype.PolicyView, error)
	PutPolicy(ctx context.Context, kind, name, document string, ifVersion int64) (apitype.PolicyChange, error)
	PolicyHistory(ctx context.Context, kind, name string, before int64, limit int) (apitype.PolicyHistory, error)
	RollbackPolicy(ctx context.Context, kind, name string, to, ifVersion int64) (apitype.PolicyChange, error)
	Tenants(ctx context.Context) (apitype.TenantList, error)
	Tenant(ctx context.Context, name string) (apitype.TenantView, error)
	PutTenant(ctx context.Context, name, document string) (apitype.TenantChange, error)
	TenantScope(ctx context.Context, user string) (apitype.TenantScope, error)
	SetTenantScope(ctx context.Context, user string, req apitype.TenantScopeSet) (apitype.TenantScope, error)
	Decisions(ctx context.Context, f apiclient.DecisionFilter) (apitype.DecisionList, error)
	Coverage(ctx context.Context) (apitype.CoverageView, error)
}

// Actions the policy pages show forms for, as omertad decides them
// (auth's policy.read: every role; policy.write: the administrator).
const (
	actPolicyRead  = "policy.read"
	actPolicyWrite = "policy.write"
)

// policyKinds are the subjects a policy applies to, for the new-policy
// form's choice.
var policyKinds = []string{apitype.SubjectAgent, apitype.SubjectCategory, apitype.SubjectTenant}

// maxDocumentField bounds a document posted from a form.
const maxDocumentField = apitype.MaxPolicyDocument

// policyPages mounts the policy pages on the signed-in group.
func (s *Server) policyPages(p fiber.Router) {
	p.Get("/policies", s.policiesPage)
	p.Post("/policies", s.policyCreate)
	p.Get("/policies/:kind/:name", s.policyPage)
	p.Post("/policies/:kind/:name", s.policySubmit)
	p.Get("/tenants", s.tenantsPage)
	p.Post("/tenants", s.tenantSubmit)
	p.Post("/tenants/scope", s.scopeSubmit)
	p.Get("/decisions", s.decisionsPage)
}

// --- the policies list ------------------------------------------------------

type policiesData struct {
	List     apitype.PolicyList
	Coverage part[coverageKPI]
	Kinds    []string
	New      struct{ Kind, Name, Document string }
	Problems []problemView
}

const newPolicyTemplate = `apiVersion: omertaos.dev/v1
kind: Policy
subject: {kind: agent, name: my-agent}
description: what this policy is for
spec:
  max: {memory: 2Gi}
`

func (s *Server) policiesPage(c *fiber.Ctx) error {
	d, err := s.loadPolicies(c)
	if err != nil {
		return s.backendError(c, err)
	}
	d.New.Kind, d.New.Document = apitype.SubjectAgent, newPolicyTemplate
	return s.renderPolicies(c, fiber.StatusOK, d, "", "")
}

func (s *Server) loadPolicies(c *fiber.Ctx) (*policiesData, error) {
	w := who(c)
	if !can(w, actPolicyRead) {
		return nil, &apiclient.Error{Status: http.StatusForbidden, Message: "role " + strconv.Quote(w.Role) + " may not read policies"}
	}
	p := api(c)
	l, err := p.Policies(c.UserContext())
	if err != nil {
		return nil, err
	}
	d := &policiesData{List: l, Kinds: policyKinds}
	cov, err := p.Coverage(c.UserContext())
	fill(&d.Coverage, coverageKPIOf(cov), err)
	return d, nil
}

func (s *Server) renderPolicies(c *fiber.Ctx, status int, d *policiesData, notice, msg string) error {
	w := who(c)
	return s.render(c, status, "policies", &page{Title: "Policies", Nav: "policies", Who: w, CSRF: w.CSRFToken, Notice: notice, Error: msg, D: d})
}

// policyCreate posts the new-policy form: the subject from the form, the
// document as written.
func (s *Server) policyCreate(c *fiber.Ctx) error {
	if !can(who(c), actPolicyWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators change policies.")
	}
	kind, name, doc := c.FormValue("kind"), trimTo(strings.TrimSpace(c.FormValue("name")), maxParam), c.FormValue("document")
	d, err := s.loadPolicies(c)
	if err != nil {
		return s.backendError(c, err)
	}
	d.New.Kind, d.New.Name, d.New.Document = kind, name, trimTo(doc, maxDocumentField)
	if len(doc) > maxDocumentField {
		return s.renderPolicies(c, fiber.StatusBadRequest, d, "", "The document is larger than "+strconv.Itoa(maxDocumentField)+" bytes.")
	}
	p := api(c)
	ch, err := p.PutPolicy(c.UserContext(), kind, name, doc, 0)
	if err != nil {
		st, msg, probs := formError(err)
		d.Problems = probs
		return s.renderPolicies(c, st, d, "", msg)
	}
	return c.Redirect(policyURL(ch.Policy.Subject)+"?done="+ch.Action, fiber.StatusSeeOther)
}

// formError is a refused change as the page shows it: the status, a
// sentence, and the field problems omertad named.
func formError(err error) (int, string, []problemView) {
	var ie *apiclient.InvalidError
	if errors.As(err, &ie) {
		return ie.Err.Status, "omertad refused the document; each problem names its field:", problemViews(ie.Problems)
	}
	if statusOf(err) == http.StatusConflict {
		return http.StatusConflict, "Someone changed this policy since you opened the page: " + messageOf(err) + ". Reload it and apply your change again.", nil
	}
	st, msg := explain(err)
	return st, msg, nil
}

func problemViews(ps []apitype.Problem) []problemView {
	out := make([]problemView, 0, len(ps))
	for _, p := range ps {
		out = append(out, problemView{Path: p.Path, Reason: p.Reason})
	}
	return out
}

func policyURL(sub apitype.PolicySubject) string {
	return "/policies/" + sub.Kind + "/" + sub.Name
}

// --- one policy -------------------------------------------------------------

type policyData struct {
	Policy   apitype.PolicyView
	History  part[[]apitype.PolicyVersion]
	Document string
	Problems []problemView
	Findings []apitype.PolicyFinding
}

const policyPageHistory = 50

func (s *Server) loadPolicy(c *fiber.Ctx) (*policyData, error) {
	w := who(c)
	if !can(w, actPolicyRead) {
		return nil, &apiclient.Error{Status: http.StatusForbidden, Message: "role " + strconv.Quote(w.Role) + " may not read policies"}
	}
	p := api(c)
	kind, name := c.Params("kind"), c.Params("name")
	pv, err := p.Policy(c.UserContext(), kind, name)
	if err != nil {
		return nil, err
	}
	d := &policyData{Policy: pv, Document: pv.Document}
	h, err := p.PolicyHistory(c.UserContext(), kind, name, 0, policyPageHistory)
	fill(&d.History, h.Versions, err)
	return d, nil
}

func (s *Server) policyPage(c *fiber.Ctx) error {
	d, err := s.loadPolicy(c)
	if err != nil {
		return s.backendError(c, err)
	}
	notice := map[string]string{"create": "The policy is created.", "update": "A new version of the policy is saved.",
		"rollback": "The policy is rolled back: a new version equal to the one chosen."}[c.Query("done")]
	return s.renderPolicy(c, fiber.StatusOK, d, notice, "")
}

func (s *Server) renderPolicy(c *fiber.Ctx, status int, d *policyData, notice, msg string) error {
	w := who(c)
	title := "Policy for " + d.Policy.Subject.Kind + " " + d.Policy.Subject.Name
	return s.render(c, status, "policy", &page{Title: title, Nav: "policies", Who: w, CSRF: w.CSRFToken, Notice: notice, Error: msg, D: d})
}

// policySubmit is the policy page's forms: save a new version of the
// document (action save) or roll back to a version (action rollback),
// both against the version the page showed.
func (s *Server) policySubmit(c *fiber.Ctx) error {
	if !can(who(c), actPolicyWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators change policies.")
	}
	d, err := s.loadPolicy(c)
	if err != nil {
		return s.backendError(c, err)
	}
	shown, perr := strconv.ParseInt(c.FormValue("version"), 10, 64)
	if perr != nil || shown < 1 {
		return s.renderPolicy(c, fiber.StatusBadRequest, d, "", "The form lost the version it was made for; reload the page.")
	}
	p := api(c)
	kind, name := c.Params("kind"), c.Params("name")
	var ch apitype.PolicyChange
	switch c.FormValue("action") {
	case "save":
		doc := c.FormValue("document")
		d.Document = trimTo(doc, maxDocumentField)
		if len(doc) > maxDocumentField {
			return s.renderPolicy(c, fiber.StatusBadRequest, d, "", "The document is larger than "+strconv.Itoa(maxDocumentField)+" bytes.")
		}
		ch, err = p.PutPolicy(c.UserContext(), kind, name, doc, shown)
	case "rollback":
		to, terr := strconv.ParseInt(c.FormValue("to"), 10, 64)
		if terr != nil || to < 1 {
			return s.renderPolicy(c, fiber.StatusBadRequest, d, "", "Choose a version to roll back to.")
		}
		ch, err = p.RollbackPolicy(c.UserContext(), kind, name, to, shown)
	default:
		return s.renderPolicy(c, fiber.StatusBadRequest, d, "", "Unknown action.")
	}
	if err != nil {
		st, msg, probs := formError(err)
		d.Problems = probs
		return s.renderPolicy(c, st, d, "", msg)
	}
	if len(ch.NonCompliant) > 0 {
		// Shown at once, not after a redirect: these agents now fail.
		nd, lerr := s.loadPolicy(c)
		if lerr != nil {
			return s.backendError(c, lerr)
		}
		nd.Findings = ch.NonCompliant
		return s.renderPolicy(c, fiber.StatusOK, nd, "Saved as version "+strconv.FormatInt(ch.Policy.Version, 10)+
			". Deployed agents that passed before now fail it: see below.", "")
	}
	return c.Redirect(policyURL(ch.Policy.Subject)+"?done="+ch.Action, fiber.StatusSeeOther)
}

// --- tenants ----------------------------------------------------------------

type tenantsData struct {
	Tenants  []apitype.TenantView
	Document string
	Problems []problemView
	Findings []apitype.PolicyFinding
}

const newTenantTemplate = `apiVersion: omertaos.dev/v1
kind: Tenant
name: my-team
description: who this tenant is
quotas: {agents: 10, cpu: "8", memory: 32Gi}
`

func (s *Server) loadTenants(c *fiber.Ctx) (*tenantsData, error) {
	w := who(c)
	if !can(w, actPolicyRead) {
		return nil, &apiclient.Error{Status: http.StatusForbidden, Message: "role " + strconv.Quote(w.Role) + " may not read tenants"}
	}
	p := api(c)
	l, err := p.Tenants(c.UserContext())
	if err != nil {
		return nil, err
	}
	return &tenantsData{Tenants: l.Tenants, Document: newTenantTemplate}, nil
}

func (s *Server) tenantsPage(c *fiber.Ctx) error {
	d, err := s.loadTenants(c)
	if err != nil {
		return s.backendError(c, err)
	}
	notice := map[string]string{"saved": "The tenant is saved."}[c.Query("done")]
	return s.renderTenants(c, fiber.StatusOK, d, notice, "")
}

func (s *Server) renderTenants(c *fiber.Ctx, status int, d *tenantsData, notice, msg string) error {
	w := who(c)
	return s.render(c, status, "tenants", &page{Title: "Tenants", Nav: "tenants", Who: w, CSRF: w.CSRFToken, Notice: notice, Error: msg, D: d})
}

// tenantSubmit saves the tenant the posted document names (name field).
func (s *Server) tenantSubmit(c *fiber.Ctx) error {
	if !can(who(c), actPolicyWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators change tenants.")
	}
	d, err := s.loadTenants(c)
	if err != nil {
		return s.backendError(c, err)
	}
	name, doc := trimTo(strings.TrimSpace(c.FormValue("name")), maxParam), c.FormValue("document")
	d.Document = trimTo(doc, maxDocumentField)
	if len(doc) > maxDocumentField {
		return s.renderTenants(c, fiber.StatusBadRequest, d, "", "The document is larger than "+strconv.Itoa(maxDocumentField)+" bytes.")
	}
	p := api(c)
	ch, err := p.PutTenant(c.UserContext(), name, doc)
	if err != nil {
		st, msg, probs := formError(err)
		d.Problems = probs
		return s.renderTenants(c, st, d, "", msg)
	}
	if len(ch.NonCompliant) > 0 {
		nd, lerr := s.loadTenants(c)
		if lerr != nil {
			return s.backendError(c, lerr)
		}
		nd.Findings = ch.NonCompliant
		return s.renderTenants(c, fiber.StatusOK, nd, "The tenant is saved. Deployed agents that passed before now fail: see below.", "")
	}
	return c.Redirect("/tenants?done=saved", fiber.StatusSeeOther)
}

// scopeSubmit restricts a user to the tenants listed (comma or space
// separated), or lifts the restriction (restricted unchecked).
func (s *Server) scopeSubmit(c *fiber.Ctx) error {
	if !can(who(c), actPolicyWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators restrict users to tenants.")
	}
	d, err := s.loadTenants(c)
	if err != nil {
		return s.backendError(c, err)
	}
	user := trimTo(strings.TrimSpace(c.FormValue("user")), maxParam)
	req := apitype.TenantScopeSet{Restricted: c.FormValue("restricted") != ""}
	if req.Restricted {
		req.Tenants = strings.FieldsFunc(trimTo(c.FormValue("tenants"), 4096), func(r rune) bool { return r == ',' || r == ' ' })
		if len(req.Tenants) > apitype.MaxScopeTenants {
			return s.renderTenants(c, fiber.StatusBadRequest, d, "", "At most "+strconv.Itoa(apitype.MaxScopeTenants)+" tenants.")
		}
	}
	sc, err := api(c).SetTenantScope(c.UserContext(), user, req)
	if err != nil {
		st, msg, probs := formError(err)
		d.Problems = probs
		return s.renderTenants(c, st, d, "", msg)
	}
	notice := sc.User + " sees every tenant."
	if sc.Restricted {
		notice = sc.User + " sees only: " + strings.Join(sc.Tenants, ", ") + " (nothing of the others)."
		if len(sc.Tenants) == 0 {
			notice = sc.User + " sees no tenant at all."
		}
	}
	return s.renderTenants(c, fiber.StatusOK, d, notice, "")
}

// --- decisions --------------------------------------------------------------

type decisionsData struct {
	All       bool
	Decisions []decisionRow
}

// decisionRow is a recorded decision with its rule explained in words.
type decisionRow struct {
	apitype.DecisionRecord
	Explained string
}

const decisionsPage = 100

func (s *Server) decisionsPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actPolicyRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not read admission decisions.")
	}
	p := api(c)
	all := c.Query("all") == "1"
	l, err := p.Decisions(c.UserContext(), apiclient.DecisionFilter{Denied: !all, Limit: decisionsPage})
	if err != nil {
		return s.backendError(c, err)
	}
	d := &decisionsData{All: all, Decisions: make([]decisionRow, 0, len(l.Decisions))}
	for _, r := range l.Decisions {
		d.Decisions = append(d.Decisions, decisionRow{DecisionRecord: r, Explained: explainRule(r.Decision.Rule)})
	}
	return s.render(c, fiber.StatusOK, "decisions", &page{Title: "Admission decisions", Nav: "decisions", Who: w, CSRF: w.CSRFToken, D: d})
}

// ruleWords says in words what each rule field of a decision limits.
var ruleWords = map[string]string{
	"isolation":             "how weakly the agent may be isolated from the machine",
	"network.modes":         "which network modes the agent may use",
	"network.egress":        "which destinations the agent may reach",
	"gpu.allowed":           "whether the agent may have GPUs",
	"gpu.vram":              "how much GPU memory the agent may have",
	"max.cpu":               "how much CPU one agent may have",
	"max.memory":            "how much memory one agent may have",
	"max.pids":              "how many processes one agent may run",
	"max.gpus":              "how many GPUs one agent may have",
	"images":                "which images may run",
	"images.requireSigned":  "whether an image must carry a verified signature",
	"models":                "which models the agent may call",
	"models.allowCloud":     "whether the agent may call cloud models",
	"secrets":               "which secrets the agent may receive",
	"tasks.perMinute":       "how many tasks a minute the agent may be given",
	"budget.tokensPerMonth": "how many model tokens the agent may use a month",
	"budget.usdPerMonth":    "how much the agent may spend on models a month",
	"agents":                "how many agents the tenant may run",
	"cpu":                   "how much CPU the tenant's agents may hold together",
	"memory":                "how much memory the tenant's agents may hold together",
	"gpus":                  "how many GPUs the tenant's agents may hold together",
	"vram":                  "how much GPU memory the tenant's agents may hold together",
	"tokensPerMonth":        "how many model tokens the tenant may use a month",
	"usdPerMonth":           "how much the tenant may spend on models a month",
}

// explainRule turns a rule string ("policy:agent/foo@v3 max.memory",
// "quota:tenant/acme agents", "profile:enterprise isolation") into a
// sentence: who set the limit, and what it limits.
func explainRule(rule string) string {
	if rule == "" {
		return ""
	}
	origin, field, _ := strings.Cut(rule, " ")
	layer, who, _ := strings.Cut(origin, ":")
	var by string
	switch layer {
	case "policy":
		by = "The policy for " + strings.Replace(who, "/", " ", 1)
	case "profile":
		by = "The " + who + " profile"
	case "quota":
		by = "The quota of " + strings.Replace(who, "/", " ", 1)
	case "tenant":
		return "The agent's tenant " + who + " does not exist: create it, or deploy into another."
	default:
		by = "The rule " + origin
	}
	what, ok := ruleWords[field]
	if !ok || field == "" {
		return by + " refused it."
	}
	return by + " limits " + what + "."
}

// --- the KPIs ---------------------------------------------------------------

// coverageKPI is the dashboard's and the policies page's figures: policy
// coverage against its target, and the manifests validated, in percent.
type coverageKPI struct {
	Coverage     ratioKPI
	Manifests    ratioKPI
	HasManifests bool
	NonCompliant []apitype.AgentPolicyStatus
}

// ratioKPI is one share of the deployed agents; HasRate is false when
// none is deployed (no rate, not 100 %).
type ratioKPI struct {
	Of, Count int
	HasRate   bool
	Rate      float64
	Target    float64
	Met       bool
}

func ratioOf(count, of int, ratio *float64, target float64) ratioKPI {
	k := ratioKPI{Of: of, Count: count, Target: target * 100}
	if ratio != nil && *ratio >= 0 && *ratio <= 1 {
		k.HasRate, k.Rate, k.Met = true, *ratio*100, *ratio >= target
	}
	return k
}

func coverageKPIOf(cov apitype.CoverageView) coverageKPI {
	target := cov.Target
	if !(target > 0 && target <= 1) { // an omertad that sent none, or nonsense
		target = apitype.PolicyCoverageTarget
	}
	k := coverageKPI{Coverage: ratioOf(cov.Covered, cov.Deployed, cov.Ratio, target), NonCompliant: cov.NonCompliant}
	if m := cov.Manifests; m != nil {
		k.HasManifests, k.Manifests = true, ratioOf(m.Validated, m.Deployed, m.Ratio, 1)
	}
	return k
}
