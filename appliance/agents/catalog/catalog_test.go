package catalog

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const upstreamDir = "../testdata/upstream/agent_catalog"

func lintText(t *testing.T, f *File) (string, bool) {
	t.Helper()
	var out, errs bytes.Buffer
	ok, err := Lint(f, &out, &errs)
	if err != nil {
		t.Fatal(err)
	}
	return out.String() + errs.String(), ok
}

func golden(t *testing.T, path string, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// relName makes the golden files independent of where the test runs.
func readRel(t *testing.T, path string) *File {
	t.Helper()
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Path = filepath.ToSlash(path)
	for i := range f.Entries {
		f.Entries[i].File = f.Path
	}
	return f
}

// TestUpstreamLint puts every upstream OMERTAOS file, and our AgentTemplate
// documents, through lint: each imports without refusals, and the golden
// output lists every dropped or approximated field.
func TestUpstreamLint(t *testing.T) {
	files := []string{filepath.Join(upstreamDir, "agents.yaml")}
	recipes, _ := filepath.Glob(filepath.Join(upstreamDir, "recipes", "*.yaml"))
	templates, _ := filepath.Glob("testdata/templates/*.yml")
	if len(recipes) != 3 || len(templates) < 3 {
		t.Fatalf("fixtures missing: %d recipes, %d templates", len(recipes), len(templates))
	}
	files = append(append(files, recipes...), templates...)
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f := readRel(t, path)
			text, ok := lintText(t, f)
			if !ok {
				t.Errorf("refused:\n%s", text)
			}
			golden(t, filepath.Join("testdata", "golden", strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))+".golden"), text)
		})
	}
}

// TestUpstreamCatalog checks what the upstream catalog says in substance:
// three entries, none deployable for want of an image, secrets found, and
// every recipe field noted.
func TestUpstreamCatalog(t *testing.T) {
	f := readRel(t, filepath.Join(upstreamDir, "agents.yaml"))
	if !f.OK() || len(f.Entries) != 3 {
		t.Fatalf("ok=%v entries=%d problems=%v", f.OK(), len(f.Entries), f.Problems)
	}
	secrets := map[string]string{"crewai-crm": "/crm_api_key", "autogpt-research": "", "superagi-github": "/github_token"}
	for _, e := range f.Entries {
		id := e.Manifest.Metadata.ID
		if ok, why := e.Deployable(); ok || why != "not deployable: no image" {
			t.Errorf("%s: deployable=%v %q", id, ok, why)
		}
		cs, ps := manifest.CompileConfigSchema(e.Manifest.Spec.ConfigSchema, "x")
		if len(ps) > 0 {
			t.Fatalf("%s: %v", id, ps)
		}
		if got := strings.Join(cs.SecretPaths(), ","); got != secrets[id] {
			t.Errorf("%s: secrets %q, want %q", id, got, secrets[id])
		}
		noted := map[string]bool{}
		for _, n := range e.Notes {
			noted[n.Path[strings.LastIndex(n.Path, "]")+1:]] = true
		}
		for _, field := range []string{".agent.runtime.mode", ".agent.model.selector", ".agent.tools", ".agent.outputs", ".agent.name", ".agent.description"} {
			if !noted[field] {
				t.Errorf("%s: recipe field %s not noted (notes: %v)", id, field, e.Notes)
			}
		}
	}
}

// TestTemplateMapping checks the AgentTemplate fields that have a meaning
// here were mapped, not just noted.
func TestTemplateMapping(t *testing.T) {
	f := readRel(t, "testdata/templates/quant.agent.yml")
	if !f.OK() {
		t.Fatal(f.Entries[0].Problems)
	}
	m := f.Entries[0].Manifest
	s := m.Spec
	h := s.PolicyHints
	switch {
	case m.Metadata.ID != "quant" || m.Metadata.Name != "Quant Desk" || m.Metadata.Version != "0.3.0":
		t.Errorf("metadata %+v", m.Metadata)
	case s.Resources.CPUMillis() != 1500 || s.Resources.MemoryBytes() != 4<<30 || s.Resources.GPUs != 1:
		t.Errorf("resources %+v", s.Resources)
	case len(s.Env) != 1 || s.Env[0].Name != "QUANT_DATASET":
		t.Errorf("env %+v", s.Env)
	case h == nil || *h.SLAP95Ms != 1500 || *h.BudgetUSDMax != 2.5 || *h.AllowCloud:
		t.Errorf("policy hints %+v", h)
	case s.Network.Mode != manifest.NetworkNone || len(s.Volumes) != 1:
		t.Errorf("network %+v volumes %+v", s.Network, s.Volumes)
	}
	f = readRel(t, "testdata/templates/concierge.agent.yml")
	if !f.OK() {
		t.Fatal(f.Entries[0].Problems)
	}
	m = f.Entries[0].Manifest
	if m.Metadata.ID != "front-desk" || m.Spec.Resources.MemoryBytes() != 3<<29 || m.Spec.Resources.GPUs != 0 || m.Spec.Command != nil {
		t.Errorf("concierge: %+v", m)
	}
}

var wantRe = regexp.MustCompile(`^# want: (.*) \[([a-z-]+)\]$`)

// TestImportRefusals: each bad foreign document is refused with exactly the
// problems its file lists.
func TestImportRefusals(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.y*ml")
	sub, _ := filepath.Glob("testdata/bad/*/agents.yaml")
	files = append(files, sub...)
	if len(files) < 5 {
		t.Fatalf("%d bad files", len(files))
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, line := range strings.Split(string(data), "\n") {
				if m := wantRe.FindStringSubmatch(line); m != nil {
					want = append(want, m[1]+" ["+m[2]+"]")
				}
			}
			f := readRel(t, path)
			var got []string
			for _, p := range allProblems(f) {
				got = append(got, p.Path+" ["+string(p.Code)+"]")
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				text, _ := lintText(t, f)
				t.Errorf("problems:\n%s\nwant:\n%s\nlint:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), text)
			}
		})
	}
}

func allProblems(f *File) manifest.Problems {
	ps := append(manifest.Problems(nil), f.Problems...)
	for _, e := range f.Entries {
		ps = append(ps, e.Problems...)
	}
	return ps
}

// TestShippedCatalog: the catalog the image ships lints clean and every
// entry in it can be deployed.
func TestShippedCatalog(t *testing.T) {
	c, files, err := LoadDir("../../../image/catalog")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if text, ok := lintText(t, f); !ok {
			t.Errorf("%s:\n%s", f.Path, text)
		}
	}
	list := c.List()
	if len(list) < 2 {
		t.Fatalf("%d shipped entries", len(list))
	}
	for _, e := range list {
		if ok, why := e.Deployable(); !ok {
			t.Errorf("%s: %s", e.Manifest.Metadata.ID, why)
		}
	}
}
