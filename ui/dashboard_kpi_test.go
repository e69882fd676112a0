package ui

import (
	"slices"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// TestDashboardAgentsAndDeployKPI: the dashboard shows the agents by state
// and the deploy success rate over 7 days against the 98 % target, both
// from omertad's summary, without fetching every agent.
func TestDashboardAgentsAndDeployKPI(t *testing.T) {
	e := newEnv(t, Limits{})
	e.fake.AddAgents(5) // running ×3, backoff, stopped
	aud := e.signIn("carol", "auditor")
	for _, tc := range []struct {
		name                 string
		attempted, succeeded int
		want                 []string
	}{
		{"below", 100, 97, []string{`<strong id="deploy-rate">97.0 %</strong>`, `class="badge bad" data-testid="deploy-verdict">below the target<`, `97 of 100`}},
		{"met", 50, 49, []string{`<strong id="deploy-rate">98.0 %</strong>`, `class="badge good" data-testid="deploy-verdict">meets the target<`, `49 of 50`}},
		{"none", 0, 0, []string{`<strong id="deploy-rate">no deploys</strong>`, `nothing to measure`, `0 of 0`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.fake.SetDeploys(tc.attempted, tc.succeeded)
			n := len(e.fake.Hits())
			resp, body := e.get("/", &aud)
			wantStatus(t, resp, body, 200)
			wantContains(t, body, tc.want...)
			wantContains(t, body, `the target is ≥ 98.0 %`, `<strong id="agents-total">5</strong>`,
				`data-state-count="running">3<`, `data-state-count="backoff">1<`, `data-state-count="stopped">1<`)
			wantNotContains(t, body, "not available yet")
			checkCSPClean(t, "dashboard "+tc.name, body)
			hits := e.fake.Hits()[n:]
			if !slices.Contains(hits, "GET /api/v1/summary/agents") || slices.ContainsFunc(hits, func(h string) bool { return strings.HasPrefix(h, "GET /api/v1/agents") }) {
				t.Errorf("the dashboard called %v: want the summary, not the agent list", hits)
			}
		})
	}
}

// TestSummaryCounts: a rate out of range or a missing target from omertad
// does not show as a met target.
func TestSummaryCounts(t *testing.T) {
	bad := 1.5
	c := summaryCounts(apiSummary(map[string]int{"running": 2, "failed": 1}, &bad, 0))
	if c.Total != 3 || c.Deploys.HasRate || c.Deploys.Met || c.Deploys.Target != 98 {
		t.Errorf("summaryCounts = %+v", c)
	}
	if c.ByState[0].State != "failed" || c.ByState[1].State != "running" {
		t.Errorf("states not sorted: %+v", c.ByState)
	}
	low := 0.5
	if c := summaryCounts(apiSummary(nil, &low, 0.98)); !c.Deploys.HasRate || c.Deploys.Met || c.Deploys.Rate != 50 {
		t.Errorf("summaryCounts = %+v", c)
	}
}

func apiSummary(by map[string]int, rate *float64, target float64) apitype.AgentsSummary {
	total := 0
	for _, n := range by {
		total += n
	}
	return apitype.AgentsSummary{ByState: by, Total: total, Target: target, Deploys7d: apitype.DeployStats{Attempted: 2, Succeeded: 1, Rate: rate}}
}
