package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

const agentA = "apiVersion: omertaos.dev/v1\nkind: Agent\nmetadata: {id: a, name: A}\nspec:\n  image: {ref: omertaos.local/agents/a:1}\n"

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadDir: valid entries from every format are listed; a duplicate id,
// a bad file and files that are not catalog files do not stop the rest;
// a FIFO is not opened (it would block).
func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), agentA)
	write(t, filepath.Join(dir, "a-again.yml"), agentA)
	write(t, filepath.Join(dir, "broken.yaml"), "apiVersion: omertaos.dev/v1\nkind: Agent\nmetadata: {id: b}\n")
	write(t, filepath.Join(dir, "notes.txt"), "not a catalog file")
	write(t, filepath.Join(dir, ".hidden.yaml"), agentA)
	data, err := os.ReadFile(filepath.Join(upstreamDir, "agents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "agents.yaml"), string(data))
	write(t, filepath.Join(dir, "recipes", "ignored.yaml"), agentA)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, files, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range c.List() {
		ids = append(ids, e.Manifest.Metadata.ID)
	}
	if got := strings.Join(ids, ","); got != "a,autogpt-research,crewai-crm,superagi-github" {
		t.Errorf("ids = %s", got)
	}
	if len(files) != 4 {
		t.Errorf("%d files read, want 4 (a, a-again, agents, broken)", len(files))
	}
	bad := map[string]manifest.Code{}
	for _, f := range files {
		for _, p := range allProblems(f) {
			bad[filepath.Base(f.Path)+" "+p.Path] = p.Code
		}
	}
	want := map[string]manifest.Code{"a.yaml metadata.id": manifest.CodeDuplicate, "broken.yaml metadata.name": manifest.CodeRequired}
	if len(bad) != len(want) {
		t.Errorf("problems %v, want %v", bad, want)
	}
	for k, code := range want {
		if bad[k] != code {
			t.Errorf("problem %s = %q, want %q (all: %v)", k, bad[k], code, bad)
		}
	}
	if err := c.Add(c.List()[0].clone()); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Add of a taken id = %v", err)
	}
}

func (e *Entry) clone() Entry { return *e }

// TestRecipeStaysInside: a recipe reached through a symbolic link out of
// the catalog's directory, or by "..", is never read.
func TestRecipeStaysInside(t *testing.T) {
	outside := t.TempDir()
	write(t, filepath.Join(outside, "secret.yaml"), "kind: AgentRecipe\nversion: v1\nagent: {id: x, name: LEAKED}\n")
	dir := t.TempDir()
	write(t, filepath.Join(dir, "agents.yaml"), "agents:\n  - {id: x, name: X, recipe: recipes/link.yaml}\n  - {id: y, name: Y, recipe: ../"+filepath.Base(outside)+"/secret.yaml}\n  - {id: z, name: Z, recipe: "+filepath.Join(outside, "secret.yaml")+"}\n")
	if err := os.MkdirAll(filepath.Join(dir, "recipes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(dir, "recipes", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(filepath.Join(dir, "agents.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 3 {
		t.Fatalf("%d entries", len(f.Entries))
	}
	for _, e := range f.Entries {
		if e.OK() {
			t.Errorf("%s: recipe outside the directory accepted; notes %v", e.Source, e.Notes)
		}
		for _, n := range e.Notes {
			if strings.Contains(n.Path, "agent.name") {
				t.Errorf("%s: the outside recipe was read: %v", e.Source, n)
			}
		}
	}
}

// TestReadFileRefusesSpecialFiles: a FIFO or a device named on the command
// line is refused at once instead of blocking or reading forever.
func TestReadFileRefusesSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero"} {
		if _, err := ReadFile(p); err == nil {
			t.Errorf("ReadFile(%s) accepted", p)
		}
	}
}
