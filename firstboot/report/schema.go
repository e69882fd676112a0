package report

import _ "embed"

// Schema is the published JSON Schema (draft 2020-12) of SchemaVersion
// reports, for auditors and other tools; `omerta report schema` prints it.
//
//go:embed schema/firstboot-report.v2.schema.json
var Schema []byte
