package catalog

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the catalog's table (catalog_entries) for store.WithSchemas.
var Schema = store.Schema{Domain: "catalog", Migrations: migrations}

// Origin says where a catalog entry comes from.
type Origin string

// The origins.
const (
	// OriginShipped: a file of the image's catalog directory, read at
	// start; it cannot be replaced by an import.
	OriginShipped Origin = "shipped"
	// OriginImported: imported by an operator, kept in the database.
	OriginImported Origin = "imported"
)

// Sentinel errors of the Service, matched with errors.Is.
var (
	ErrNotFound = errors.New("no such catalog entry")
	// ErrInvalid: the document was refused; an *ImportError lists why.
	ErrInvalid = errors.New("invalid catalog document")
)

// ImportError is a refused import: every problem of the document, each
// naming its field. errors.Is(err, ErrInvalid) holds for it.
type ImportError struct {
	Name     string
	Problems manifest.Problems
}

func (e *ImportError) Error() string {
	return "importing " + strconv.Quote(e.Name) + ": " + e.Problems.Error()
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ImportError) Is(target error) bool { return target == ErrInvalid }

// Item is one entry of the running catalog with where it came from.
type Item struct {
	Entry
	Origin     Origin
	ImportedBy string    // empty for a shipped entry
	ImportedAt time.Time // zero for a shipped entry
}

// Bounds on one import.
const (
	// MaxImportFiles bounds the files (an agents.yaml's recipes) sent
	// along with a document.
	MaxImportFiles = 256
	maxNameBytes   = 512
)

// Service is the running catalog: the entries shipped in a directory, read
// once when it is made, and the entries operators import, kept in the
// store. It is safe for concurrent use.
type Service struct {
	st      *store.Store
	dir     string
	now     func() time.Time
	shipped *Catalog
	files   []*File
	loadErr error
}

// ServiceOption configures NewService.
type ServiceOption func(*Service)

// WithClock sets the clock of import times.
func WithClock(now func() time.Time) ServiceOption { return func(s *Service) { s.now = now } }

