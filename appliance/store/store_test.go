package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

func openTemp(t *testing.T, opts ...Option) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func latestAudit(t *testing.T) int {
	t.Helper()
	ms, err := loadMigrations(auditMigrations)
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func TestOpenMigratesFromEmpty(t *testing.T) {
	s, _ := openTemp(t)
	v, err := s.SchemaVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v != layoutVersion {
		t.Errorf("user_version = %d, want %d", v, layoutVersion)
	}
	dv, err := s.DomainVersions(context.Background())
	if err != nil || len(dv) != 1 || dv["audit"] != latestAudit(t) {
		t.Errorf("DomainVersions = %v, %v; want only audit at %d", dv, err, latestAudit(t))
	}
	var mode string
	if err := s.Read().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := s.writer.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
	}
}

func TestReopenIsNoOp(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if err := s.Audit(ctx, AuditEntry{Actor: "test", Action: "test.one"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for i := 0; i < 2; i++ {
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		v, _ := s2.SchemaVersion(ctx)
		recs, err := s2.AuditLog(ctx, 0, 10)
		s2.Close()
		if err != nil || len(recs) != 1 || v != layoutVersion {
			t.Fatalf("reopen %d: version %d, %d records, %v", i, v, len(recs), err)
		}
	}
}

func TestLoadMigrationsRejectsGaps(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, "expected number 0002"},
		{"repeat", []string{"0001_a.sql", "0001_b.sql"}, "expected number 0002"},
		{"badname", []string{"first.sql"}, "name must be NNNN_description.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys["migrations/"+f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
			}
			_, err := loadMigrations(fsys)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, sql, want string
	}{
		{"layout", fmt.Sprintf("PRAGMA user_version = %d", layoutVersion+1), "layout version 5"},
		{"domain", "UPDATE schema_version SET version = 7 WHERE domain = 'audit'", "domain audit is at schema version 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := openTemp(t)
			if _, err := s.writer.Exec(tt.sql); err != nil {
				t.Fatal(err)
			}
			s.Close()
			_, err := Open(ctx, path)
			if !errors.Is(err, ErrTooNew) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v, want ErrTooNew saying %q", err, tt.want)
			}
		})
	}
}

func TestOpenCorrupt(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"not a database", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("this is not sqlite\n", 400)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"damaged pages", func(t *testing.T, path string) {
			// Fill a table so that it spans many pages, then overwrite
			// the middle of the file: the header stays valid, the b-tree
			// does not.
			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 200; i++ {
				if err := s.Audit(ctx, AuditEntry{Actor: "t", Action: "fill", Detail: map[string]string{"pad": strings.Repeat("x", 500)}}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				t.Fatal(err)
			}
			s.Close()
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 1024)), fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			tt.damage(t, path)
			before := fileHashes(t, path)
			_, err := Open(ctx, path)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			// A corrupt file is evidence: Open must not delete, rewrite
			// or add to it (no -wal or -shm left behind either).
			after := fileHashes(t, path)
			for suffix, h := range before {
				if after[suffix] != h {
					t.Errorf("state.db%s changed by the refused open: %s -> %s", suffix, h, after[suffix])
				}
			}
		})
	}
}

func TestOpenMissingDirLeavesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := Open(context.Background(), filepath.Join(dir, "state.db"))
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open = %v, want an error naming %s", err, dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open created %s", dir)
	}
}

func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	// A second Store on the same file stands in for a second process
	// (firstboot and omertad, or the CLI): both must wait, not fail.
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		st := s
		if w%2 == 1 {
			st = s2
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := st.Audit(ctx, AuditEntry{Actor: fmt.Sprint("w", w), Action: "test.write", Target: fmt.Sprint(i)}); err != nil {
					errs <- err
				}
				if _, err := st.AuditLog(ctx, 0, 5); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write: %v", err)
	}
	n, err := s.VerifyAudit(ctx)
	if err != nil || n != workers*each {
		t.Fatalf("VerifyAudit = %d, %v; want %d, nil", n, err, workers*each)
	}
	// Two Stores race their anchor writes: the anchor may lag, never
	// lead, and never triggers a resume record (n above would count it).
	st, err := s.VerifyAuditChain(ctx)
	if err != nil || st.State != ChainIntact || st.AnchorSeq > st.HeadSeq || st.AnchorSeq == 0 {
		t.Fatalf("VerifyAuditChain = %+v, %v", st, err)
	}
}

