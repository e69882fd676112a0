package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// TestAgentsSummaryRoute: the counts by state and the deploy success rate
// come from the agents service; a week without deploys has no rate (null),
// not a 100 % one.
func TestAgentsSummaryRoute(t *testing.T) {
	ctx := context.Background()
	e := newAgentsEnv(t)
	// Set before any container exists, so before the reconciler can call
	// Start: the runtime's lock orders it with every later read.
	e.rt.StartHook = func(id string) error {
		if strings.HasPrefix(id, "bad-") {
			return errors.New("exec format error")
		}
		return nil
	}
	s, err := e.c.AgentsSummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 0 || len(s.ByState) != 0 || s.Deploys7d.Attempted != 0 || s.Deploys7d.Rate != nil || s.Target != 0.98 {
		t.Errorf("empty summary = %+v, rate %v", s, s.Deploys7d.Rate)
	}
	code, body := raw(t, e.sock, "GET /api/v1/summary/agents HTTP/1.1\r\nHost: x\r\n\r\n")
	if code != http.StatusOK || !strings.Contains(body, `"rate":null`) || !strings.Contains(body, `"by_state":{}`) {
		t.Errorf("empty summary on the wire = %d %s", code, body)
	}

	e.deploy(t, "tool-1")
	e.deploy(t, "tool-2")
	_, err = e.c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "tool", ID: "bad-1",
		Config: map[string]any{"mode": "fast"}, Secrets: map[string]any{"api_key": testSecret}})
	if statusOf(err) != http.StatusBadGateway {
		t.Fatalf("deploying an agent that cannot start = %v, want 502", err)
	}
	e.waitState(t, "tool-1", "running")
	e.waitState(t, "tool-2", "running")

	s, err = e.c.AgentsSummary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, n := range s.ByState {
		sum += n
	}
	if s.Total != 3 || sum != 3 || s.ByState["running"] != 2 {
		t.Errorf("by state %v, total %d: want 2 running of 3", s.ByState, s.Total)
	}
	d := s.Deploys7d
	if d.Attempted != 3 || d.Succeeded != 2 || d.Rate == nil || *d.Rate < 0.66 || *d.Rate > 0.67 {
		t.Errorf("deploys %+v (rate %v), want 2 of 3", d, d.Rate)
	}
	if time.Since(d.Since) < apitype.DeployWindow-time.Minute || time.Since(d.Since) > apitype.DeployWindow+time.Minute {
		t.Errorf("since %v: not 7 days ago", d.Since)
	}
}

// TestSummaryView: the domain's "1 for none" becomes null, and the counts
// are summed.
func TestSummaryView(t *testing.T) {
	v := summaryView(map[agents.State]int{agents.StateRunning: 3, agents.StateCrashLoop: 1}, agents.DeployStats{Rate: 1})
	if v.Total != 4 || v.ByState["crash-loop"] != 1 || v.Deploys7d.Rate != nil {
		t.Errorf("summaryView = %+v", v)
	}
	v = summaryView(nil, agents.DeployStats{Total: 50, Succeeded: 49, Rate: 0.98})
	if v.Total != 0 || v.ByState == nil || v.Deploys7d.Rate == nil || *v.Deploys7d.Rate != 0.98 || v.Deploys7d.Attempted != 50 {
		t.Errorf("summaryView = %+v", v)
	}
}
