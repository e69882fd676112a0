package agents

import (
	"embed"

	"github.com/omertaos/omertaos/appliance/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the agents domain's tables (agents, agent_specs, agent_secrets,
// agent_status, tasks, deploy_events) for store.WithSchemas. Every Store a
// Service is built on must be opened with it.
var Schema = store.Schema{Domain: "agents", Migrations: migrations}
