package netpolicy

import (
	"embed"

	"github.com/omertaos/omertaos/appliance/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the netpolicy domain's tables (netpolicy_network,
// netpolicy_agents) for store.WithSchemas. The Store a Manager is built on
// must be opened with it.
var Schema = store.Schema{Domain: "netpolicy", Migrations: migrations}
