package registry

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadTrust(t *testing.T) {
	dir := t.TempDir()
	testPub, _ := testKey(t, "test")
	otherPub, _ := testKey(t, "other")
	writeFile(t, filepath.Join(dir, "test.pub"), readFile(t, filepath.Join(keysDir, "test.pub")))
	// The key line alone is a key too.
	line := strings.Split(strings.TrimSpace(string(readFile(t, filepath.Join(keysDir, "other.pub")))), "\n")[1]
	writeFile(t, filepath.Join(dir, "other.pub"), []byte(line+"\n"))
	writeFile(t, filepath.Join(dir, "same-as-test.pub"), readFile(t, filepath.Join(keysDir, "test.pub")))
	// upstream's security/publickey.txt is this kind of placeholder.
	writeFile(t, filepath.Join(dir, "placeholder.pub"), []byte("untrusted comment: minisign public key\nRWQxQ0FJUmVnaXN0cnk6U0FNUExFQ09OVEVOVA==\n"))
	writeFile(t, filepath.Join(dir, "README"), []byte("not a key, not read\n"))
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "outside.pub")); err != nil {
		t.Fatal(err)
	}
	k, err := LoadTrust(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 2 {
		t.Fatalf("%d keys, want 2: %v", k.Len(), k.IDs())
	}
	// Files are read in name order: the first with a key ID wins.
	if tk, ok := k.Lookup(testPub.ID()); !ok || tk.File != "same-as-test.pub" {
		t.Fatalf("test key: %+v %v", tk, ok)
	}
	if _, ok := k.Lookup(otherPub.ID()); !ok {
		t.Fatal("the bare key line was not read")
	}
	problems := map[string]string{}
	for _, f := range k.Problems {
		problems[f.Field] = string(f.Code) + " " + f.Detail
	}
	want := map[string]string{
		"placeholder.pub": "invalid-key not a minisign public key",
		"outside.pub":     "invalid-key key file is a symlink that leads outside the trust directory",
		"test.pub":        "invalid-key key ID " + KeyID(testPub.ID()) + " is also in \"same-as-test.pub\"",
	}
	if len(problems) != len(want) {
		t.Errorf("problems %v", problems)
	}
	for file, w := range want {
		if got := problems[file]; !strings.HasPrefix(got, w) {
			t.Errorf("%s: %q, want %q...", file, got, w)
		}
	}
}

func TestLoadTrustMissing(t *testing.T) {
	k, err := LoadTrust(filepath.Join(t.TempDir(), "nope"))
	if err != nil || k.Len() != 0 || len(k.Problems) != 1 || k.Problems[0].Code != CodeMissingPublicKey {
		t.Fatalf("%v %+v", err, k)
	}
	// A registry checked against it names the missing key; the trust
	// problem is a warning beside it.
	dir, _ := ours(t)
	r := verify(t, dir, k)
	f := mustFind(t, r, SignatureFile, "", CodeMissingPublicKey)
	if !f.Failed() || !strings.Contains(f.Detail, "0242DB770DE91C78") {
		t.Fatalf("%+v", f)
	}
	if tf := mustFind(t, r, TrustSubject, "", CodeMissingPublicKey); tf.Severity != SeverityWarning {
		t.Fatalf("%+v", tf)
	}
}

func TestVerifyCancelled(t *testing.T) {
	dir, trust := ours(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, dir, trust); err == nil {
		t.Fatal("a cancelled Verify returned no error")
	}
}

func TestVerifyMissingDir(t *testing.T) {
	if _, err := Verify(context.Background(), filepath.Join(t.TempDir(), "nope"), nil); err == nil {
		t.Fatal("no error for a missing directory")
	}
	// An empty directory is a registry with nothing in it: both files missing.
	r := verify(t, t.TempDir(), nil)
	mustFind(t, r, IndexFile, "", CodeMissingFile)
	mustFind(t, r, LockFile, "", CodeMissingFile)
}

// TestBuildLock: BuildLock rebuilds the fixture's lock exactly, and
// refuses to build one for a registry with a broken manifest.
func TestBuildLock(t *testing.T) {
	dir, _ := ours(t)
	lock, fs, err := BuildLock(context.Background(), dir, time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || lock == nil {
		t.Fatalf("%v %v", err, fs)
	}
	data, _ := MarshalLock(lock)
	if want := readFile(t, filepath.Join(dir, LockFile)); string(data) != string(want) {
		t.Fatalf("rebuilt lock differs:\n%s\nwant\n%s", data, want)
	}
	edit(t, dir, "models/custom/local-echo.yaml", "provider: custom\n", "")
	lock, fs, err = BuildLock(context.Background(), dir, time.Now())
	if err != nil || lock != nil || len(fs) == 0 || fs[0].Field != "provider" {
		t.Fatalf("broken manifest: lock %v, findings %v, err %v", lock, fs, err)
	}
	up, fs, _ := BuildLock(context.Background(), upstreamDir, time.Now())
	if up != nil || !failed(fs) {
		t.Fatal("BuildLock made a lock for the upstream registry, placeholders and all")
	}
}
