package api

import "github.com/omertaos/omertaos/appliance/apitype"

// ModelQueries is what GET /api/v1/models reads: the outcome of omertad's
// verification of the gateway's models (each one's manifest in a signed
// registry, its VRAM against the GPUs), kept from omertad's start. Nothing
// is verified during a request.
type ModelQueries interface {
	Models() apitype.ModelList
}
