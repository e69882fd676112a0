package policy

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestParseGood: each fixture parses, and its normalised form matches the
// golden file beside it (names lower-cased, quantities and CIDRs
// canonical); the normalised form parses back to itself.
func TestParseGood(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.*")
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, _ := json.MarshalIndent(doc, "", "  ")
			golden := f + ".golden"
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if strings.TrimSpace(string(want)) != string(got) {
				t.Errorf("normalised form differs from %s:\n%s", golden, got)
			}
			again, err := Parse(got)
			if err != nil {
				t.Fatalf("the normalised form does not parse: %v", err)
			}
			if g2, _ := json.MarshalIndent(again, "", "  "); string(g2) != string(got) {
				t.Errorf("normalising is not stable:\n%s", g2)
			}
		})
	}
}

func problemsOf(t *testing.T, err error) manifest.Problems {
	t.Helper()
	var ie *InvalidError
	if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v is not an *InvalidError", err)
	}
	return ie.Problems
}

// TestParseManyProblems: one document with a fault in every field gets a
// problem for each, naming its path.
func TestParseManyProblems(t *testing.T) {
	data, err := os.ReadFile("testdata/bad/many.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data)
	ps := problemsOf(t, err)
	want := map[string]manifest.Code{
		"subject.name":               manifest.CodeInvalid,
		"spec.isolation":             manifest.CodeInvalid,
		"spec.network.modes[0]":      manifest.CodeInvalid,
		"spec.network.egress[0]":     manifest.CodeInvalid,
		"spec.network.egress[1]":     manifest.CodeInvalid,
		"spec.network.egress[2]":     manifest.CodeInvalid,
		"spec.network.egress[4]":     manifest.CodeDuplicate,
		"spec.max.cpu":               manifest.CodeInvalid,
		"spec.max.memory":            manifest.CodeRange,
		"spec.max.pids":              manifest.CodeRange,
		"spec.max.gpus":              manifest.CodeRange,
		"spec.images.digests[0]":     manifest.CodeInvalid,
		"spec.images.signers[0]":     manifest.CodeInvalid,
		"spec.models.allowed[0]":     manifest.CodeInvalid,
		"spec.secrets[0]":            manifest.CodeInvalid,
		"spec.tasks.perMinute":       manifest.CodeRange,
		"spec.budget.tokensPerMonth": manifest.CodeRange,
		"spec.budget.usdPerMonth":    manifest.CodeRange,
		"spec.extra":                 manifest.CodeUnknownField,
	}
	got := map[string]manifest.Code{}
	for _, p := range ps {
		got[p.Path] = p.Code
		if p.Reason == "" {
			t.Errorf("%s: no reason", p.Path)
		}
	}
	for path, code := range want {
		if got[path] != code {
			t.Errorf("%s: got code %q, want %q (all: %v)", path, got[path], code, ps)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ps), len(want), ps)
	}
}

