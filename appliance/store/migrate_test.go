package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

// The real domain schemas, read from their packages' directories: store
// cannot import probe or firstboot (they import store), and the upgrade
// from the one-sequence layout must be proven with their actual SQL.
var (
	probeSchema     = Schema{Domain: "probe", Migrations: os.DirFS("../probe")}
	firstbootSchema = Schema{Domain: "firstboot", Migrations: os.DirFS("../../firstboot")}
)

// legacyDB builds a database the way the one-sequence layout did: the old
// 0001..000v files from testdata/legacy, each with its user_version bump,
// plus a row in every table, so the upgrade can show nothing was lost.
func legacyDB(t *testing.T, v int) string {
	t.Helper()
	files := []string{"0001_init.sql", "0002_probe.sql", "0003_firstboot.sql"}
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, f := range files[:v] {
		body, err := os.ReadFile(filepath.Join("testdata/legacy", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	at := "2026-11-26T02:00:00Z"
	h := auditHash(1, at, "firstboot", "firstboot.step.done", "disk", "{}", zeroHash)
	rows := []string{fmt.Sprintf("INSERT INTO audit VALUES (1, '%s', 'firstboot', 'firstboot.step.done', 'disk', '{}', '%s', '%s')", at, zeroHash, h)}
	if v >= 2 {
		rows = append(rows, "INSERT INTO probe(at, baseline, schema_version, result) VALUES ('"+at+"', 1, '1', '{}')")
	}
	if v >= 3 {
		rows = append(rows, "INSERT INTO firstboot_steps(name, position, status, updated_at) VALUES ('disk', 1, 'done', '"+at+"')")
	}
	for _, q := range rows {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return path
}

// schemaSQL is every object's SQL, the layout a database was migrated to.
func schemaSQL(t *testing.T, s *Store) map[string]string {
	t.Helper()
	rows, err := s.Read().Query("SELECT name, coalesce(sql, '') FROM sqlite_schema")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, q string
		if err := rows.Scan(&n, &q); err != nil {
			t.Fatal(err)
		}
		out[n] = q
	}
	return out
}

func count(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.Read().QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("counting %s: %v", table, err)
	}
	return n
}

// TestUpgradeFromLegacyLayout opens databases made by the one-sequence
// layout (user_version 1..3) with the per-domain schemas: nothing is re-run
// or lost, and the result is the same schema as a new database's.
func TestUpgradeFromLegacyLayout(t *testing.T) {
	ctx := context.Background()
	fresh, _ := openTemp(t, WithSchemas(probeSchema, firstbootSchema))
	want := schemaSQL(t, fresh)
	for v := 1; v <= 3; v++ {
		t.Run(fmt.Sprintf("user_version %d", v), func(t *testing.T) {
			path := legacyDB(t, v)
			s, err := Open(ctx, path, WithSchemas(probeSchema, firstbootSchema))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if got := schemaSQL(t, s); !reflect.DeepEqual(got, want) {
				t.Errorf("schema after upgrade differs from a new database's:\n got %v\nwant %v", got, want)
			}
			dv, err := s.DomainVersions(ctx)
			if err != nil || !reflect.DeepEqual(dv, map[string]int{"audit": 1, "probe": 1, "firstboot": 1}) {
				t.Errorf("DomainVersions = %v, %v", dv, err)
			}
			if lv, _ := s.SchemaVersion(ctx); lv != layoutVersion {
				t.Errorf("user_version = %d, want %d", lv, layoutVersion)
			}
			wantRows := map[string]int{"audit": 1, "probe": 0, "firstboot_steps": 0}
			if v >= 2 {
				wantRows["probe"] = 1
			}
			if v >= 3 {
				wantRows["firstboot_steps"] = 1
			}
			for table, n := range wantRows {
				if got := count(t, s, table); got != n {
					t.Errorf("%s has %d rows, want %d", table, got, n)
				}
			}
			if n, err := s.VerifyAudit(ctx); err != nil || n != 1 {
				t.Errorf("VerifyAudit = %d, %v", n, err)
			}
		})
	}
}

func TestUpgradeRefusesMissingLegacyTable(t *testing.T) {
	path := legacyDB(t, 3)
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("DROP TABLE firstboot_steps"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), path, WithSchemas(probeSchema, firstbootSchema))
	if err == nil || !strings.Contains(err.Error(), "table firstboot_steps is missing") {
		t.Fatalf("Open = %v, want a refusal naming firstboot_steps", err)
	}
}

// TestOpenWithoutDomainLeavesItAlone: a process that does not use a domain
// does not pass its schema; a later one that does still finds its version.
func TestOpenWithoutDomainLeavesItAlone(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t, WithSchemas(probeSchema))
	s.Close()
	for _, opts := range [][]Option{nil, {WithSchemas(firstbootSchema, probeSchema)}} {
		s, err := Open(ctx, path, opts...)
		if err != nil {
			t.Fatal(err)
		}
		dv, err := s.DomainVersions(ctx)
		s.Close()
		if err != nil || dv["probe"] != 1 || dv["audit"] != 1 {
			t.Fatalf("DomainVersions = %v, %v", dv, err)
		}
		if len(opts) > 0 && dv["firstboot"] != 1 {
			t.Fatalf("DomainVersions = %v, want firstboot added", dv)
		}
	}
}

