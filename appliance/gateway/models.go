package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/omertaos/omertaos/appliance/terminal"
)

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// hasLocal reports whether a model has a target that is not cloud.
func hasLocal(m *Model) bool {
	for _, t := range m.Route {
		if !t.Cloud() {
			return true
		}
	}
	return false
}

// serveModels answers /v1/models (id "") with the models this agent may
// call, or /v1/models/{id} with one of them. It asks no backend.
func (g *Gateway) serveModels(w http.ResponseWriter, r *http.Request, agent AgentRef, id string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, refuse(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s takes GET", r.URL.Path))
		return
	}
	rules, err := g.pol.Rules(r.Context(), agent)
	if err != nil {
		g.log.Warn("gateway policy unavailable", "agent", terminal.Escape(agent.ID), "err", terminal.Escape(err.Error()))
		writeError(w, refuse(http.StatusServiceUnavailable, CodePolicyUnavailable, "the agent's policy could not be read"))
		return
	}
	reg := g.reg.Load()
	if id != "" {
		m := reg.Model(id)
		switch {
		case !rules.ModelAllowed(id):
			writeError(w, refuse(http.StatusForbidden, CodeModelNotAllowed, "agent %s: model %s is not allowed by its policy", quote(agent.ID), quote(id)))
		case modelUsable(id, m) != nil:
			writeError(w, modelUsable(id, m))
		case !rules.AllowCloud && !hasLocal(m):
			writeError(w, refuse(http.StatusForbidden, CodeCloudNotAllowed, "model %s is served only by cloud backends", quote(id)))
		default:
			writeJSON(w, modelObject{ID: id, Object: "model", OwnedBy: "omertaos"})
		}
		return
	}
	list := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list", Data: []modelObject{}}
	for _, name := range reg.Models() {
		m := reg.Model(name)
		if m.Disabled == "" && rules.ModelAllowed(name) && (rules.AllowCloud || hasLocal(m)) {
			list.Data = append(list.Data, modelObject{ID: name, Object: "model", OwnedBy: "omertaos"})
		}
	}
	writeJSON(w, list)
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeError(w, refuse(http.StatusInternalServerError, CodeBackendError, "encoding the answer failed"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(append(data, '\n'))
}
