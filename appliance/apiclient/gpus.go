package apiclient

import (
	"context"
	"net/http"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// GPUs calls GET /api/v1/gpus: every GPU admission hands out, with its
// MIG devices and the agents holding each, or why there is none.
func (c *Client) GPUs(ctx context.Context) (apitype.GPUList, error) {
	var v apitype.GPUList
	return v, c.send(ctx, http.MethodGet, "/api/v1/gpus", nil, &v)
}

// GPU calls GET /api/v1/gpus/{uuid}: one GPU, named by its UUID or by
// one of its MIG devices'.
func (c *Client) GPU(ctx context.Context, uuid string) (apitype.GPUView, error) {
	var v apitype.GPUView
	return v, c.send(ctx, http.MethodGet, "/api/v1/gpus/"+esc(uuid), nil, &v)
}
