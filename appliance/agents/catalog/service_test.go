package catalog

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/store"
)

const shippedManifest = `apiVersion: omertaos.dev/v1
kind: Agent
metadata:
  id: text-tool
  name: Text tool
spec:
  image:
    ref: omerta.local/agents/text-tool:1
`

func testManifest(id string) string {
	return strings.Replace(shippedManifest, "id: text-tool", "id: "+id, 1)
}

func newTestService(t *testing.T, dir string) (*Service, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	return NewService(st, dir, WithClock(func() time.Time { return at })), st
}

func shippedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "text-tool.yaml"), []byte(shippedManifest), 0o644)
	os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("apiVersion: omertaos.dev/v1\nkind: Agent\nmetadata: {id: Bad_Id}\n"), 0o644)
	return dir
}

func TestServiceShippedAndImported(t *testing.T) {
	ctx := context.Background()
	s, st := newTestService(t, shippedDir(t))
	if s.LoadError() != nil || len(s.Shipped()) != 2 {
		t.Fatalf("shipped: %v, %d files", s.LoadError(), len(s.Shipped()))
	}
	items, err := s.Import(ctx, ImportRequest{Name: "summarise.yaml", Data: []byte(testManifest("summarise")), Actor: "uid:0"})
	if err != nil || len(items) != 1 || items[0].Origin != OriginImported || items[0].ImportedBy != "uid:0" {
		t.Fatalf("Import = %+v, %v", items, err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 || list[0].ID() != "summarise" || list[1].ID() != "text-tool" || list[1].Origin != OriginShipped {
		t.Fatalf("List = %+v, %v", list, err)
	}
	got, err := s.Get(ctx, "summarise")
	if err != nil || got.Origin != OriginImported || got.File != "summarise.yaml" || !got.ImportedAt.Equal(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if ok, why := got.Deployable(); !ok {
		t.Errorf("imported entry not deployable: %s", why)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nope) = %v, want ErrNotFound", err)
	}
	recs, err := st.AuditLog(ctx, 0, 10)
	if err != nil || len(recs) != 1 || recs[0].Action != "catalog.import" || recs[0].Target != "summarise" || recs[0].Actor != "uid:0" {
		t.Fatalf("audit = %+v, %v", recs, err)
	}
}

func TestServiceImportConflicts(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, shippedDir(t))
	req := ImportRequest{Name: "a.yaml", Data: []byte(testManifest("alpha")), Actor: "uid:0"}
	if _, err := s.Import(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, req); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second import = %v, want ErrDuplicate", err)
	}
	req.Replace, req.Name = true, "a2.yaml"
	if _, err := s.Import(ctx, req); err != nil {
		t.Errorf("import with replace = %v", err)
	}
	if it, _ := s.Get(ctx, "alpha"); it.File != "a2.yaml" {
		t.Errorf("replaced entry comes from %q, want a2.yaml", it.File)
	}
	shipped := ImportRequest{Name: "t.yaml", Data: []byte(shippedManifest), Actor: "uid:0", Replace: true}
	if _, err := s.Import(ctx, shipped); !errors.Is(err, ErrDuplicate) {
		t.Errorf("importing a shipped id = %v, want ErrDuplicate even with replace", err)
	}
}

