// Package agents is the home of everything that runs AI agents on the
// appliance; the work is in its subpackages. Among them:
//
//   - manifest: the agent manifest (apiVersion omertaos.dev/v1, kind Agent),
//     strict decoding, validation, normalisation, the configuration schema
//     and its secrets, and the manifest's published JSON Schema;
//   - catalog: catalog entries from the image, from operators' imports and
//     from the OMERTAOS formats (agents.yaml, AgentRecipe, AgentTemplate),
//     with every field that could not be kept named.
package agents
