package registry

import (
	"strings"
	"testing"
)

const goodModel = `kind: model
name: tiny
provider: custom
version: "1.0"
download:
  url: https://example.invalid/tiny.gguf
  method: direct
resources:
  vram_gb: 2.5
  context_tokens: 4096
`

// TestModelManifestValidation: each required field, each type and each
// unknown key is refused with its field path; a good manifest gives no
// finding at all.
func TestModelManifestValidation(t *testing.T) {
	m, fs := ParseModel("m.yaml", []byte(goodModel))
	if len(fs) != 0 || m == nil || m.Name != "tiny" || m.Model.Resources.VRAMGB != 2.5 || !m.Model.Resources.HasVRAM {
		t.Fatalf("good model: %+v %v", m, fs)
	}
	cases := []struct {
		name, old, new string
		field, detail  string
	}{
		{"no kind", "kind: model\n", "", "kind", "is required"},
		{"wrong kind", "kind: model", "kind: service", "kind", `"service" but the registry lists it as a model`},
		{"no name", "name: tiny\n", "", "name", "is required"},
		{"name not a label", "name: tiny", "name: \"tiny model\"", "name", "is not a name"},
		{"no provider", "provider: custom\n", "", "provider", "is required"},
		{"no version", "version: \"1.0\"\n", "", "version", "is required"},
		{"version a number", `version: "1.0"`, "version: 1.0", "version", "must be a string, not a number"},
		{"no download", "download:\n  url: https://example.invalid/tiny.gguf\n  method: direct\n", "", "download", "is required"},
		{"no download url", "  url: https://example.invalid/tiny.gguf\n", "", "download.url", "is required"},
		{"download a string", "download:\n  url: https://example.invalid/tiny.gguf\n  method: direct\n", "download: https://x\n", "download", "must be a mapping, not a string"},
		{"vram a string", "vram_gb: 2.5", "vram_gb: lots", "resources.vram_gb", "must be a number, not a string"},
		{"vram negative", "vram_gb: 2.5", "vram_gb: -1", "resources.vram_gb", "outside 0"},
		{"context not whole", "context_tokens: 4096", "context_tokens: 4096.5", "resources.context_tokens", "not a whole number"},
		{"modality not a list", "kind: model\n", "kind: model\nmodality: text\n", "modality", "must be a list"},
		{"modality item", "kind: model\n", "kind: model\nmodality: [text, 3]\n", "modality[1]", "must be a string, not a number"},
		{"bad date", "kind: model\n", "kind: model\nrelease_date: yesterday\n", "release_date", "not a date"},
		{"auto_update not a bool", "kind: model\n", "kind: model\nauto_update: \"yes\"\n", "auto_update", "must be true or false"},
		{"unknown field", "kind: model\n", "kind: model\nintegrty: {}\n", "integrty", "unknown field"},
		{"unknown nested field", "  vram_gb: 2.5\n", "  vram_gb: 2.5\n  vram_mb: 3\n", "resources.vram_mb", "unknown field"},
		{"control character", "provider: custom", "provider: \"cus\\u001btom\"", "provider", "control character"},
		{"not a mapping", goodModel, "- a\n- b\n", "", "must be a mapping, not a list"},
		{"not YAML", goodModel, "kind: [unclosed\n", "", ""},
		{"alias", goodModel, "a: &x 1\nb: *x\n", "", "aliases"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(goodModel, tc.old, tc.new, 1)
			if doc == goodModel {
				t.Fatalf("the edit %q changed nothing", tc.old)
			}
			_, fs := ParseModel("m.yaml", []byte(doc))
			for _, f := range fs {
				if f.Field == tc.field && strings.Contains(f.Detail, tc.detail) {
					if f.Code != CodeInvalidManifest || !f.Failed() || f.Subject != "m.yaml" {
						t.Errorf("finding %+v", f)
					}
					return
				}
			}
			t.Fatalf("no finding at %q saying %q; got %v", tc.field, tc.detail, fs)
		})
	}
}