func TestSchemasRefused(t *testing.T) {
	one := fstest.MapFS{"migrations/0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER) STRICT;")}}
	tests := []struct {
		name    string
		schemas []Schema
		want    string
	}{
		{"bad name", []Schema{{Domain: "Probe!", Migrations: one}}, `domain "Probe!": must match`},
		{"empty name", []Schema{{Domain: "", Migrations: one}}, `domain ""`},
		{"store's own", []Schema{{Domain: "audit", Migrations: one}}, `"audit" given twice`},
		{"twice", []Schema{{Domain: "a", Migrations: one}, {Domain: "a", Migrations: one}}, `"a" given twice`},
		{"no fs", []Schema{{Domain: "a"}}, "no migrations"},
		{"no files", []Schema{{Domain: "a", Migrations: fstest.MapFS{}}}, "no migrations/NNNN_*.sql"},
		{"gap", []Schema{{Domain: "a", Migrations: fstest.MapFS{"migrations/0002_b.sql": {Data: []byte("SELECT 1;")}}}}, "expected number 0001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			_, err := Open(context.Background(), path, WithSchemas(tt.schemas...))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v, want an error containing %q", err, tt.want)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused schema left %s behind", path)
			}
		})
	}
}

// TestFailedMigrationIsWhole: a migration that fails half-way leaves
// neither its tables nor its version bump.
func TestFailedMigrationIsWhole(t *testing.T) {
	ctx := context.Background()
	good := fstest.MapFS{"migrations/0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER) STRICT;")}}
	bad := fstest.MapFS{
		"migrations/0001_a.sql": good["migrations/0001_a.sql"],
		"migrations/0002_b.sql": {Data: []byte("CREATE TABLE b (x INTEGER) STRICT; INSERT INTO nosuch VALUES (1);")},
	}
	s, path := openTemp(t, WithSchemas(Schema{Domain: "d", Migrations: good}))
	s.Close()
	if _, err := Open(ctx, path, WithSchemas(Schema{Domain: "d", Migrations: bad})); err == nil || !strings.Contains(err.Error(), "d/0002_b.sql") {
		t.Fatalf("Open with a failing migration = %v, want an error naming d/0002_b.sql", err)
	}
	s = reopen(t, path)
	if dv, _ := s.DomainVersions(ctx); dv["d"] != 1 {
		t.Errorf("domain d at %d after the failed step, want 1", dv["d"])
	}
	var n int
	if err := s.Read().QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 'b'").Scan(&n); err != nil || n != 0 {
		t.Errorf("table b exists after the failed step (%d, %v)", n, err)
	}
}

// existingDB is the path of a new database, created and closed: a racing
// Open that created it would remove it on failure, which is a different
// story than the races the concurrent tests are after.
func existingDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return path
}

// TestConcurrentOpenAcrossProcesses opens and closes one database from
// several processes at once, as firstboot and omertad may: a close removes
// -wal and -shm while another process's integrity check is about to open
// them, and that Open must still succeed.
func TestConcurrentOpenAcrossProcesses(t *testing.T) {
	if path := os.Getenv("OMERTA_STORE_TEST_OPENER"); path != "" {
		for i := 0; i < 40; i++ {
			s, err := Open(context.Background(), path, WithSchemas(probeSchema, firstbootSchema))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
			s.Close()
		}
		os.Exit(0)
	}
	path := existingDB(t)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentOpenAcrossProcesses$")
			cmd.Env = append(os.Environ(), "OMERTA_STORE_TEST_OPENER="+path)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("an opening process: %v: %s", err, out)
			}
		}()
	}
	wg.Wait()
}

// TestConcurrentOpenMigrates opens a new file from several goroutines at
// once, as firstboot and omertad may: each step is applied once.
func TestConcurrentOpenMigrates(t *testing.T) {
	path := existingDB(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), path, WithSchemas(probeSchema, firstbootSchema))
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
}
