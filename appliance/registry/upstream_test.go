package registry

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestUpstreamFixture verifies the copy of OMERTAOS's ai_registry and
// checks what it really holds (testdata/upstream/NOTICE.md): the six model
// manifests present match the lock, everything else fails, and every
// placeholder is reported as one. The whole report is a golden file.
func TestUpstreamFixture(t *testing.T) {
	r := verify(t, upstreamDir, NewKeyring())
	if r.OK() {
		t.Fatal("the upstream registry verifies")
	}
	if r.LockEntries != 14 || r.CatalogEntries != 15 {
		t.Fatalf("%d lock entries, %d catalog entries; want 14, 15", r.LockEntries, r.CatalogEntries)
	}
	if r.Signature.Code != CodeUnsigned {
		t.Errorf("signature %s, want unsigned", r.Signature.Code)
	}
	for _, m := range []string{"ollama/llama3.2-3b", "alibaba/qwen-2.5-max", "deepseek/deepseek-v3", "google/gemini-2.5-pro", "meta/llama-4-maverick", "openai/gpt-4.5"} {
		f := mustFind(t, r, "models/"+m+".yaml", "", CodeOK)
		if f.Want != f.Got {
			t.Errorf("%s: %+v", m, f)
		}
	}
	for _, p := range []string{"algorithms/memory/vector-cache.yaml", "algorithms/planning/react.yaml", "algorithms/rag/rag-lite.yaml", "algorithms/tot/tree-of-thought.yaml",
		"services/database/mongodb.yaml", "services/storage/minio.yaml", "services/vector/qdrant.yaml", "services/workflow/n8n.yaml"} {
		mustFind(t, r, p, "", CodeMissingFile)
	}
	mustFind(t, r, "models/custom/local-echo.yaml", "", CodeMissingFromLock)
	mustFind(t, r, IndexFile, "signing.public_key", CodeMissingFile)
	placeholders := map[string]Code{
		"models/custom/local-echo.yaml:integrity.sha256":        CodePlaceholderDigest,
		"models/google/gemini-2.5-pro.yaml:integrity.sha256":    CodePlaceholderDigest,
		"models/openai/gpt-4.5.yaml:integrity.sha256":           CodeInvalidManifest,
		"models/alibaba/qwen-2.5-max.yaml:integrity.sha256":     CodeInvalidManifest,
		"models/deepseek/deepseek-v3.yaml:integrity.sha256":     CodeInvalidManifest,
		"models/meta/llama-4-maverick.yaml:integrity.sha256":    CodeInvalidManifest,
		"models/openai/gpt-4.5.yaml:integrity.signature":        CodePlaceholderSignature,
		"models/alibaba/qwen-2.5-max.yaml:integrity.signature":  CodePlaceholderSignature,
		"models/deepseek/deepseek-v3.yaml:integrity.signature":  CodePlaceholderSignature,
		"models/google/gemini-2.5-pro.yaml:integrity.signature": CodePlaceholderSignature,
		"models/meta/llama-4-maverick.yaml:integrity.signature": CodePlaceholderSignature,
		"models/ollama/llama3.2-3b.yaml:integrity.signature":    CodePlaceholderSignature,
	}
	for key, code := range placeholders {
		var subject, field string
		for i := range key {
			if key[i] == ':' {
				subject, field = key[:i], key[i+1:]
			}
		}
		mustFind(t, r, subject, field, code)
	}
	if r.Counts.OK != 6 || r.Counts.Failures != 22 || r.Counts.Warnings != 1 {
		t.Errorf("counts %+v, want 6 ok, 1 warning, 22 failures", r.Counts)
	}
	var out bytes.Buffer
	if err := WriteText(&out, r); err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/upstream.golden.txt", out.Bytes())
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		writeFile(t, path, got)
		return
	}
	want := readFile(t, filepath.FromSlash(path))
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -run %s -args -update to rewrite); got:\n%s", path, t.Name(), got)
	}
}