func TestAlgorithmAndServiceManifests(t *testing.T) {
	alg := `kind: algorithm
name: react-planner
type: planning
entrypoint: "algorithms/planning/react/runner.py:plan"
inputs: [prompt, "tools[]"]
outputs: [final_answer]
depends_on: ["model://llama-3.1-8b-instruct"]
compat: {agent_api: "^1.2"}
policies: {safety: [no-PII-leak]}
version: "1.1.0"
integrity: {sha256: "reactsha256placeholder"}
`
	m, fs := ParseManifest("a.yaml", KindAlgorithm, []byte(alg), Limits{})
	if m == nil || m.Algorithm == nil || m.Algorithm.Type != "planning" || len(fs) != 0 {
		t.Fatalf("algorithm: %+v %v", m, fs)
	}
	ifs, err := checkIntegrity(t.Context(), nil, "a.yaml", m, nil, Limits{})
	if err != nil || len(ifs) != 1 || ifs[0].Code != CodePlaceholderDigest || !strings.Contains(ifs[0].Detail, "says it is a placeholder") {
		t.Fatalf("integrity: %v %v", ifs, err)
	}
	svc := `kind: service
name: minio
category: storage
version: "2025-02-14"
download: {url: "https://dl.min.io/server/minio", method: direct}
integrity: {sha256: "` + strings.Repeat("ab", 32) + `"}
compat: {os: [linux]}
`
	m, fs = ParseManifest("s.yaml", KindService, []byte(svc), Limits{})
	if m == nil || m.Service == nil || m.Service.Category != "storage" || len(fs) != 0 {
		t.Fatalf("service: %+v %v", m, fs)
	}
	ifs, _ = checkIntegrity(t.Context(), nil, "s.yaml", m, nil, Limits{})
	if len(ifs) != 1 || ifs[0].Code != CodeNotChecked || ifs[0].Severity != SeverityWarning {
		t.Fatalf("remote artifact: %v", ifs)
	}
	_, fs = ParseManifest("s.yaml", KindService, []byte(strings.Replace(svc, "category: storage\n", "", 1)), Limits{})
	if len(fs) != 1 || fs[0].Field != "category" {
		t.Fatalf("service without category: %v", fs)
	}
}

// TestDigestClassification: what counts as a placeholder, what as a
// malformed digest, in a manifest's integrity.sha256.
func TestDigestClassification(t *testing.T) {
	cases := map[string]Code{
		strings.Repeat("0", 64):            CodePlaceholderDigest,
		"0":                                CodePlaceholderDigest,
		"e3b0c44298fc1...":                 CodePlaceholderDigest,
		emptySHA256:                        CodePlaceholderDigest,
		"totsha256placeholder":             CodePlaceholderDigest,
		"fae1c95e…":                        CodePlaceholderDigest,
		"5d41402abc4b2a76b9719d911017c592": CodeInvalidManifest,
		strings.Repeat("A", 64):            CodeInvalidManifest,
		strings.Repeat("g", 64):            CodeInvalidManifest,
		strings.Repeat("ab", 32):           CodeOK,
	}
	for s, want := range cases {
		fs := &findings{subject: "x"}
		ok := manifestDigest(fs, s)
		got := CodeOK
		if len(fs.list) > 0 {
			got = fs.list[0].Code
		}
		if got != want || ok != (want == CodeOK) {
			t.Errorf("%q: %s (ok %v), want %s", s, got, ok, want)
		}
	}
}

func TestIndexParsing(t *testing.T) {
	ix, fs := ParseIndex([]byte(`registry_version: "1.0"
catalog:
  models: [models/a.yaml, {path: models/b.yaml, requiresApiKey: true}]
  widgets: [x.yaml]
signing: {method: gpg}
`), Limits{})
	if ix == nil || len(ix.Catalog) != 2 || !ix.Catalog[1].RequiresAPIKey || ix.Catalog[0].Path != "models/a.yaml" {
		t.Fatalf("index %+v", ix)
	}
	var fields []string
	for _, f := range fs {
		fields = append(fields, f.Field)
	}
	if strings.Join(fields, ",") != "catalog,signing.method" {
		t.Fatalf("findings %v", fs)
	}
}

func TestLockLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"entries": [`)
	for i := range 11 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"kind":"file","name":"f","path":"f` + string(rune('a'+i)) + `","sha256":"` + strings.Repeat("ab", 32) + `"}`)
	}
	b.WriteString(`]}`)
	l, fs := ParseLock([]byte(b.String()), Limits{Entries: 10})
	if l != nil || len(fs) != 1 || fs[0].Code != CodeInvalidManifest {
		t.Fatalf("11 entries past a limit of 10: %v %v", l, fs)
	}
	l, fs = ParseLock([]byte(b.String()), Limits{Entries: 11})
	if l == nil || len(l.Entries) != 11 || len(fs) != 0 {
		t.Fatalf("11 entries: %v", fs)
	}
}

func TestLockIsJSON(t *testing.T) {
	for _, doc := range []string{"", "entries: []\n", "[]", "# {\n"} {
		if l, fs := ParseLock([]byte(doc), Limits{}); l != nil || len(fs) != 1 || fs[0].Code != CodeInvalidManifest {
			t.Errorf("%q: %v %v", doc, l, fs)
		}
	}
	if l, fs := ParseLock([]byte(" \n{\"entries\": []}"), Limits{}); l == nil || len(fs) != 0 {
		t.Errorf("empty lock: %v", fs)
	}
}
