package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	r := &Runtime{logDir: dir, logMax: 10, logKeep: 2}
	p := filepath.Join(dir, "a1.log")
	if rotated, err := r.Rotate("a1"); rotated || err != nil {
		t.Fatalf("no log yet: %v, %v", rotated, err)
	}
	write := func(s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("small")
	if rotated, _ := r.Rotate("a1"); rotated {
		t.Fatal("rotated a log under the size")
	}
	for _, gen := range []string{"first generation", "second generation", "third generation"} {
		write(gen)
		if rotated, err := r.Rotate("a1"); !rotated || err != nil {
			t.Fatalf("Rotate(%q) = %v, %v", gen, rotated, err)
		}
	}
	want := map[string]string{"": "", ".1": "third generation", ".2": "second generation"}
	for suffix, content := range want {
		b, err := os.ReadFile(p + suffix)
		if err != nil || string(b) != content {
			t.Errorf("%s holds %q, %v; want %q", p+suffix, b, err, content)
		}
	}
	if _, err := os.Stat(p + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a third rotated log was kept: %v", err)
	}
	if err := r.PurgeLogs("a1"); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(p + "*"); len(m) != 0 {
		t.Errorf("left after purge: %v", m)
	}
}

func TestRotateRefuses(t *testing.T) {
	dir := t.TempDir()
	r := &Runtime{logDir: dir, logMax: 10, logKeep: 2}
	if _, err := r.Rotate("../etc/passwd"); !errors.Is(err, ErrInvalid) {
		t.Errorf("id with a path: %v", err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "f.log"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Rotate("f"); !errors.Is(err, ErrInvalid) {
		t.Errorf("FIFO as a log: %v", err)
	}
}
