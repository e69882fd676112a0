package api

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/policy"
)

// AgentSummaryService is what GET /summary/agents reads; part of
// AgentService.
type AgentSummaryService interface {
	DeployStats(ctx context.Context, since time.Time) (agents.DeployStats, error)
	CountByState(ctx context.Context) (map[agents.State]int, error)
}

// summaryRoutes serves GET /summary/agents: the dashboard's agent figures.
// It is not /agents/summary, which an agent named "summary" would own.
func (s *Server) summaryRoutes(r fiber.Router) {
	r.Get("/summary/agents", s.agentsSummary)
}

func (s *Server) agentsSummary(c *fiber.Ctx) error {
	ctx := c.UserContext()
	svc := s.deps.Agents.Service
	sc, restricted, err := s.restricted(c)
	if err != nil {
		return s.fail(c, err)
	}
	if restricted {
		return s.scopedSummary(c, sc)
	}
	counts, err := svc.CountByState(ctx)
	if err != nil {
		return s.fail(c, err)
	}
	st, err := svc.DeployStats(ctx, time.Now().Add(-apitype.DeployWindow))
	if err != nil {
		return s.fail(c, err)
	}
	return c.JSON(summaryView(counts, st))
}

// scopedSummary is GET /summary/agents for a caller limited to some
// tenants: its tenants' agents by state, and no deploy figures (deploys
// are counted for the appliance; the other tenants' are not its to see).
func (s *Server) scopedSummary(c *fiber.Ctx, sc policy.Scope) error {
	as, err := s.deps.Agents.Service.List(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	counts := map[agents.State]int{}
	for i := range as {
		if sc.Sees(as[i].Tenant) {
			counts[as[i].Status.State]++
		}
	}
	return c.JSON(summaryView(counts, agents.DeployStats{}))
}

func summaryView(counts map[agents.State]int, st agents.DeployStats) apitype.AgentsSummary {
	out := apitype.AgentsSummary{ByState: make(map[string]int, len(counts)), Target: apitype.DeploySuccessTarget,
		Deploys7d: apitype.DeployStats{Since: st.Since, Attempted: st.Total, Succeeded: st.Succeeded}}
	for state, n := range counts {
		out.ByState[string(state)] = n
		out.Total += n
	}
	// agents.DeployStats says 1 for no deploys; the API says null, so
	// that nobody reads an empty week as a met target.
	if st.Total > 0 {
		rate := float64(st.Succeeded) / float64(st.Total)
		out.Deploys7d.Rate = &rate
	}
	return out
}
