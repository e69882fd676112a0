package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/config"
)

func TestParseCPU(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"500m", 500, true}, {"1", 1000, true}, {"1.5", 1500, true}, {"0.25", 250, true},
		{"2.000", 2000, true}, {"0.5000", 500, true}, {"1.2345", 0, false}, {"1.5m", 0, false},
		{"", 0, false}, {"-1", 0, false}, {"1e3", 0, false}, {" 1", 0, false}, {"1 ", 0, false},
		{"9999999999m", 0, false}, {"1k", 0, false},
	} {
		got, err := ParseCPU(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrQuantity) {
			t.Errorf("ParseCPU(%q) error %v is not ErrQuantity", tt.in, err)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"256Mi", 256 << 20, true}, {"1Gi", 1 << 30, true}, {"1.5Gi", 3 << 29, true}, {"1G", 1e9, true},
		{"1024", 1024, true}, {"4k", 4000, true}, {"1Ti", 1 << 40, true}, {"0.5Ki", 512, true},
		{"0.1Ki", 0, false}, {"1MB", 0, false}, {"1mi", 0, false}, {"-1Mi", 0, false}, {"", 0, false},
		{"9999999999999999Pi", 0, false}, {"1.5", 0, false}, {"1e6", 0, false},
	} {
		got, err := ParseBytes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatQuantities(t *testing.T) {
	for n, want := range map[int64]Quantity{1 << 30: "1Gi", 3 << 29: "1536Mi", 1e9: "1G", 1000: "1k", 1023: "1023", 1 << 20: "1Mi"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %s, want %s", n, got, want)
		}
		if back, err := ParseBytes(string(FormatBytes(n))); err != nil || back != n {
			t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", n, back, err)
		}
	}
	for n, want := range map[int64]Quantity{1000: "1", 1500: "1500m", 10: "10m"} {
		if got := FormatCPU(n); got != want {
			t.Errorf("FormatCPU(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestDefaultIsolation(t *testing.T) {
	for p, want := range map[config.Profile]Isolation{config.ProfileUser: IsolationContainer, config.ProfilePro: IsolationContainer, config.ProfileEnterprise: IsolationSandbox} {
		if got := (Spec{}).EffectiveIsolation(p); got != want {
			t.Errorf("profile %s: isolation %s, want %s", p, got, want)
		}
		if got := (Spec{Isolation: IsolationContainer}).EffectiveIsolation(p); got != IsolationContainer {
			t.Errorf("profile %s overrode an explicit isolation: %s", p, got)
		}
	}
}

const secretSchema = `{"type": "object", "properties": {
  "region": {"type": "string"},
  "api_key": {"type": "string", "format": "secret"},
  "nested": {"type": "object", "properties": {"token": {"type": "string", "format": "secret"}, "n": {"type": "integer"}}},
  "a/b": {"type": "string", "format": "secret"}}}`

func schemaDoc(t *testing.T, s string) map[string]any {
	t.Helper()
	tree, err := ParseTree([]byte(s), Limits())
	if err != nil {
		t.Fatal(err)
	}
	return tree.(map[string]any)
}

// TestSplitConfig: secret values come out of the public part, keyed by
// JSON pointer, and merge back to the original.
func TestSplitConfig(t *testing.T) {
	cs, ps := CompileConfigSchema(schemaDoc(t, secretSchema), "spec.configSchema")
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if got, want := strings.Join(cs.SecretPaths(), " "), "/a~1b /api_key /nested/token"; got != want {
		t.Fatalf("SecretPaths = %s, want %s", got, want)
	}
	cfg := schemaDoc(t, `{"region": "eu", "api_key": "k1", "nested": {"token": "t1", "n": 3}, "a/b": "s"}`)
	orig, _ := json.Marshal(cfg)
	public, secrets := cs.Split(cfg)
	pub, _ := json.Marshal(public)
	if strings.Contains(string(pub), "k1") || strings.Contains(string(pub), "t1") || string(pub) != `{"nested":{"n":3},"region":"eu"}` {
		t.Errorf("public part = %s", pub)
	}
	if !reflect.DeepEqual(secrets, map[string]any{"/api_key": "k1", "/nested/token": "t1", "/a~1b": "s"}) {
		t.Errorf("secrets = %v", secrets)
	}
	if after, _ := json.Marshal(cfg); string(after) != string(orig) {
		t.Errorf("Split changed its input: %s", after)
	}
	merged, _ := json.Marshal(cs.Merge(public, secrets))
	if string(merged) != string(orig) {
		t.Errorf("Merge = %s, want %s", merged, orig)
	}
	red, _ := json.Marshal(cs.Redact(cfg))
	if strings.Contains(string(red), "k1") || !strings.Contains(string(red), `"api_key":"(secret)"`) {
		t.Errorf("Redact = %s", red)
	}
	if ps := cs.Validate(cfg, "spec.config"); len(ps) > 0 {
		t.Errorf("valid config refused: %v", ps)
	}
}

// TestMarshalRedacts: the normalised manifest never shows a secret value.
func TestMarshalRedacts(t *testing.T) {
	data, err := os.ReadFile("testdata/good/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"not-a-real-key", "also-not-real"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("Marshal shows the secret %q", secret)
		}
	}
	if m.Spec.Config["crm_api_key"] != "not-a-real-key" {
		t.Error("Marshal changed the manifest it was given")
	}
}

// TestConfigSchemaLoadsNothing: a schema naming a file that exists, and
// holds a valid schema, is refused: the compiler's default loader would read
// it, and a manifest must not make omertad read host files or the network.
func TestConfigSchemaLoadsNothing(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "s.json")
	if err := os.WriteFile(target, []byte(`{"type": "string"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, doc := range []map[string]any{
		{"$schema": "file://" + target},
		{"$schema": "https://example.invalid/s.json"},
		{"properties": map[string]any{"a": map[string]any{"$ref": "file://" + target}}},
		{"properties": map[string]any{"a": map[string]any{"$dynamicRef": "https://example.invalid/s.json"}}},
	} {
		if cs, ps := CompileConfigSchema(doc, "spec.configSchema"); cs != nil || len(ps) != 1 {
			t.Errorf("%v: compiled=%v problems=%v", doc, cs != nil, ps)
		}
	}
	if _, err := (noLoader{}).Load("file://" + target); !errors.Is(err, errNoLoad) {
		t.Errorf("noLoader.Load = %v", err)
	}
}

// TestKeyQuotesForeignKeys: a hostile key cannot forge a field path.
func TestKeyQuotesForeignKeys(t *testing.T) {
	for in, want := range map[string]string{"ok": "spec.ok", "a.b": `spec["a.b"]`, "x\x1b[2K": `spec["x\x1b[2K"]`, "": `spec[""]`, "$defs": `spec["$defs"]`} {
		if got := Key("spec", in); got != want {
			t.Errorf("Key(spec, %q) = %s, want %s", in, got, want)
		}
	}
}

// TestProblemsCapped: a document with thousands of bad values yields a
// bounded list.
func TestProblemsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: omertaos.dev/v1\nkind: Agent\nmetadata: {id: x, name: X}\nspec:\n  env:\n")
	for i := 0; i < 120; i++ {
		b.WriteString("    - {name: \"1\", value: v}\n")
	}
	_, err := Parse([]byte(b.String()))
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != maxProblems+1 || ps[maxProblems].Code != CodeTooMany {
		t.Fatalf("got %d problems", len(ps))
	}
}

// TestJSONRoundTrip: a checked manifest written as JSON (as the API will
// send it) parses back to the same manifest.
func TestJSONRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.*")
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			continue
		}
		data, _ := os.ReadFile(f)
		m, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(js)
		if err != nil {
			t.Fatalf("%s: JSON form refused: %v\n%s", f, err, js)
		}
		if !reflect.DeepEqual(m, back) {
			t.Errorf("%s: JSON round trip changed the manifest:\n%+v\n%+v", f, m, back)
		}
	}
}
