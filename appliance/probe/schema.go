package probe

import (
	"embed"

	"github.com/omertaos/omertaos/appliance/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the probe domain's tables (probe, probe_drift) for
// store.WithSchemas. Every Store used with Save, Baseline, Latest,
// DriftEvents or a Monitor must be opened with it.
var Schema = store.Schema{Domain: "probe", Migrations: migrations}
