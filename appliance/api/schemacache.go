package api

import (
	"crypto/sha256"
	"encoding/json"
	"sync"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// compiledSchemas keeps configuration schemas compiled, by the hash of
// their JSON: compiling one was most of the cost of an agent's view
// (every agent shown redacts its manifest's configuration with it), and
// the agents of one catalog entry share one schema. A schema is a pure
// function of its document, so an entry never goes stale; the cache is
// emptied when full, to stay bounded whatever the documents.
var compiledSchemas = schemaCache{m: map[[sha256.Size]byte]*manifest.ConfigSchema{}}

// maxCachedSchemas bounds compiledSchemas: far more catalog entries than
// an appliance holds.
const maxCachedSchemas = 256

type schemaCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*manifest.ConfigSchema
}

// compile returns doc compiled, or nil when it does not compile (the
// problems are not kept: a view only needs to know that it cannot trust
// the schema).
func (c *schemaCache) compile(doc map[string]any) *manifest.ConfigSchema {
	b, err := json.Marshal(doc) // map keys sorted: one encoding per document
	if err != nil {
		return nil
	}
	key := sha256.Sum256(b)
	c.mu.Lock()
	cs, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return cs
	}
	cs, ps := manifest.CompileConfigSchema(doc, "spec.configSchema")
	if len(ps) > 0 {
		cs = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedSchemas {
		clear(c.m)
	}
	c.m[key] = cs
	return cs
}
