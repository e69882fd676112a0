package uitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// The fake's catalog: one entry without configuration, one whose schema
// has every kind of field the deploy form generates, and one that cannot
// be deployed.
func (f *Fake) seedCatalog() {
	tool := `{"apiVersion":"omertaos.dev/v1","kind":"Agent","metadata":{"id":"sample-tool","name":"Sample tool agent"},` +
		`"spec":{"image":{"ref":"omertaos.local/agents/tool:0.1.0"},"resources":{"cpu":"500m","memory":"128Mi","pids":64},"network":{"mode":"none"},` +
		`"tasks":{"command":["/agent","task"],"timeout":"30s"}}}`
	web := `{"apiVersion":"omertaos.dev/v1","kind":"Agent","metadata":{"id":"sample-http","name":"Sample HTTP service agent"},` +
		`"spec":{"image":{"ref":"omertaos.local/agents/http:0.1.0"},"resources":{"cpu":"250m","memory":"64Mi","pids":64},"network":{"mode":"none"},` +
		`"configSchema":{"type":"object","additionalProperties":false,"required":["title","workers"],"properties":{` +
		`"title":{"type":"string","maxLength":80,"default":"OMERTAOS sample agent","description":"Shown on the page"},` +
		`"workers":{"type":"integer","minimum":1,"maximum":8,"default":2},` +
		`"ratio":{"type":"number","minimum":0,"maximum":1},` +
		`"debug":{"type":"boolean"},` +
		`"mode":{"enum":["fast","safe"]},` +
		`"slug":{"type":"string","pattern":"^[a-z]+$"},` +
		`"api_key":{"type":"string","format":"secret"},` +
		`"extra":{"type":"object"}}}}}`
	f.catalog["sample-tool"] = apitype.CatalogEntryView{CatalogEntry: apitype.CatalogEntry{ID: "sample-tool", Name: "Sample tool agent", Version: "0.1.0",
		Category: "Tools", Framework: "OMERTAOS", Description: "Runs structured tasks: JSON in, JSON out.", Tags: []string{"sample", "tasks"},
		Origin: apitype.OriginShipped, Format: "omertaos.dev/v1", Deployable: true, Image: &apitype.ImageRef{Ref: "omertaos.local/agents/tool:0.1.0"}},
		Manifest: json.RawMessage(tool)}
	f.catalog["sample-http"] = apitype.CatalogEntryView{CatalogEntry: apitype.CatalogEntry{ID: "sample-http", Name: "Sample HTTP service agent", Version: "0.1.0",
		Category: "Services", Framework: "OMERTAOS", Description: "A small web service <b>with</b> a status page.", Tags: []string{"sample", "http"},
		Origin: apitype.OriginShipped, Format: "omertaos.dev/v1", Deployable: true}, Manifest: json.RawMessage(web)}
	f.catalog["broken"] = apitype.CatalogEntryView{CatalogEntry: apitype.CatalogEntry{ID: "broken", Name: "Broken entry", Category: "Tools", Framework: "LangChain",
		Origin: apitype.OriginImported, Deployable: false, NotDeployable: "no image"}, Manifest: json.RawMessage(`{"spec":{}}`)}
}

