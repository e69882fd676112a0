package uitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// fakePolicy is the fake's policy state: versioned policies (their rules
// kept as the document gave them, not judged), tenants, scopes and the
// decisions a test records. Coverage counts the fake's agents: covered
// when a policy names the agent or its tenant, failing when a test says
// so (SetNonCompliant).
type fakePolicy struct {
	versions  map[string][]apitype.PolicyVersion // "kind/name" -> oldest first
	tenants   map[string]*apitype.TenantView
	scopes    map[string][]string // user -> tenants; absent: unrestricted
	decisions []apitype.DecisionRecord
	failing   map[string]apitype.AgentPolicyStatus
	invalid   map[string]bool         // agents whose manifest does not pass
	deny      *apitype.PolicyDecision // set: every deploy is refused so
}

func newFakePolicy() fakePolicy {
	now := time.Now().UTC()
	return fakePolicy{versions: map[string][]apitype.PolicyVersion{}, scopes: map[string][]string{},
		tenants: map[string]*apitype.TenantView{"default": {Name: "default", CreatedAt: now, UpdatedAt: now, UpdatedBy: "omertad"}},
		failing: map[string]apitype.AgentPolicyStatus{}, invalid: map[string]bool{}}
}

// DenyDeploys makes every later deploy a 403 carrying a decision with
// rule and reason, as omertad answers a deploy its policy refuses.
func (f *Fake) DenyDeploys(rule, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pol.deny = &apitype.PolicyDecision{Rule: rule, Reason: reason, Denials: []apitype.PolicyDenial{{Rule: rule, Reason: reason}}, Applied: []string{"profile:user"}}
}

// AddDecision records an admission decision as omertad would after a
// deploy; it is listed newest first.
func (f *Fake) AddDecision(agent, tenant string, allow bool, rule, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := apitype.DecisionRecord{ID: int64(len(f.pol.decisions) + 1), At: time.Now().UTC(), Actor: "user:admin", Op: "deploy", Agent: agent,
		Tenant: tenant, Decision: apitype.PolicyDecision{Allow: allow, Applied: []string{"profile:user"}}}
	if !allow {
		d.Decision.Rule, d.Decision.Reason = rule, reason
		d.Decision.Denials = []apitype.PolicyDenial{{Rule: rule, Reason: reason}}
	}
	f.pol.decisions = append(f.pol.decisions, d)
}

// SetNonCompliant makes a deployed agent fail the policies in force.
func (f *Fake) SetNonCompliant(agent, rule, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pol.failing[agent] = apitype.AgentPolicyStatus{Agent: agent, Rule: rule, Reason: reason, Applied: []string{}}
}

// SetManifestInvalid makes a deployed agent's stored manifest fail the
// checks, for the manifests-validated KPI.
func (f *Fake) SetManifestInvalid(agent string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pol.invalid[agent] = true
}

// fakeDoc is what the fake reads of a policy or tenant document.
type fakeDoc struct {
	APIVersion  string                `yaml:"apiVersion"`
	Kind        string                `yaml:"kind"`
	Subject     apitype.PolicySubject `yaml:"subject"`
	Name        string                `yaml:"name"`
	Description string                `yaml:"description"`
	Spec        map[string]any        `yaml:"spec"`
	Quotas      map[string]any        `yaml:"quotas"`
}

func invalid(w http.ResponseWriter, path, reason string) {
	writeJSON(w, http.StatusBadRequest, apitype.Invalid{Error: "invalid: " + path + ": " + reason,
		Problems: []apitype.Problem{{Path: path, Code: "invalid", Reason: reason}}})
}

func readDoc(w http.ResponseWriter, text, kind string) (fakeDoc, bool) {
	var d fakeDoc
	if strings.TrimSpace(text) == "" {
		invalid(w, "document", "the document is required")
		return d, false
	}
	if err := safeyaml.Unmarshal([]byte(text), &d, safeyaml.DefaultLimits()); err != nil {
		invalid(w, "document", err.Error())
		return d, false
	}
	if d.APIVersion != "omertaos.dev/v1" || d.Kind != kind {
		invalid(w, "kind", "not an omertaos.dev/v1 "+kind)
		return d, false
	}
	return d, true
}