// NewService reads the shipped catalog in dir and serves it with the
// entries imported into st (opened with Schema). A directory that is
// missing or unreadable leaves the shipped catalog empty (LoadError says
// why) rather than stopping omertad; a bad file in it is skipped (Shipped
// lists it with its problems).
func NewService(st *store.Store, dir string, opts ...ServiceOption) *Service {
	s := &Service{st: st, dir: dir, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	c, files, err := LoadDir(dir)
	if c == nil {
		c = New()
	}
	s.shipped, s.files, s.loadErr = c, files, err
	return s
}

// Dir is the shipped catalog's directory.
func (s *Service) Dir() string { return s.dir }

// LoadError is why the shipped catalog could not be read (nil: it was).
func (s *Service) LoadError() error { return s.loadErr }

// Shipped lists the files read from the shipped catalog's directory, each
// with its problems, for omertad to log at start.
func (s *Service) Shipped() []*File { return s.files }

// List returns every entry, shipped and imported, sorted by id. An
// imported entry whose id a later image ships is hidden by the shipped one.
func (s *Service) List(ctx context.Context) ([]Item, error) {
	imported, err := s.imported(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]Item, 0, len(imported)+len(s.shipped.entries))
	for _, e := range s.shipped.List() {
		out = append(out, Item{Entry: *e, Origin: OriginShipped})
	}
	for _, it := range imported {
		if _, clash := s.shipped.Get(it.ID()); !clash {
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

// Get returns the entry with id; ErrNotFound when there is none.
func (s *Service) Get(ctx context.Context, id string) (Item, error) {
	if e, ok := s.shipped.Get(id); ok {
		return Item{Entry: *e, Origin: OriginShipped}, nil
	}
	items, err := s.imported(ctx, id)
	if err != nil {
		return Item{}, err
	}
	if len(items) == 0 {
		return Item{}, fmt.Errorf("catalog entry %s: %w", strconv.Quote(id), ErrNotFound)
	}
	return items[0], nil
}

// ID is the entry's metadata.id ("" for an entry without a manifest).
func (it Item) ID() string {
	if it.Manifest == nil {
		return ""
	}
	return it.Manifest.Metadata.ID
}

// ImportRequest is one catalog document to add.
type ImportRequest struct {
	// Name labels the document (its file name) in messages and in the
	// catalog.
	Name string
	Data []byte
	// Files are the documents an agents.yaml names (its recipes), by the
	// path it names them with; nothing else is read.
	Files map[string][]byte
	// Replace allows an entry to replace an imported one with its id.
	// A shipped entry is never replaced.
	Replace bool
	Actor   string
}

// Import checks every agent of the document and adds them all, or none:
// a refusal is an *ImportError. An id that a shipped entry has, or that an
// imported entry has unless Replace is set, is refused with ErrDuplicate.
// Each added entry is recorded in the audit log.
func (s *Service) Import(ctx context.Context, r ImportRequest) ([]Item, error) {
	if err := checkRequest(r); err != nil {
		return nil, err
	}
	f := Parse(r.Name, r.Data, mapReader(r.Files))
	if !f.OK() {
		return nil, &ImportError{Name: r.Name, Problems: fileProblems(f)}
	}
	if len(f.Entries) == 0 {
		return nil, &ImportError{Name: r.Name, Problems: manifest.Problems{{Code: manifest.CodeRequired, Reason: "the document holds no agent"}}}
	}
	seen := New()
	for _, e := range f.Entries {
		if err := seen.Add(e); err != nil {
			return nil, err
		}
		if _, ok := s.shipped.Get(e.Manifest.Metadata.ID); ok {
			return nil, fmt.Errorf("importing %s: %s: %w (shipped in %s, which an import cannot replace)",
				strconv.Quote(r.Name), strconv.Quote(e.Manifest.Metadata.ID), ErrDuplicate, strconv.Quote(s.dir))
		}
	}
	at := s.now().UTC()
	items := make([]Item, 0, len(f.Entries))
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		for _, e := range f.Entries {
			it := Item{Entry: e, Origin: OriginImported, ImportedBy: r.Actor, ImportedAt: at}
			if err := s.insert(ctx, tx, it, r.Replace); err != nil {
				return err
			}
			items = append(items, it)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return items, nil
}

func checkRequest(r ImportRequest) error {
	switch {
	case r.Actor == "":
		return errors.New("catalog import: an actor is required")
	case r.Name == "" || len(r.Name) > maxNameBytes:
		return &ImportError{Name: r.Name, Problems: manifest.Problems{{Path: "name", Code: manifest.CodeInvalid,
			Reason: fmt.Sprintf("must be a file name of 1 to %d bytes", maxNameBytes)}}}
	case len(r.Data) > MaxFileBytes:
		return &ImportError{Name: r.Name, Problems: manifest.Problems{{Code: manifest.CodeRange,
			Reason: fmt.Sprintf("the document is %d bytes; at most %d are read", len(r.Data), MaxFileBytes)}}}
	case len(r.Files) > MaxImportFiles:
		return &ImportError{Name: r.Name, Problems: manifest.Problems{{Path: "files", Code: manifest.CodeTooMany,
			Reason: fmt.Sprintf("%d files; at most %d", len(r.Files), MaxImportFiles)}}}
	}
	for name, data := range r.Files {
		if len(data) > MaxFileBytes || len(name) > maxNameBytes {
			return &ImportError{Name: r.Name, Problems: manifest.Problems{{Path: manifest.Key("files", name), Code: manifest.CodeRange,
				Reason: fmt.Sprintf("a name of at most %d bytes and at most %d bytes of content", maxNameBytes, MaxFileBytes)}}}
		}
	}
	return nil
}

// fileProblems is every refusal of f, each entry's under its place in the
// file.
func fileProblems(f *File) manifest.Problems {
	ps := append(manifest.Problems(nil), f.Problems...)
	for _, e := range f.Entries {
		for _, p := range e.Problems {
			if p.Path == "" {
				p.Path = e.Source
			}
			ps = append(ps, p)
		}
	}
	return ps
}

// mapReader reads the files sent with a document, by the relative path
// the document names them with.
func mapReader(files map[string][]byte) RelReader {
	return func(rel string) ([]byte, error) {
		if !filepath.IsLocal(rel) {
			return nil, ErrOutsideDir
		}
		data, ok := files[filepath.ToSlash(filepath.Clean(rel))]
		if !ok {
			return nil, fmt.Errorf("%s was not sent with the document: %w", strconv.Quote(rel), fs.ErrNotExist)
		}
		return data, nil
	}
}

const upsertEntry = `INSERT INTO catalog_entries (id, manifest, format, file, source, notes, imported_by, imported_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

func (s *Service) insert(ctx context.Context, tx *sql.Tx, it Item, replace bool) error {
	id := it.ID()
	var old string
	err := tx.QueryRowContext(ctx, `SELECT file FROM catalog_entries WHERE id = ?`, id).Scan(&old)
	switch {
	case err == nil && !replace:
		return fmt.Errorf("importing %s: %s: %w (imported from %s; replace it explicitly)",
			strconv.Quote(it.File), strconv.Quote(id), ErrDuplicate, strconv.Quote(old))
	case err == nil:
		if _, err := tx.ExecContext(ctx, `DELETE FROM catalog_entries WHERE id = ?`, id); err != nil {
			return fmt.Errorf("replacing catalog entry %s: %w", strconv.Quote(id), err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("reading catalog entry %s: %w", strconv.Quote(id), err)
	}
	m, err := json.Marshal(it.Manifest)
	if err != nil {
		return fmt.Errorf("encoding catalog entry %s: %w", strconv.Quote(id), err)
	}
	notes, err := json.Marshal(nonNil(it.Notes))
	if err != nil {
		return fmt.Errorf("encoding catalog entry %s: %w", strconv.Quote(id), err)
	}
	if _, err := tx.ExecContext(ctx, upsertEntry, id, string(m), string(it.Format), it.File, it.Source, string(notes),
		it.ImportedBy, store.FormatTime(it.ImportedAt)); err != nil {
		return fmt.Errorf("storing catalog entry %s: %w", strconv.Quote(id), err)
	}
	return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: it.ImportedBy, Action: "catalog.import", Target: id, Detail: map[string]any{
		"file": it.File, "source": it.Source, "format": it.Format, "replaced": old != "",
		"image": imageOf(it.Manifest), "notes": len(it.Notes),
	}})
}

func nonNil(n []Note) []Note {
	if n == nil {
		return []Note{}
	}
	return n
}

func imageOf(m *manifest.Manifest) string {
	if m.Spec.Image == nil {
		return ""
	}
	if m.Spec.Image.Digest != "" {
		return m.Spec.Image.Ref + "@" + m.Spec.Image.Digest
	}
	return m.Spec.Image.Ref
}

// imported reads the imported entries, or the one with id when id is set.
// Each manifest is checked again: one that a newer binary refuses shows
// with its problems instead of being deployed.
func (s *Service) imported(ctx context.Context, id string) ([]Item, error) {
	q := `SELECT id, manifest, format, file, source, notes, imported_by, imported_at FROM catalog_entries`
	var args []any
	if id != "" {
		q += ` WHERE id = ?`
		args = append(args, id)
	}
	rows, err := s.st.Read().QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the imported catalog: %w", err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the imported catalog: %w", err)
	}
	return out, nil
}

func scanItem(rows *sql.Rows) (Item, error) {
	var id, m, format, notes, at string
	it := Item{Origin: OriginImported}
	if err := rows.Scan(&id, &m, &format, &it.File, &it.Source, &notes, &it.ImportedBy, &at); err != nil {
		return Item{}, fmt.Errorf("reading the imported catalog: %w", err)
	}
	it.Format = Format(format)
	var err error
	if it.ImportedAt, err = store.ParseTime("catalog_entries", "imported_at", at); err != nil {
		return Item{}, err
	}
	if err := json.Unmarshal([]byte(notes), &it.Notes); err != nil {
		return Item{}, fmt.Errorf("catalog entry %s: notes: %w", strconv.Quote(id), err)
	}
	man, err := manifest.Parse([]byte(m))
	if err != nil {
		var ps manifest.Problems
		if !errors.As(err, &ps) {
			ps = manifest.Problems{{Code: manifest.CodeInvalid, Reason: sanitize(err.Error())}}
		}
		it.Problems = ps
		// Keep the id so that the entry can still be listed and named.
		it.Manifest = &manifest.Manifest{APIVersion: manifest.APIVersion, Kind: manifest.Kind, Metadata: manifest.Metadata{ID: id}}
		return it, nil
	}
	it.Manifest = man
	return it, nil
}
