package apiclient

import (
	"context"
	"net/http"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// Dashboard calls GET /api/v1/dashboard: every figure of the console's
// dashboard that the caller's role may read, in one answer. An omertad
// older than the route answers 404.
func (c *Client) Dashboard(ctx context.Context) (apitype.Dashboard, error) {
	var v apitype.Dashboard
	return v, c.send(ctx, http.MethodGet, "/api/v1/dashboard", nil, &v)
}
