package registry

import (
	"fmt"
	"slices"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// Index is REGISTRY.yaml: what the registry offers, by kind.
type Index struct {
	Version string
	// Catalog is every listed entry, in the order of the file, kinds in
	// the order of catalogOrder.
	Catalog []CatalogEntry
	// SigningMethod and SigningKey are the registry's own word on how it
	// is signed; only the trust directory decides which keys are trusted.
	SigningMethod string
	SigningKey    string
	GeneratedAt   string
	GeneratedBy   string
}

// CatalogEntry is one item of a catalog list.
type CatalogEntry struct {
	Kind           string `json:"kind"`
	Path           string `json:"path"`
	RequiresAPIKey bool   `json:"requires_api_key,omitempty"`
	// Field is where it was listed ("catalog.models[6]").
	Field string `json:"field"`
	valid bool
}

// catalogOrder is the order kinds are read in: OMERTAOS's first.
var catalogOrder = []string{"models", "algorithms", "services", "agents", "images", "files"}

func kindOfList(list string) string {
	for k, l := range kinds {
		if l == list {
			return k
		}
	}
	return ""
}

// ParseIndex decodes REGISTRY.yaml, with a finding for every problem.
func ParseIndex(data []byte, lim Limits) (*Index, []Finding) {
	lim = lim.withDefaults()
	fs := &findings{subject: IndexFile}
	top, ok := parseDoc(fs, data, lim.yaml(lim.IndexBytes))
	if !ok {
		return nil, fs.list
	}
	o := asObj(fs, "", top)
	ix := &Index{}
	ix.Version, _ = o.str("registry_version", true, 32)
	if ix.Version != "" && ix.Version != "1.0" && ix.Version != "1" {
		fs.invalid("registry_version", quote(ix.Version)+" is not a version this verifier reads (1.0)")
	}
	if c := o.child("catalog", true); c != nil {
		ix.Catalog = catalogLists(fs, c, lim)
		c.done()
	}
	if inst := o.child("installed", false); inst != nil {
		// What a machine has installed is its state, not the registry's
		// content; only its shape is checked.
		for k, v := range inst.m {
			inst.used[k] = true
			if kindOfList(k) == "" {
				fs.invalid(inst.at(k), "unknown field")
				continue
			}
			asObj(fs, inst.at(k), v)
		}
	}
	if s := o.child("signing", false); s != nil {
		ix.SigningMethod, _ = s.str("method", true, 32)
		if ix.SigningMethod != "" && ix.SigningMethod != "minisign" {
			fs.invalid("signing.method", quote(ix.SigningMethod)+" is not supported; registries are signed with minisign")
		}
		if k, ok := s.str("public_key", false, maxPath); ok && k != "" {
			if reason := checkRelPath(k); reason != "" {
				fs.invalid("signing.public_key", reason)
			} else {
				ix.SigningKey = k
			}
		}
		s.done()
	}
	if m := o.child("metadata", false); m != nil {
		ix.GeneratedAt, _ = m.str("generated_at", false, 64)
		ix.GeneratedBy, _ = m.str("generated_by", false, maxLabel)
		m.done()
	}
	o.done()
	return ix, fs.list
}

func catalogLists(fs *findings, c *obj, lim Limits) []CatalogEntry {
	var out []CatalogEntry
	seen := map[string]string{}
	for _, list := range catalogOrder {
		items, _ := c.list(list, false, lim.Entries)
		for i, v := range items {
			field := manifest.Index(c.at(list), i)
			e := catalogEntry(fs, field, v)
			e.Kind = kindOfList(list)
			if e.valid {
				if first, dup := seen[e.Path]; dup {
					fs.invalid(manifest.Key(field, "path"), fmt.Sprintf("%s is also listed at %s", quote(e.Path), first))
					e.valid = false
				} else {
					seen[e.Path] = field
				}
			}
			out = append(out, e)
		}
	}
	// A list key this verifier does not know is reported by c.done; say
	// which ones it knows.
	var unknown []string
	for k := range c.m {
		if !slices.Contains(catalogOrder, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		fs.invalid("catalog", fmt.Sprintf("lists %s; the known lists are %v", quote(unknown[0]), catalogOrder))
		c.ignore(unknown...)
	}
	return out
}

func catalogEntry(fs *findings, field string, v any) CatalogEntry {
	e := CatalogEntry{Field: field}
	if p, ok := v.(string); ok {
		// update_catalog.py writes bare paths; the shipped file has
		// mappings. Both mean the same.
		if reason := checkRelPath(p); reason != "" {
			fs.invalid(field, reason)
			return e
		}
		e.Path, e.valid = p, true
		return e
	}
	o := asObj(fs, field, v)
	if o == nil {
		return e
	}
	before := len(fs.list)
	e.Path, _ = o.str("path", true, maxPath)
	if reason := checkRelPath(e.Path); e.Path != "" && reason != "" {
		fs.invalid(o.at("path"), reason)
	}
	e.RequiresAPIKey, _ = o.boolean("requiresApiKey")
	o.done()
	e.valid = len(fs.list) == before
	return e
}
