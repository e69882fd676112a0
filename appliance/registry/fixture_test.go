package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"
)

// The fixed inputs of the generated fixture, so that regenerating it gives
// the same bytes (Ed25519 signatures are deterministic).
var (
	fixtureTime      = time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	fixtureImageHash = "sha256:4f5e8a1c0f1b1a3c7d2e9b6a5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d"
)

const (
	lockComment     = "timestamp:1764547200\tfile:registry.lock.json\thashed"
	artifactComment = "timestamp:1764547200\tfile:local-echo.bin\thashed"
)

// localEchoTemplate is the fixture's model with its artifact in the
// registry: integrity is filled in by the generator.
const localEchoTemplate = `# A model whose weights ship in the registry (files/local-echo.bin): its
# integrity is checked against them, digest and minisign signature.
kind: model
name: local-echo
provider: custom
version: "1.0.0"
release_date: "2024-01-15"
modality:
  - text
license: community
access: local
description: Echoes prompts; the appliance's own test model.
download:
  url: files/local-echo.bin
  method: local
integrity:
  sha256: "@SHA256@"
  signature: |
@SIGNATURE@
resources:
  vram_gb: 1
  context_tokens: 8192
configurable: false
compat:
  agent_api: ">=1.0"
`

// TestOursFixture regenerates testdata/ours into a temporary directory
// and requires it to be byte for byte what is checked in (with -update, it
// writes it there instead, making test keys first if there are none).
func TestOursFixture(t *testing.T) {
	if *update {
		ensureKey(t, "test")
		ensureKey(t, "other")
	}
	out := oursDir
	if !*update {
		out = copyTree(t, oursDir)
	}
	generateOurs(t, out)
	if *update {
		return
	}
	for _, rel := range []string{"images/web.oci.tar", "models/custom/local-echo.yaml", "security/minisign.pub", LockFile, SignatureFile} {
		if got, want := readFile(t, filepath.Join(out, rel)), readFile(t, filepath.Join(oursDir, rel)); !bytes.Equal(got, want) {
			t.Errorf("%s is not what the generator makes; run go test -run TestOursFixture -update", rel)
		}
	}
}

func ensureKey(t *testing.T, name string) {
	if _, err := os.Stat(filepath.Join(keysDir, name+".key")); err == nil {
		return
	}
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubText, _ := pub.MarshalText()
	privText, _ := priv.MarshalText()
	writeFile(t, filepath.Join(keysDir, name+".pub"), append(pubText, '\n'))
	writeFile(t, filepath.Join(keysDir, name+".key"), append(privText, '\n'))
}

func generateOurs(t *testing.T, dir string) {
	t.Helper()
	_, priv := testKey(t, "test")
	writeFile(t, filepath.Join(dir, "images/web.oci.tar"), fakeArchive(t))
	writeFile(t, filepath.Join(dir, "security/minisign.pub"), readFile(t, filepath.Join(keysDir, "test.pub")))
	weights := readFile(t, filepath.Join(dir, "files/local-echo.bin"))
	sig, err := SignWithComment(weights, priv, artifactComment)
	if err != nil {
		t.Fatal(err)
	}
	var indented strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(string(sig), "\n"), "\n") {
		indented.WriteString("    " + line + "\n")
	}
	model := strings.Replace(localEchoTemplate, "@SHA256@", sha256Hex(weights), 1)
	model = strings.Replace(model, "@SIGNATURE@\n", indented.String(), 1)
	writeFile(t, filepath.Join(dir, "models/custom/local-echo.yaml"), []byte(model))

	lock, fs, err := BuildLock(context.Background(), dir, fixtureTime)
	if err != nil || lock == nil {
		t.Fatalf("BuildLock: %v\n%v", err, fs)
	}
	data, err := MarshalLock(lock)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, LockFile), data)
	lockSig, err := SignWithComment(data, priv, lockComment)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, SignatureFile), lockSig)

}

// fakeArchive is a small, deterministic tar in the shape of an OCI layout
// whose index names one manifest, fixtureImageHash (its blobs are left
// out: the registry hashes archives and reads the index for the digest,
// containerd's import checks the rest).
func fakeArchive(t *testing.T) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range []struct{ name, body string }{
		{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`},
		{"index.json", `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":405,"digest":"` + fixtureImageHash + `"}]}`},
	} {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: fixtureTime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestOursVerifies: the fixture in this appliance's layout verifies, and
// every file, the signature and the artifact checks are reported as right.
func TestOursVerifies(t *testing.T) {
	dir, trust := ours(t)
	r := verify(t, dir, trust)
	if !r.OK() {
		t.Fatalf("fixture does not verify:\n%s", dump(r))
	}
	if r.Signature.Code != CodeOK || r.LockEntries != 5 || r.CatalogEntries != 5 {
		t.Fatalf("signature %v, %d lock entries, %d catalog entries", r.Signature, r.LockEntries, r.CatalogEntries)
	}
	for _, p := range []string{"agents/web.yaml", "files/local-echo.bin", "images/web.oci.tar", "models/custom/local-echo.yaml", "models/openai/gpt-4o-mini.yaml"} {
		f := mustFind(t, r, p, "", CodeOK)
		if f.Want == "" || f.Want != f.Got {
			t.Errorf("%s: ok finding without its digest: %+v", p, f)
		}
	}
	mustFind(t, r, "models/custom/local-echo.yaml", "integrity.sha256", CodeOK)
	mustFind(t, r, "models/custom/local-echo.yaml", "integrity.signature", CodeOK)
	if r.Counts.Warnings != 0 {
		t.Errorf("warnings on a clean registry:\n%s", dump(r))
	}
}

// TestSymlinkInside: a symlink that stays inside the registry is followed.
func TestSymlinkInside(t *testing.T) {
	dir, trust := ours(t)
	p := filepath.Join(dir, "files/local-echo.bin")
	if err := os.Rename(p, filepath.Join(dir, "files/real.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.bin", p); err != nil {
		t.Fatal(err)
	}
	if r := verify(t, dir, trust); !r.OK() {
		t.Fatalf("symlink inside:\n%s", dump(r))
	}
}
