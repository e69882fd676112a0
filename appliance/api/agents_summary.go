package api

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/apitype"
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
