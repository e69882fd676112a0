package apiclient

import (
	"context"
	"net/http"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// Models calls GET /api/v1/models: the gateway's models and whether each
// was enabled, its manifest verified against the signed registries.
func (c *Client) Models(ctx context.Context) (apitype.ModelList, error) {
	var v apitype.ModelList
	return v, c.send(ctx, http.MethodGet, "/api/v1/models", nil, &v)
}
