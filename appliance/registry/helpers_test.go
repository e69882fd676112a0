package registry

import (
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"
)

var update = flag.Bool("update", false, "rewrite the generated fixtures and golden files in testdata/")

const (
	upstreamDir = "testdata/upstream"
	oursDir     = "testdata/ours"
	keysDir     = "testdata/keys"
)

// testKey reads testdata/keys/NAME.pub and NAME.key (unencrypted minisign
// keys made for these tests only).
func testKey(t testing.TB, name string) (minisign.PublicKey, minisign.PrivateKey) {
	t.Helper()
	pubData, err := os.ReadFile(filepath.Join(keysDir, name+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubData)
	if err != nil {
		t.Fatal(err)
	}
	secData, err := os.ReadFile(filepath.Join(keysDir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(secData, "")
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// copyTree copies src into a new temporary directory, so a test can
// tamper with it.
func copyTree(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// ours returns a writable copy of the signed fixture registry and the
// keyring that trusts its key.
func ours(t testing.TB) (string, *Keyring) {
	t.Helper()
	pub, _ := testKey(t, "test")
	return copyTree(t, oursDir), NewKeyring(pub)
}

func verify(t testing.TB, dir string, trust *Keyring) *Result {
	t.Helper()
	r, err := Verify(context.Background(), dir, trust)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return r
}

// find returns the findings about subject (and field, when given) with
// code c.
func find(r *Result, subject, field string, c Code) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Subject == subject && (field == "" || f.Field == field) && f.Code == c {
			out = append(out, f)
		}
	}
	return out
}

func mustFind(t *testing.T, r *Result, subject, field string, c Code) Finding {
	t.Helper()
	fs := find(r, subject, field, c)
	if len(fs) == 0 {
		t.Fatalf("no %s finding for %s %s; findings:\n%s", c, subject, field, dump(r))
	}
	return fs[0]
}

func dump(r *Result) string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString("  " + string(f.Severity) + " " + f.String() + "\n")
	}
	return b.String()
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
