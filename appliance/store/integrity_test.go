package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileHashes returns the SHA-256 of state.db, -wal and -shm ("absent" for a
// missing one), the evidence a refused start must leave as found.
func fileHashes(t *testing.T, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		b, err := os.ReadFile(path + suffix)
		switch {
		case errors.Is(err, os.ErrNotExist):
			out[suffix] = "absent"
		case err != nil:
			t.Fatal(err)
		default:
			sum := sha256.Sum256(b)
			out[suffix] = hex.EncodeToString(sum[:])
		}
	}
	return out
}

// liveWALCopy builds a database whose newest commits are still in its WAL,
// as a SIGKILLed omertad leaves it, and copies state.db, -wal and -shm to a
// new directory while the writer is still open (so nothing checkpoints).
func liveWALCopy(t *testing.T, keepSHM bool) string {
	t.Helper()
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 200; i++ {
		if err := s.Audit(ctx, AuditEntry{Actor: "t", Action: "fill", Detail: map[string]string{"pad": strings.Repeat("x", 500)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.Exec("PRAGMA wal_autocheckpoint = 0"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := s.Audit(ctx, AuditEntry{Actor: "t", Action: "in.wal"}); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "state.db")
	suffixes := []string{"", "-wal"}
	if keepSHM {
		suffixes = append(suffixes, "-shm")
	}
	for _, suffix := range suffixes {
		b, err := os.ReadFile(src + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// damageMiddle overwrites 4 KiB in the middle of state.db: a page that the
// WAL does not supersede, so the damage is visible through the WAL.
func damageMiddle(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 1024)), fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptWithLiveWALLeftAsFound is the regression test for a refused
// start that checkpointed the WAL into the corrupt file and deleted -wal and
// -shm: the evidence must stay byte for byte as it was found.
func TestCorruptWithLiveWALLeftAsFound(t *testing.T) {
	for _, tt := range []struct {
		name    string
		keepSHM bool
	}{{"wal and shm", true}, {"wal without shm", false}} {
		t.Run(tt.name, func(t *testing.T) {
			path := liveWALCopy(t, tt.keepSHM)
			damageMiddle(t, path)
			before := fileHashes(t, path)
			_, err := Open(context.Background(), path)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			after := fileHashes(t, path)
			for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
				if before[suffix] != after[suffix] {
					t.Errorf("state.db%s changed by the refused open: %s -> %s", suffix, before[suffix], after[suffix])
				}
			}
		})
	}
}

// TestHealthyLiveWALOpens shows that the read-only check reads the WAL: a
// database whose last commits are only in the WAL opens with all of them.
func TestHealthyLiveWALOpens(t *testing.T) {
	for _, keepSHM := range []bool{true, false} {
		path := liveWALCopy(t, keepSHM)
		s, err := Open(context.Background(), path)
		if err != nil {
			t.Fatalf("keepSHM=%v: Open: %v", keepSHM, err)
		}
		n, err := s.VerifyAudit(context.Background())
		s.Close()
		if err != nil || n != 203 {
			t.Fatalf("keepSHM=%v: VerifyAudit = %d, %v; want 203 records", keepSHM, n, err)
		}
	}
}