// TestParseRefusals: each refusal names the field and the reason.
func TestParseRefusals(t *testing.T) {
	const head = "apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: agent, name: a}\n"
	tests := []struct {
		name, doc, path string
		code            manifest.Code
		reason          string
	}{
		{"not a mapping", "- a\n", "", manifest.CodeType, "must be a mapping"},
		{"no apiVersion", "kind: Policy\n", "apiVersion", manifest.CodeRequired, "required"},
		{"wrong kind", "apiVersion: omertaos.dev/v1\nkind: Agent\n", "kind", manifest.CodeInvalid, `"Agent" is not Policy`},
		{"no subject kind", "apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {name: a}\n", "subject.kind", manifest.CodeRequired, "required"},
		{"bad subject kind", "apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: user, name: a}\n", "subject.kind", manifest.CodeInvalid, `"user"`},
		{"long category", "apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: category, name: " + strings.Repeat("x", 65) + "}\n", "subject.name", manifest.CodeInvalid, "1 to 64"},
		{"control in category", "apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: category, name: \"a\\u202eb\"}\n", "subject.name", manifest.CodeInvalid, "control or invisible"},
		{"wrong type", head + "spec: {max: {pids: many}}\n", "spec.max.pids", manifest.CodeType, "whole number"},
		{"list expected", head + "spec: {secrets: x}\n", "spec.secrets", manifest.CodeType, "must be a list"},
		{"bool expected", head + "spec: {gpu: {allowed: 1}}\n", "spec.gpu.allowed", manifest.CodeType, "true or false"},
		{"null in list", head + "spec: {secrets: [~]}\n", "spec.secrets[0]", manifest.CodeType, "must not be empty"},
		{"host bits", head + "spec: {network: {egress: [10.1.2.3/8]}}\n", "spec.network.egress[0]", manifest.CodeInvalid, "write 10.0.0.0/8"},
		{"bare wildcard", head + "spec: {network: {egress: [\"*.com\"]}}\n", "spec.network.egress[0]", manifest.CodeInvalid, "two labels"},
		{"zone", head + "spec: {network: {egress: [\"fe80::1%eth0\"]}}\n", "spec.network.egress[0]", manifest.CodeInvalid, "zone"},
		{"duplicate mode", head + "spec: {network: {modes: [none, none]}}\n", "spec.network.modes[1]", manifest.CodeDuplicate, "also at [0]"},
		{"too many", head + "spec: {secrets: [" + strings.Repeat("a,", 257) + "a]}\n", "spec.secrets", manifest.CodeSyntax, "256"},
		{"vram too big", head + "spec: {gpu: {vram: 17Ti}}\n", "spec.gpu.vram", manifest.CodeRange, "outside 0 to 16Ti"},
		{"duplicate key", head + "spec: {tasks: {perMinute: 1, perMinute: 2}}\n", "spec.tasks", manifest.CodeSyntax, "already defined"},
		{"json duplicate", `{"apiVersion":"omertaos.dev/v1","apiVersion":"x"}`, "", manifest.CodeSyntax, "given twice"},
		{"too large", head + "description: " + strings.Repeat("x", MaxDocumentBytes) + "\n", "", manifest.CodeSyntax, "larger than"},
		{"alias", mustRead(t, "testdata/bad/alias.yaml"), "", manifest.CodeSyntax, "alias"},
		{"deep", mustRead(t, "testdata/bad/deep.json"), "", manifest.CodeSyntax, "deeper than 8"},
		{"usd not a number", head + "spec: {budget: {usdPerMonth: lots}}\n", "spec.budget.usdPerMonth", manifest.CodeType, "must be a number"},
		{"hostile key", head + "spec: {\"\\e[2J\": 1}\n", `spec["\x1b[2J"]`, manifest.CodeUnknownField, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			ps := problemsOf(t, err)
			for _, p := range ps {
				if (p.Path == tt.path || tt.code == manifest.CodeSyntax) && p.Code == tt.code &&
					strings.Contains(strings.ToLower(p.Reason), strings.ToLower(tt.reason)) {
					return
				}
			}
			t.Errorf("want %s %s %q; got %v", tt.path, tt.code, tt.reason, ps)
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestParseTenant: a tenant document, its quotas normalised, and its
// refusals by field.
func TestParseTenant(t *testing.T) {
	doc, err := ParseTenant([]byte(`apiVersion: omertaos.dev/v1
kind: Tenant
name: team-a
description: the A team
quotas: {agents: 10, cpu: 8000m, memory: 32768Mi, gpus: 2, vram: 48Gi, tokensPerMonth: 1000000, usdPerMonth: 50}
`))
	if err != nil {
		t.Fatal(err)
	}
	if q := doc.Quotas; q.CPU != "8" || q.Memory != "32Gi" || *q.Agents != 10 || *q.USDPerMonth != 50 {
		t.Errorf("quotas not normalised: %+v", q)
	}
	_, err = ParseTenant([]byte("apiVersion: omertaos.dev/v1\nkind: Tenant\nname: Team A\nquotas: {agents: -1, cpu: x, gpus: 2000, color: red}\n"))
	got := map[string]bool{}
	for _, p := range problemsOf(t, err) {
		got[p.Path] = true
	}
	for _, want := range []string{"name", "quotas.agents", "quotas.cpu", "quotas.gpus", "quotas.color"} {
		if !got[want] {
			t.Errorf("no problem at %s: %v", want, got)
		}
	}
	if _, err := ParseTenant([]byte("apiVersion: omertaos.dev/v1\nkind: Policy\n")); err == nil {
		t.Error("a Policy parsed as a Tenant")
	}
}
