package apiclient

import (
	"context"
	"net/http"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// AgentsSummary calls GET /api/v1/summary/agents: the agents by state and
// the deploy success rate over the last 7 days.
func (c *Client) AgentsSummary(ctx context.Context) (apitype.AgentsSummary, error) {
	var v apitype.AgentsSummary
	return v, c.send(ctx, http.MethodGet, "/api/v1/summary/agents", nil, &v)
}
