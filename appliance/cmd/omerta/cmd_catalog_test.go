package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

const repoRoot = "../../.."

func TestCatalogLintShipped(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot, "image/catalog/*.yaml"))
	if len(files) < 2 {
		t.Fatalf("%d shipped manifests", len(files))
	}
	out, err := runCmd(t, append([]string{"catalog", "lint"}, files...)...)
	if err != nil {
		t.Fatalf("lint of the shipped catalog: %v\n%s", err, out)
	}
	for _, want := range []string{"id: sample-tool", "id: sample-http", "# image digest: not given"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCatalogLintUpstream(t *testing.T) {
	out, err := runCmd(t, "catalog", "lint", filepath.Join(repoRoot, "appliance/agents/testdata/upstream/agent_catalog/agents.yaml"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if n := strings.Count(out, "# not deployable: no image"); n != 3 {
		t.Errorf("%d entries listed as not deployable, want 3:\n%s", n, out)
	}
	if !strings.Contains(out, "# dropped agents[2].recipe[\"recipes/superagi-github.yaml\"].agent.runtime.endpoint: ") {
		t.Errorf("recipe field not named as dropped:\n%s", out)
	}
}

// TestCatalogLintRefuses: a bad file exits 1 with one line per refusal,
// each naming the file and the field; a good file beside it still prints.
func TestCatalogLintRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: omertaos.dev/v1\nkind: Agent\nmetadata: {id: x, name: X}\nspec:\n  privileged: true\n  resources: {memory: 1Mi}\n"), 0o644)
	good := filepath.Join(repoRoot, "image/catalog/sample-tool.yaml")
	out, err := runCmd(t, "catalog", "lint", bad, good)
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 {
		t.Fatalf("exit = %v, want status 1\n%s", err, out)
	}
	for _, want := range []string{bad + ": spec.privileged: refused: asks for host access", bad + ": spec.resources.memory: \"1Mi\" is outside 4Mi to 1Ti", "id: sample-tool"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestCatalogLintEscapes: text from the file never reaches the terminal
// raw, whether in a key, a value or the file's own name.
func TestCatalogLintEscapes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "evil\x1b[2K.yaml")
	os.WriteFile(p, []byte("apiVersion: omertaos.dev/v1\nkind: Agent\nmetadata: {id: x, name: \"A\\e[2K\\rVERIFIED\"}\nspec:\n  \"\\e]0;pwned\\a\": 1\n"), 0o644)
	out, err := runCmd(t, "catalog", "lint", p)
	if err == nil {
		t.Fatalf("accepted:\n%s", out)
	}
	if strings.ContainsAny(out, "\x1b\r\a") {
		t.Errorf("raw control characters in the output: %q", out)
	}
	if !strings.Contains(out, `spec["\x1b]0;pwned\a"]: unknown field`) {
		t.Errorf("hostile key not quoted in its path: %q", out)
	}
}

func TestCatalogLintUnreadable(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := runCmd(t, "catalog", "lint", filepath.Join(dir, "absent.yaml"), fifo)
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 {
		t.Fatalf("exit = %v\n%s", err, out)
	}
	if time.Since(start) > 5*time.Second || !strings.Contains(out, "absent.yaml") || !strings.Contains(out, "not a regular file") {
		t.Errorf("output: %s", out)
	}
	if _, err := runCmd(t, "catalog", "lint"); err == nil {
		t.Error("lint with no file succeeded")
	}
}

func TestCatalogSchema(t *testing.T) {
	out, err := runCmd(t, "catalog", "schema")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil || out != string(manifest.Schema()) {
		t.Fatalf("schema output is not the manifest schema: %v", err)
	}
	if doc["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", doc["$schema"])
	}
}
