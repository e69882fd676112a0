package uitest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// AgentUIRequest is what the fake's stand-in agent UI received, as it
// answers it (JSON): the request omertad would pass on, and every header
// the console sent omertad.
type AgentUIRequest struct {
	Method, Path, Query, Body string
	Header                    http.Header
}

// AddUIAgent deploys an agent directly whose manifest declares a UI on
// port 8080 (named http), in network mode mode ("gateway" or "none").
func (f *Fake) AddUIAgent(id, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UTC()
	m := `{"apiVersion":"omertaos.dev/v1","kind":"Agent","metadata":{"id":"` + id + `","name":"UI agent"},` +
		`"spec":{"image":{"ref":"omertaos.local/agents/web:0.1.0"},"resources":{"cpu":"250m","memory":"64Mi","pids":64},` +
		`"network":{"mode":` + strconv.Quote(mode) + `},"ports":[{"name":"http","port":8080}]}}`
	f.agents[id] = &apitype.Agent{AgentSummary: apitype.AgentSummary{ID: id, Tenant: "default", Name: "UI agent",
		Desired: "enabled", Generation: 1, CreatedAt: now, UpdatedAt: now,
		Status: apitype.AgentStatus{State: "running", Container: id + "-g1", UpdatedAt: now}},
		Manifest: json.RawMessage(m), Config: map[string]any{}, SecretKeys: []string{}}
}

// agentUIRoutes stand in for omertad's ANY /api/v1/agents/{id}/ui/{path}
// and the agent behind it: omertad's refusals (404, 409 for an agent
// without a network) unmarked, the agent's answer marked with
// X-Omerta-Agent-Ui. The agent answers /redirect with a redirect to its
// own /done, and anything else with what it received; it also tries to
// set a cookie, which the console must not pass on.
func (f *Fake) agentUIRoutes() {
	f.route("/api/v1/agents/{id}/ui/{rest...}", "agents.write", func(w http.ResponseWriter, r *http.Request, _ principal) {
		id := r.PathValue("id")
		f.mu.Lock()
		a := f.agents[id]
		f.mu.Unlock()
		if a == nil {
			fail(w, http.StatusNotFound, "no agent "+strconv.Quote(id))
			return
		}
		var m struct {
			Spec struct {
				Network struct{ Mode string } `json:"network"`
			} `json:"spec"`
		}
		json.Unmarshal(a.Manifest, &m)
		if m.Spec.Network.Mode != "gateway" {
			fail(w, http.StatusConflict, "the UI of agent "+strconv.Quote(id)+" cannot be reached: its spec.network.mode is "+
				strconv.Quote(m.Spec.Network.Mode)+", so it has no network")
			return
		}
		w.Header().Set("X-Omerta-Agent-Ui", "answer")
		w.Header().Set("Set-Cookie", "agent=1; Path=/")
		if r.PathValue("rest") == "redirect" {
			w.Header().Set("Location", "/done")
			w.WriteHeader(http.StatusSeeOther)
			return
		}
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		json.NewEncoder(w).Encode(AgentUIRequest{Method: r.Method, Path: "/" + r.PathValue("rest"), Query: r.URL.RawQuery, Body: string(b), Header: r.Header})
	})
}