func (f *Fake) agentRoutes() {
	f.route("GET /api/v1/catalog", "catalog.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := apitype.CatalogList{Entries: []apitype.CatalogEntry{}}
		for _, e := range f.catalog {
			out.Entries = append(out.Entries, e.CatalogEntry)
		}
		sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].ID < out.Entries[j].ID })
		writeJSON(w, http.StatusOK, out)
	})
	f.route("GET /api/v1/catalog/{id}", "catalog.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		e, ok := f.catalog[r.PathValue("id")]
		if !ok {
			fail(w, http.StatusNotFound, "no catalog entry "+strconv.Quote(r.PathValue("id")))
			return
		}
		writeJSON(w, http.StatusOK, e)
	})
	f.route("GET /api/v1/images", "agents.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		writeJSON(w, http.StatusOK, apitype.ImageList{Images: []apitype.Image{}})
	})
	f.route("GET /api/v1/agents", "agents.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := apitype.AgentList{Agents: []apitype.AgentSummary{}}
		for _, a := range f.agents {
			out.Agents = append(out.Agents, a.AgentSummary)
		}
		sort.Slice(out.Agents, func(i, j int) bool { return out.Agents[i].ID < out.Agents[j].ID })
		writeJSON(w, http.StatusOK, out)
	})
	f.route("POST /api/v1/agents", "agents.write", f.deploy)
	f.route("GET /api/v1/agents/{id}", "agents.read", f.withAgent(func(w http.ResponseWriter, r *http.Request, _ principal, a *apitype.Agent) {
		writeJSON(w, http.StatusOK, a)
	}))
	f.route("PATCH /api/v1/agents/{id}", "agents.write", f.withAgent(func(w http.ResponseWriter, r *http.Request, p principal, a *apitype.Agent) {
		var req apitype.AgentPatch
		if !decode(w, r, &req) {
			return
		}
		for k, v := range req.Config {
			a.Config[k] = v
		}
		for k := range req.Secrets {
			a.SecretKeys = append(a.SecretKeys, "/"+k)
		}
		a.Generation++
		f.record(r, p, "agent.patch", a.ID)
		writeJSON(w, http.StatusOK, a)
	}))
	f.route("DELETE /api/v1/agents/{id}", "agents.write", f.withAgent(func(w http.ResponseWriter, r *http.Request, p principal, a *apitype.Agent) {
		delete(f.agents, a.ID)
		f.record(r, p, "agent.delete", a.ID)
		f.publishLocked(apitype.Event{Type: apitype.EventAgentDeleted, Agent: a.ID, Data: json.RawMessage(`{}`)})
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, verb := range []string{"disable", "enable", "restart"} {
		f.route("POST /api/v1/agents/{id}/"+verb, "agents.write", f.withAgent(func(w http.ResponseWriter, r *http.Request, p principal, a *apitype.Agent) {
			switch verb {
			case "disable":
				a.Desired, a.Status.State = "disabled", "stopped"
			default:
				a.Desired, a.Status.State = "enabled", "running"
			}
			f.record(r, p, "agent."+verb, a.ID)
			f.stateEventLocked(a)
			writeJSON(w, http.StatusOK, a)
		}))
	}
	f.route("GET /api/v1/agents/{id}/tasks", "tasks.read", f.withAgent(func(w http.ResponseWriter, r *http.Request, _ principal, a *apitype.Agent) {
		out := apitype.TaskList{Tasks: []apitype.Task{}}
		for _, t := range f.tasks {
			if t.Agent == a.ID {
				out.Tasks = append(out.Tasks, *t)
			}
		}
		sort.Slice(out.Tasks, func(i, j int) bool { return out.Tasks[i].ID > out.Tasks[j].ID })
		writeJSON(w, http.StatusOK, out)
	}))
	f.route("POST /api/v1/agents/{id}/tasks", "tasks.write", f.withAgent(f.runTask))
	f.route("GET /api/v1/tasks/{id}", "tasks.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		t, ok := f.tasks[r.PathValue("id")]
		if !ok {
			fail(w, http.StatusNotFound, "no such task")
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	f.route("POST /api/v1/tasks/{id}/cancel", "tasks.write", func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		t, ok := f.tasks[r.PathValue("id")]
		if !ok {
			fail(w, http.StatusNotFound, "no such task")
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
}

func (f *Fake) withAgent(h func(w http.ResponseWriter, r *http.Request, p principal, a *apitype.Agent)) handler {
	return func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		a, ok := f.agents[r.PathValue("id")]
		if !ok {
			fail(w, http.StatusNotFound, "no agent "+strconv.Quote(r.PathValue("id")))
			return
		}
		h(w, r, p, a)
	}
}

type schemaDoc struct {
	Spec struct {
		ConfigSchema struct {
			Required   []string                  `json:"required"`
			Properties map[string]map[string]any `json:"properties"`
		} `json:"configSchema"`
	} `json:"spec"`
}

// validate checks a deploy's configuration as omertad would, in small:
// known keys, required ones, integer bounds.
func validate(e apitype.CatalogEntryView, config, secrets map[string]any) []apitype.Problem {
	var d schemaDoc
	json.Unmarshal(e.Manifest, &d)
	var ps []apitype.Problem
	props := d.Spec.ConfigSchema.Properties
	for k, v := range config {
		p, ok := props[k]
		if !ok {
			ps = append(ps, apitype.Problem{Path: "config." + k, Code: "unknown", Reason: "is not in the configuration schema"})
			continue
		}
		if p["type"] == "integer" {
			n, err := v.(json.Number).Int64()
			if max, ok := p["maximum"].(float64); err != nil || ok && float64(n) > max {
				ps = append(ps, apitype.Problem{Path: "config." + k, Code: "invalid", Reason: fmt.Sprintf("must be at most %v", p["maximum"])})
			}
		}
	}
	for _, k := range d.Spec.ConfigSchema.Required {
		if _, ok := config[k]; !ok {
			if _, ok := secrets[k]; !ok {
				ps = append(ps, apitype.Problem{Path: "config." + k, Code: "required", Reason: "is required"})
			}
		}
	}
	return ps
}

func (f *Fake) deploy(w http.ResponseWriter, r *http.Request, p principal) {
	var req apitype.AgentDeploy
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "request body: "+err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.catalog[req.Entry]
	if !ok {
		fail(w, http.StatusNotFound, "no catalog entry "+strconv.Quote(req.Entry))
		return
	}
	if ps := validate(e, req.Config, req.Secrets); len(ps) > 0 {
		writeJSON(w, http.StatusBadRequest, apitype.Invalid{Error: "the configuration does not fit the schema", Problems: ps})
		return
	}
	if d := f.pol.deny; d != nil {
		writeJSON(w, http.StatusForbidden, apitype.Denied{Error: "denied by " + d.Rule + ": " + d.Reason, Decision: *d})
		return
	}
	id := req.ID
	if id == "" {
		id = req.Entry
	}
	if _, exists := f.agents[id]; exists {
		fail(w, http.StatusConflict, "agent "+strconv.Quote(id)+" exists")
		return
	}
	now := time.Now().UTC()
	a := &apitype.Agent{AgentSummary: apitype.AgentSummary{ID: id, Tenant: "default", Name: e.Name, Image: e.Image,
		Desired: "enabled", Generation: 1, CreatedAt: now, UpdatedAt: now, Status: apitype.AgentStatus{State: "running", Container: id + "-g1", UpdatedAt: now}},
		Manifest: e.Manifest, Config: map[string]any{}, SecretKeys: []string{}}
	for k, v := range req.Config {
		a.Config[k] = v
	}
	for k := range req.Secrets {
		a.SecretKeys = append(a.SecretKeys, "/"+k)
	}
	f.agents[id] = a
	f.deploys.attempted++
	f.deploys.succeeded++
	f.logs[id] = "hello from " + id + "\n<script>alert(1)</script>\n"
	f.record(r, p, "agent.deploy", id)
	f.stateEventLocked(a)
	writeJSON(w, http.StatusCreated, a)
}

// AddAgents deploys n agents directly, named agent-000 and on.
func (f *Fake) AddAgents(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UTC()
	e := f.catalog["sample-tool"]
	states := []string{"running", "running", "running", "backoff", "stopped"}
	for i := range n {
		id := fmt.Sprintf("agent-%03d", i)
		f.agents[id] = &apitype.Agent{AgentSummary: apitype.AgentSummary{ID: id, Tenant: "default", Name: e.Name, Image: e.Image,
			Desired: "enabled", Generation: 1, CreatedAt: now, UpdatedAt: now,
			Status: apitype.AgentStatus{State: states[i%len(states)], Container: id + "-g1", UpdatedAt: now}},
			Manifest: e.Manifest, Config: map[string]any{"title": "agent " + strconv.Itoa(i)}, SecretKeys: []string{}}
	}
}

func (f *Fake) runTask(w http.ResponseWriter, r *http.Request, p principal, a *apitype.Agent) {
	var req apitype.TaskCreate
	if !decode(w, r, &req) {
		return
	}
	now := time.Now().UTC()
	id := fmt.Sprintf("task-%04d", len(f.tasks)+1)
	in := req.Input
	if len(in) == 0 {
		in = json.RawMessage(`{}`)
	}
	out, _ := json.Marshal(map[string]json.RawMessage{"echo": in})
	code := int64(0)
	t := &apitype.Task{ID: id, Agent: a.ID, State: apitype.TaskSucceeded, Actor: p.actor(), Input: in, Output: out, ExitCode: &code,
		Timeout: "30s", CreatedAt: now, StartedAt: &now, FinishedAt: &now}
	f.tasks[id] = t
	f.record(r, p, "task.create", id)
	f.publishLocked(apitype.Event{Type: apitype.EventTask, Agent: a.ID, Task: id, Data: json.RawMessage(`{"state":"SUCCEEDED","exit_code":0}`)})
	writeJSON(w, http.StatusCreated, t)
}

func (f *Fake) stateEventLocked(a *apitype.Agent) {
	d, _ := json.Marshal(apitype.AgentStateEvent{Desired: a.Desired, Generation: a.Generation, State: a.Status.State})
	f.publishLocked(apitype.Event{Type: apitype.EventAgentState, Agent: a.ID, Data: d})
}
