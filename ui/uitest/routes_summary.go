package uitest

import (
	"net/http"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// deployCount is the fake's deploy success KPI: every deploy through it
// succeeds, and SetDeploys replaces the figures.
type deployCount struct{ attempted, succeeded int }

// SetDeploys sets the deploys of the last 7 days the summary reports.
func (f *Fake) SetDeploys(attempted, succeeded int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deploys = deployCount{attempted: attempted, succeeded: succeeded}
}

func (f *Fake) summaryRoutes() {
	f.route("GET /api/v1/summary/agents", "agents.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := apitype.AgentsSummary{ByState: map[string]int{}, Total: len(f.agents), Target: apitype.DeploySuccessTarget,
			Deploys7d: apitype.DeployStats{Since: time.Now().Add(-apitype.DeployWindow).UTC(), Attempted: f.deploys.attempted, Succeeded: f.deploys.succeeded}}
		for _, a := range f.agents {
			out.ByState[a.Status.State]++
		}
		if d := f.deploys; d.attempted > 0 {
			rate := float64(d.succeeded) / float64(d.attempted)
			out.Deploys7d.Rate = &rate
		}
		writeJSON(w, http.StatusOK, out)
	})
}
