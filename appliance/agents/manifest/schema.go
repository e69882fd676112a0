package manifest

import (
	"bytes"
	_ "embed"
)

// schemaJSON is the manifest's published JSON Schema (draft 2020-12).
// Check is the authority; the schema says as much of it as JSON Schema can,
// and a test holds the two to agreement on the testdata table.
//
//go:embed manifest.schema.json
var schemaJSON []byte

// Schema returns the manifest's JSON Schema, as `omerta catalog schema`
// prints it.
func Schema() []byte { return bytes.Clone(schemaJSON) }
