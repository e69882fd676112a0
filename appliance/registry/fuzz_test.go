package registry

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"aead.dev/minisign"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// seed adds every file matching the patterns to f's corpus.
func seed(f *testing.F, patterns ...string) {
	for _, pat := range patterns {
		files, _ := filepath.Glob(pat)
		for _, p := range files {
			f.Add(readFile(f, p))
		}
	}
}

// checkFindings: every finding has a code, a severity matching what it
// is, a detail, and prints on one line with nothing a terminal obeys.
func checkFindings(t *testing.T, fs []Finding) {
	t.Helper()
	for _, x := range fs {
		if x.Code == "" || x.Severity == "" || x.Detail == "" {
			t.Fatalf("incomplete finding %+v", x)
		}
		s := x.String()
		if strings.ContainsAny(s, "\n\r") || !utf8.ValidString(s) {
			t.Fatalf("finding does not print on one line: %q", s)
		}
		if i, _ := terminal.FirstUnsafe(s); i >= 0 {
			t.Fatalf("finding holds a character a terminal acts on: %q", s)
		}
	}
}

func timed(t *testing.T, what string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	// Generous: the fuzzer's own workers share the machine.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%s took %v", what, d)
	}
}

func FuzzParseLock(f *testing.F) {
	seed(f, "testdata/*/"+LockFile)
	f.Add([]byte(`{"entries":[{"kind":"model","name":"a","path":"../x","sha256":"00"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var l *Lock
		var fs []Finding
		timed(t, "ParseLock", func() { l, fs = ParseLock(data, Limits{}) })
		checkFindings(t, fs)
		if l == nil {
			if len(fs) == 0 {
				t.Fatal("no lock and no finding")
			}
			return
		}
		for _, e := range l.Entries {
			// An entry marked usable must have a path that stays inside.
			if e.valid && checkRelPath(e.Path) != "" {
				t.Fatalf("usable entry with path %q", e.Path)
			}
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	seed(f, "testdata/*/"+IndexFile)
	f.Add([]byte("catalog:\n  models: [a, {path: b}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ix *Index
		var fs []Finding
		timed(t, "ParseIndex", func() { ix, fs = ParseIndex(data, Limits{}) })
		checkFindings(t, fs)
		if ix == nil {
			return
		}
		for _, e := range ix.Catalog {
			if e.valid && checkRelPath(e.Path) != "" {
				t.Fatalf("usable catalog entry with path %q", e.Path)
			}
		}
		if ix.SigningKey != "" && checkRelPath(ix.SigningKey) != "" {
			t.Fatalf("signing key path %q", ix.SigningKey)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	seed(f, "testdata/*/models/*/*.yaml", "testdata/ours/agents/*.yaml")
	f.Add([]byte(goodModel))
	f.Add([]byte("kind: algorithm\nname: a\ntype: t\nentrypoint: e\npolicies: {x: [1]}\n"))
	f.Add([]byte("kind: service\nname: s\ncategory: c\nversion: \"1\"\n"))
	kinds := []string{KindModel, KindAlgorithm, KindService, KindAgent}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range kinds {
			var m *Manifest
			var fs []Finding
			timed(t, "ParseManifest", func() { m, fs = ParseManifest("m.yaml", k, data, Limits{}) })
			checkFindings(t, fs)
			if m == nil && len(fs) == 0 {
				t.Fatalf("%s: no manifest and no finding", k)
			}
			if m != nil && m.Artifact != "" && checkRelPath(m.Artifact) != "" {
				t.Fatalf("artifact path %q", m.Artifact)
			}
			if m != nil && m.Model != nil && (m.Model.Resources.VRAMGB < 0 || m.Model.Resources.VRAMGB > maxVRAMGB) {
				t.Fatalf("vram %v accepted", m.Model.Resources.VRAMGB)
			}
		}
	})
}

func FuzzVerifySignature(f *testing.F) {
	pub, priv := testKey(f, "test")
	msg := []byte("lock")
	f.Add(msg, Sign(msg, priv))
	f.Add(msg, readFile(f, filepath.Join(oursDir, SignatureFile)))
	f.Add(msg, []byte("minisign:ABC123"))
	trust := NewKeyring(pub)
	f.Fuzz(func(t *testing.T, message, sig []byte) {
		c := VerifySignature(message, sig, trust)
		if c.Code == "" || c.Detail == "" {
			t.Fatalf("%+v", c)
		}
		if c.Code == CodeOK && !verifyWithLibrary(pub, message, sig) {
			t.Fatalf("accepted a signature minisign does not: %q", sig)
		}
		if i, _ := terminal.FirstUnsafe(c.Detail); i >= 0 {
			t.Fatalf("detail %q", c.Detail)
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	seed(f, "testdata/keys/*.pub")
	f.Add([]byte("untrusted comment: minisign public key\nRWQxQ0FJUmVnaXN0cnk6U0FNUExFQ09OVEVOVA==\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pk, err := ParsePublicKey(data)
		if err != nil {
			return
		}
		// A key that parses prints and parses back to itself.
		text, _ := pk.MarshalText()
		again, err := ParsePublicKey(text)
		if err != nil || !again.Equal(pk) {
			t.Fatalf("%q does not round-trip: %v", data, err)
		}
	})
}

func verifyWithLibrary(pub minisign.PublicKey, message, sig []byte) bool {
	return minisign.Verify(pub, message, sig)
}
