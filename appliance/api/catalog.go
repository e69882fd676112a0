package api

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// CatalogService is what the catalog routes use; *catalog.Service is one.
type CatalogService interface {
	List(ctx context.Context) ([]catalog.Item, error)
	Get(ctx context.Context, id string) (catalog.Item, error)
	Import(ctx context.Context, r catalog.ImportRequest) ([]catalog.Item, error)
}

// catalogRoutes serves GET /catalog (every entry, sorted by id), GET
// /catalog/{id} (one, with its manifest, secrets redacted) and POST
// /catalog (import one document).
func (s *Server) catalogRoutes(r fiber.Router) {
	r.Get("/catalog", s.listCatalog)
	r.Get("/catalog/:id", s.getCatalogEntry)
	r.Post("/catalog", s.importCatalog)
}

func (s *Server) listCatalog(c *fiber.Ctx) error {
	items, err := s.deps.Agents.Catalog.List(c.UserContext())
	if err != nil {
		return s.fail(c, err)
	}
	out := apitype.CatalogList{Entries: make([]apitype.CatalogEntry, 0, len(items))}
	for i := range items {
		out.Entries = append(out.Entries, catalogView(&items[i]))
	}
	return c.JSON(out)
}

func (s *Server) getCatalogEntry(c *fiber.Ctx) error {
	it, err := s.deps.Agents.Catalog.Get(c.UserContext(), c.Params("id"))
	if err != nil {
		return s.fail(c, err)
	}
	m, err := redactedManifest(it.Manifest)
	if err != nil {
		return err
	}
	return c.JSON(apitype.CatalogEntryView{CatalogEntry: catalogView(&it), Manifest: m})
}

func (s *Server) importCatalog(c *fiber.Ctx) error {
	var req apitype.CatalogImport
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	files := make(map[string][]byte, len(req.Files))
	for name, data := range req.Files {
		files[name] = []byte(data)
	}
	items, err := s.deps.Agents.Catalog.Import(c.UserContext(), catalog.ImportRequest{
		Name: req.Name, Data: []byte(req.Document), Files: files, Replace: req.Replace, Actor: actor(c),
	})
	if err != nil {
		return s.fail(c, err)
	}
	out := apitype.CatalogImported{Entries: make([]apitype.CatalogEntry, 0, len(items))}
	for i := range items {
		out.Entries = append(out.Entries, catalogView(&items[i]))
	}
	return c.Status(fiber.StatusCreated).JSON(out)
}

func catalogView(it *catalog.Item) apitype.CatalogEntry {
	e := apitype.CatalogEntry{
		ID: it.ID(), Origin: string(it.Origin), Format: string(it.Format), File: it.File, Source: it.Source,
		ImportedBy: it.ImportedBy, Problems: problemViews(it.Problems),
	}
	if len(e.Problems) == 0 {
		e.Problems = nil
	}
	if !it.ImportedAt.IsZero() {
		at := it.ImportedAt
		e.ImportedAt = &at
	}
	e.Deployable, e.NotDeployable = it.Deployable()
	for _, n := range it.Notes {
		e.Notes = append(e.Notes, apitype.CatalogNote{Path: n.Path, Action: string(n.Action), Reason: n.Reason})
	}
	if m := it.Manifest; m != nil {
		md := m.Metadata
		e.Name, e.Version, e.Category, e.Framework, e.Description = md.Name, md.Version, md.Category, md.Framework, md.Description
		e.Tags, e.Icon, e.Capabilities = md.Tags, md.Icon, md.Capabilities
		e.Isolation = string(m.Spec.Isolation)
		if img := m.Spec.Image; img != nil {
			e.Image = &apitype.ImageRef{Ref: img.Ref, Digest: img.Digest}
		}
	}
	return e
}

// redactedManifest is m as JSON with every secret configuration value
// replaced by manifest.Redacted.
func redactedManifest(m *manifest.Manifest) (json.RawMessage, error) {
	if m == nil {
		return json.RawMessage("null"), nil
	}
	out := *m
	if out.Spec.Config != nil {
		if cs := compiledSchemas.compile(out.Spec.ConfigSchema); cs == nil {
			// Without a schema nothing says which values are secret:
			// show none of them.
			out.Spec.Config = map[string]any{}
		} else {
			out.Spec.Config = cs.Redact(out.Spec.Config)
		}
	}
	b, err := json.Marshal(&out)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest %q: %w", m.Metadata.ID, err)
	}
	return b, nil
}
