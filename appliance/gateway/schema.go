package gateway

import (
	"embed"

	"github.com/omertaos/omertaos/appliance/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the gateway's tables (gateway_usage, gateway_usage_monthly)
// for store.WithSchemas. The Store a Gateway is built on must be opened
// with it.
var Schema = store.Schema{Domain: "gateway", Migrations: migrations}
