package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "secret")
	changed, err := WriteFile(p, []byte("one"), 0o600)
	if err != nil || !changed {
		t.Fatalf("first write = %v, %v", changed, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", fi.Mode().Perm(), err)
	}
	if changed, err := WriteFile(p, []byte("one"), 0o600); err != nil || changed {
		t.Fatalf("identical rewrite = %v, %v; want no change", changed, err)
	}
	if changed, err := WriteFile(p, []byte("one"), 0o640); err != nil || !changed {
		t.Fatalf("mode change = %v, %v; want a write", changed, err)
	}
	if changed, err := WriteFile(p, []byte("two"), 0o640); err != nil || !changed {
		t.Fatalf("content change = %v, %v", changed, err)
	}
	if got, _ := os.ReadFile(p); string(got) != "two" {
		t.Fatalf("content = %q", got)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the file", len(ents))
	}
}

func TestWriteFileFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be: the rename fails.
	p := filepath.Join(dir, "target")
	os.MkdirAll(filepath.Join(p, "child"), 0o755)
	if _, err := WriteFile(p, []byte("x"), 0o644); err == nil {
		t.Fatal("write over a non-empty directory succeeded")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left %d entries, want only the directory", len(ents))
	}
}

func TestSweep(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".journal.json"+TempMarker+"123"), []byte("{torn"), 0o600)
	os.WriteFile(filepath.Join(dir, "journal.json"), []byte("{}"), 0o600)
	if err := Sweep(dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "journal.json" {
		t.Fatalf("after sweep: %v", ents)
	}
	if err := Sweep(filepath.Join(dir, "absent")); err != nil {
		t.Fatalf("sweep of a missing dir: %v", err)
	}
}