func (f *Fake) sees(p principal, tenant string) bool {
	ts, ok := f.pol.scopes[p.user]
	if !ok || p.role == "admin" {
		return true
	}
	for _, t := range ts {
		if t == tenant {
			return true
		}
	}
	return false
}

func (f *Fake) policyView(key string, withDoc bool) (apitype.PolicyView, bool) {
	vs := f.pol.versions[key]
	if len(vs) == 0 {
		return apitype.PolicyView{}, false
	}
	cur := vs[len(vs)-1]
	kind, name, _ := strings.Cut(key, "/")
	v := apitype.PolicyView{Subject: apitype.PolicySubject{Kind: kind, Name: name}, Version: cur.Version, Description: cur.Description,
		Spec: cur.Spec, UpdatedAt: cur.At, UpdatedBy: cur.Actor}
	if withDoc {
		doc, _ := json.MarshalIndent(map[string]any{"apiVersion": "omertaos.dev/v1", "kind": "Policy", "subject": v.Subject,
			"description": cur.Description, "spec": cur.Spec}, "", "  ")
		v.Document = string(doc) + "\n"
	}
	return v, true
}

func (f *Fake) policyRoutes() {
	f.route("GET /api/v1/policies", "policy.read", func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := apitype.PolicyList{Profile: "user", Policies: []apitype.PolicyView{}}
		keys := make([]string, 0, len(f.pol.versions))
		for k := range f.pol.versions {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if v, ok := f.policyView(k, false); ok && (v.Subject.Kind != "tenant" || f.sees(p, v.Subject.Name)) {
				out.Policies = append(out.Policies, v)
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	f.route("GET /api/v1/policies/{kind}/{name}", "policy.read", func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		v, ok := f.policyView(r.PathValue("kind")+"/"+r.PathValue("name"), true)
		if !ok || (v.Subject.Kind == "tenant" && !f.sees(p, v.Subject.Name)) {
			fail(w, http.StatusNotFound, "no policy for "+r.PathValue("kind")+"/"+r.PathValue("name"))
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
	f.route("PUT /api/v1/policies/{kind}/{name}", "policy.write", f.putPolicy)
	f.route("GET /api/v1/policies/{kind}/{name}/history", "policy.read", func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		key := r.PathValue("kind") + "/" + r.PathValue("name")
		vs := f.pol.versions[key]
		if len(vs) == 0 {
			fail(w, http.StatusNotFound, "no policy for "+key)
			return
		}
		out := apitype.PolicyHistory{Subject: apitype.PolicySubject{Kind: r.PathValue("kind"), Name: r.PathValue("name")}}
		for i := len(vs) - 1; i >= 0; i-- {
			out.Versions = append(out.Versions, vs[i])
		}
		writeJSON(w, http.StatusOK, out)
	})
	f.route("POST /api/v1/policies/{kind}/{name}/rollback", "policy.write", f.rollbackPolicy)
	f.tenantRoutes()
	f.route("GET /api/v1/decisions", "policy.read", f.listDecisions)
	f.route("GET /api/v1/coverage", "policy.read", f.coverage)
}

func (f *Fake) putPolicy(w http.ResponseWriter, r *http.Request, p principal) {
	var req apitype.PolicyPut
	if !decode(w, r, &req) {
		return
	}
	if h := r.Header.Get("If-Match"); h != "" {
		n, err := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
		if err != nil || n < 1 {
			invalid(w, "If-Match", "not a policy version")
			return
		}
		req.IfVersion = n
	}
	d, ok := readDoc(w, req.Document, "Policy")
	if !ok {
		return
	}
	kind, name := r.PathValue("kind"), r.PathValue("name")
	if d.Subject.Kind != kind || d.Subject.Name != name {
		invalid(w, "document.subject", fmt.Sprintf("names %s/%s but the path names %s/%s", d.Subject.Kind, d.Subject.Name, kind, name))
		return
	}
	if d.Spec == nil {
		invalid(w, "spec", "the rules are required")
		return
	}
	spec, _ := json.Marshal(d.Spec)
	f.mu.Lock()
	defer f.mu.Unlock()
	key := kind + "/" + name
	vs := f.pol.versions[key]
	if req.IfVersion > 0 && int64(len(vs)) != req.IfVersion {
		fail(w, http.StatusConflict, fmt.Sprintf("the policy for %s is at version %d, not %d", key, len(vs), req.IfVersion))
		return
	}
	action := "create"
	if len(vs) > 0 {
		action = "update"
	}
	f.pol.versions[key] = append(vs, apitype.PolicyVersion{Version: int64(len(vs) + 1), Action: action, Description: d.Description,
		Spec: spec, Actor: p.actor(), At: time.Now().UTC()})
	f.record(r, p, "policy."+action, key)
	v, _ := f.policyView(key, true)
	status := http.StatusOK
	if action == "create" {
		status = http.StatusCreated
	}
	writeJSON(w, status, apitype.PolicyChange{Policy: v, Action: action, NonCompliant: []apitype.PolicyFinding{}})
}

func (f *Fake) rollbackPolicy(w http.ResponseWriter, r *http.Request, p principal) {
	var req apitype.PolicyRollback
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := r.PathValue("kind") + "/" + r.PathValue("name")
	vs := f.pol.versions[key]
	switch {
	case len(vs) == 0:
		fail(w, http.StatusNotFound, "no policy for "+key)
		return
	case req.IfVersion > 0 && int64(len(vs)) != req.IfVersion:
		fail(w, http.StatusConflict, fmt.Sprintf("the policy for %s is at version %d, not %d", key, len(vs), req.IfVersion))
		return
	case req.Version < 1 || req.Version >= int64(len(vs)):
		invalid(w, "version", "no earlier version "+strconv.FormatInt(req.Version, 10))
		return
	}
	old := vs[req.Version-1]
	f.pol.versions[key] = append(vs, apitype.PolicyVersion{Version: int64(len(vs) + 1), Action: "rollback", FromVersion: old.Version,
		Description: old.Description, Spec: old.Spec, Actor: p.actor(), At: time.Now().UTC()})
	f.record(r, p, "policy.rollback", key)
	v, _ := f.policyView(key, true)
	writeJSON(w, http.StatusOK, apitype.PolicyChange{Policy: v, Action: "rollback", NonCompliant: []apitype.PolicyFinding{}})
}

// tenantUsage counts the fake's agents of tenant.
func (f *Fake) tenantUsage(tenant string) apitype.TenantUsage {
	var u apitype.TenantUsage
	for _, a := range f.agents {
		if a.Tenant == tenant || (a.Tenant == "" && tenant == "default") {
			u.Agents++
		}
	}
	u.CPU, u.Memory = "0", "0"
	return u
}

func (f *Fake) tenantRoutes() {
	f.route("GET /api/v1/tenants", "policy.read", func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := apitype.TenantList{Tenants: []apitype.TenantView{}}
		names := make([]string, 0, len(f.pol.tenants))
		for n := range f.pol.tenants {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if f.sees(p, n) {
				t := *f.pol.tenants[n]
				t.Usage = f.tenantUsage(n)
				out.Tenants = append(out.Tenants, t)
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	f.route("GET /api/v1/tenants/{name}", "policy.read", func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		t, ok := f.pol.tenants[r.PathValue("name")]
		if !ok || !f.sees(p, t.Name) {
			fail(w, http.StatusNotFound, "no tenant "+strconv.Quote(r.PathValue("name")))
			return
		}
		out := *t
		out.Usage = f.tenantUsage(t.Name)
		writeJSON(w, http.StatusOK, out)
	})
	f.route("GET /api/v1/users/{name}/tenants", "users.read", func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		ts, ok := f.pol.scopes[r.PathValue("name")]
		writeJSON(w, http.StatusOK, apitype.TenantScope{User: r.PathValue("name"), Restricted: ok, Tenants: append([]string{}, ts...)})
	})
	f.route("PUT /api/v1/tenants/{name}", "policy.write", f.putTenant)
	f.route("PUT /api/v1/users/{name}/tenants", "users.write", func(w http.ResponseWriter, r *http.Request, p principal) {
		var req apitype.TenantScopeSet
		if !decode(w, r, &req) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		user := r.PathValue("name")
		out := apitype.TenantScope{User: user, Restricted: req.Restricted, Tenants: []string{}}
		if req.Restricted {
			f.pol.scopes[user] = append([]string{}, req.Tenants...)
			out.Tenants = f.pol.scopes[user]
		} else {
			delete(f.pol.scopes, user)
		}
		f.record(r, p, "policy.scope.set", "user/"+user)
		writeJSON(w, http.StatusOK, out)
	})
}

func (f *Fake) putTenant(w http.ResponseWriter, r *http.Request, p principal) {
	var req apitype.TenantPut
	if !decode(w, r, &req) {
		return
	}
	d, ok := readDoc(w, req.Document, "Tenant")
	if !ok {
		return
	}
	name := r.PathValue("name")
	if d.Name != name {
		invalid(w, "document.name", fmt.Sprintf("is %q but the path names %q", d.Name, name))
		return
	}
	q := apitype.TenantQuotas{}
	if n, ok := d.Quotas["agents"].(uint64); ok {
		v := int64(n)
		q.Agents = &v
	}
	q.CPU, _ = d.Quotas["cpu"].(string)
	q.Memory, _ = d.Quotas["memory"].(string)
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UTC()
	t, exists := f.pol.tenants[name]
	if !exists {
		t = &apitype.TenantView{Name: name, CreatedAt: now}
		f.pol.tenants[name] = t
	}
	t.Description, t.Quotas, t.UpdatedAt, t.UpdatedBy = d.Description, q, now, p.actor()
	f.record(r, p, "policy.tenant.put", "tenant/"+name)
	out := *t
	out.Usage = f.tenantUsage(name)
	status := http.StatusOK
	if !exists {
		status = http.StatusCreated
	}
	writeJSON(w, status, apitype.TenantChange{Tenant: out, Created: !exists, NonCompliant: []apitype.PolicyFinding{}})
}

func (f *Fake) listDecisions(w http.ResponseWriter, r *http.Request, p principal) {
	q := r.URL.Query()
	limit := apitype.DecisionLimitDefault
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > apitype.DecisionLimitMax {
			fail(w, http.StatusBadRequest, "query parameter limit: out of range")
			return
		}
		limit = n
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := apitype.DecisionList{Decisions: []apitype.DecisionRecord{}}
	for i := len(f.pol.decisions) - 1; i >= 0 && len(out.Decisions) < limit; i-- {
		d := f.pol.decisions[i]
		if (q.Get("denied") == "true" && d.Decision.Allow) || (q.Get("agent") != "" && d.Agent != q.Get("agent")) || !f.sees(p, d.Tenant) {
			continue
		}
		out.Decisions = append(out.Decisions, d)
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Fake) coverage(w http.ResponseWriter, r *http.Request, p principal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := apitype.CoverageView{Target: apitype.PolicyCoverageTarget, Agents: []apitype.AgentPolicyStatus{},
		NonCompliant: []apitype.AgentPolicyStatus{}, Manifests: &apitype.ManifestStats{}}
	ids := make([]string, 0, len(f.agents))
	for id := range f.agents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		tenant := f.agents[id].Tenant
		if tenant == "" {
			tenant = "default"
		}
		if !f.sees(p, tenant) {
			continue
		}
		st := apitype.AgentPolicyStatus{Agent: id, Tenant: tenant, Allow: true, Applied: []string{"profile:user"}}
		_, own := f.pol.versions["agent/"+id]
		_, ten := f.pol.versions["tenant/"+tenant]
		st.Explicit = own || ten
		if bad, ok := f.pol.failing[id]; ok {
			st.Allow, st.Rule, st.Reason = false, bad.Rule, bad.Reason
			out.NonCompliant = append(out.NonCompliant, st)
		}
		out.Deployed++
		if st.Explicit {
			out.Explicit++
		}
		if st.Allow {
			out.Passing++
			if st.Explicit {
				out.Covered++
			}
		}
		out.Agents = append(out.Agents, st)
		out.Manifests.Deployed++
		if f.pol.invalid[id] {
			out.Manifests.Invalid = append(out.Manifests.Invalid, id)
		} else {
			out.Manifests.Validated++
		}
	}
	if out.Deployed > 0 {
		c, m := float64(out.Covered)/float64(out.Deployed), float64(out.Manifests.Validated)/float64(out.Manifests.Deployed)
		out.Ratio, out.Manifests.Ratio = &c, &m
	}
	writeJSON(w, http.StatusOK, out)
}