func TestServiceImportRefusals(t *testing.T) {
	ctx := context.Background()
	s, st := newTestService(t, filepath.Join(t.TempDir(), "absent"))
	if s.LoadError() == nil {
		t.Error("a missing shipped directory gave no LoadError")
	}
	tests := []struct {
		name string
		req  ImportRequest
		want string // a problem's path
	}{
		{"bad id", ImportRequest{Name: "x.yaml", Data: []byte(testManifest("Bad_Id"))}, "metadata.id"},
		{"syntax", ImportRequest{Name: "x.yaml", Data: []byte("{")}, ""},
		{"recipe outside", ImportRequest{Name: "agents.yaml", Data: []byte("agents:\n  - id: a\n    name: A\n    recipe: ../../etc/passwd\n")}, "agents[0].recipe"},
		{"too many files", ImportRequest{Name: "agents.yaml", Data: []byte("agents: []\n"), Files: manyFiles(MaxImportFiles + 1)}, "files"},
		{"no name", ImportRequest{Data: []byte(shippedManifest)}, "name"},
		{"empty catalog", ImportRequest{Name: "agents.yaml", Data: []byte("agents: []\n")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Actor = "uid:0"
			_, err := s.Import(ctx, tt.req)
			var ie *ImportError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) || len(ie.Problems) == 0 {
				t.Fatalf("Import = %v, want an *ImportError", err)
			}
			if tt.want != "" && ie.Problems[0].Path != tt.want {
				t.Errorf("first problem = %+v, want path %q", ie.Problems[0], tt.want)
			}
		})
	}
	// A file with one bad entry among good ones adds none of them.
	doc := "agents:\n  - id: good\n    name: Good\n  - id: Bad!\n    name: Bad\n"
	if _, err := s.Import(ctx, ImportRequest{Name: "agents.yaml", Data: []byte(doc), Actor: "uid:0"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mixed file = %v", err)
	}
	if list, _ := s.List(ctx); len(list) != 0 {
		t.Errorf("after a refused import the catalog holds %d entries", len(list))
	}
	if recs, _ := st.AuditLog(ctx, 0, 10); len(recs) != 0 {
		t.Errorf("a refused import was audited: %+v", recs)
	}
}

func manyFiles(n int) map[string][]byte {
	m := map[string][]byte{}
	for i := range n {
		m[filepath.Join("r", strings.Repeat("x", i%50)+string(rune('a'+i%26))+strings.Repeat("y", i/26))] = nil
	}
	return m
}

// TestServiceImportUpstream: an OMERTAOS agents.yaml imports with the
// recipes sent beside it, and its notes survive the database.
func TestServiceImportUpstream(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, t.TempDir())
	data, err := os.ReadFile(filepath.Join(upstreamDir, "agents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	recipes, _ := filepath.Glob(filepath.Join(upstreamDir, "recipes", "*.yaml"))
	for _, r := range recipes {
		b, _ := os.ReadFile(r)
		files["recipes/"+filepath.Base(r)] = b
	}
	items, err := s.Import(ctx, ImportRequest{Name: "agents.yaml", Data: data, Files: files, Actor: "uid:0"})
	if err != nil {
		t.Fatal(err)
	}
	want := readFileOrFatal(t, filepath.Join(upstreamDir, "agents.yaml"))
	if len(items) != len(want.Entries) {
		t.Fatalf("imported %d entries, the file holds %d", len(items), len(want.Entries))
	}
	for i, w := range want.Entries {
		got, err := s.Get(ctx, w.Manifest.Metadata.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Format != FormatOMERTAOSCatalog || got.Source != w.Source || len(got.Notes) != len(w.Notes) || !got.OK() {
			t.Errorf("entry %d = %+v, want format, source and %d notes as read from the directory", i, got, len(w.Notes))
		}
		a, _ := manifest.Marshal(got.Manifest)
		b, _ := manifest.Marshal(w.Manifest)
		if !bytes.Equal(a, b) {
			t.Errorf("%s changed through the database:\n%s\nwant\n%s", w.Manifest.Metadata.ID, a, b)
		}
		if ok, why := got.Deployable(); ok || why != "not deployable: no image" {
			t.Errorf("%s: deployable %v %q", w.Manifest.Metadata.ID, ok, why)
		}
	}
}

func readFileOrFatal(t *testing.T, path string) *File {
	t.Helper()
	f, err := ReadFile(path)
	if err != nil || !f.OK() {
		t.Fatalf("%s: %v %+v", path, err, f)
	}
	return f
}