func TestReadPoolIsReadOnly(t *testing.T) {
	s, _ := openTemp(t)
	if _, err := s.Read().Exec("INSERT INTO audit(seq, at, actor, action, prev_hash, hash) VALUES (1,'','a','b','','')"); err == nil {
		t.Fatal("write through the read pool succeeded")
	}
}

func TestAuditChain(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	s, _ := openTemp(t, WithClock(func() time.Time { clock = clock.Add(time.Second); return clock }))
	for i := 0; i < 5; i++ {
		if err := s.Audit(ctx, AuditEntry{Actor: "test", Action: "test.step", Target: fmt.Sprint(i), Detail: map[string]int{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.VerifyAudit(ctx); err != nil || n != 5 {
		t.Fatalf("VerifyAudit = %d, %v", n, err)
	}
	// The triggers refuse edits through SQL.
	if _, err := s.writer.Exec("UPDATE audit SET target='x' WHERE seq=3"); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("UPDATE = %v, want append-only refusal", err)
	}
	if _, err := s.writer.Exec("DELETE FROM audit WHERE seq=3"); err == nil {
		t.Fatal("DELETE succeeded")
	}
	if err := s.Audit(ctx, AuditEntry{Action: "x"}); err == nil {
		t.Fatal("entry without actor accepted")
	}

	var at3, prev3 string
	if err := s.Read().QueryRow("SELECT at, prev_hash FROM audit WHERE seq=3").Scan(&at3, &prev3); err != nil {
		t.Fatal(err)
	}
	rehashed := auditHash(3, at3, "test", "test.step", "other", `{"i":2}`, prev3)
	tamper := []struct {
		name string
		sql  string
		want string
	}{
		{"edited target", "UPDATE audit SET target='other' WHERE seq=3", "record 3: content does not match"},
		{"edited detail", `UPDATE audit SET detail='{"i":9}' WHERE seq=2`, "record 2: content does not match"},
		{"deleted row", "DELETE FROM audit WHERE seq=4", "record 5 follows record 3"},
		{"replaced hash", "UPDATE audit SET hash='" + strings.Repeat("a", 64) + "' WHERE seq=1", "record 1: content does not match"},
		// An attacker who edits a row and recomputes its hash breaks the
		// link to the next row instead.
		{"edited and rehashed", "UPDATE audit SET target='other', hash='" + rehashed + "' WHERE seq=3", "record 4: prev_hash"},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			// Tamper with a copy, around the triggers, as an attacker with
			// the file would.
			cp := filepath.Join(t.TempDir(), "copy.db")
			if _, err := s.writer.Exec("VACUUM INTO ?", cp); err != nil {
				t.Fatal(err)
			}
			raw, err := sql.Open("sqlite3", cp)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete", tt.sql} {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			raw.Close()
			c, err := Open(ctx, cp)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.VerifyAudit(ctx)
			if !errors.Is(err, ErrAuditChain) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("VerifyAudit = %v, want ErrAuditChain containing %q", err, tt.want)
			}
		})
	}
}

// TestKillDuringWrites kills a writer process with SIGKILL while it commits
// and checks that the database opens cleanly with an intact chain.
func TestKillDuringWrites(t *testing.T) {
	if path := os.Getenv("OMERTA_STORE_TEST_WRITER"); path != "" {
		s, err := Open(context.Background(), path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Println("writing")
		for i := 0; ; i++ {
			s.Audit(context.Background(), AuditEntry{Actor: "child", Action: "test.loop", Detail: map[string]int{"i": i}})
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWrites$")
		cmd.Env = append(os.Environ(), "OMERTA_STORE_TEST_WRITER="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if _, err := out.Read(buf); err != nil {
			t.Fatalf("child never started writing: %v", err)
		}
		time.Sleep(time.Duration(50+round*70) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		n, err := s.VerifyAudit(ctx)
		st, cerr := s.VerifyAuditChain(ctx)
		s.Close()
		if err != nil {
			t.Fatalf("round %d: chain after SIGKILL: %v", round, err)
		}
		if n == 0 {
			t.Fatalf("round %d: child committed nothing", round)
		}
		// SIGKILL between a commit and its anchor write leaves the
		// anchor one behind, which is intact, not truncated.
		if cerr != nil || st.State != ChainIntact || st.HeadSeq-st.AnchorSeq > 1 {
			t.Fatalf("round %d: VerifyAuditChain after SIGKILL = %+v, %v", round, st, cerr)
		}
	}
}
