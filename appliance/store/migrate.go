package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Schema is one domain's tables, registered with Open through WithSchemas.
// Migrations holds migrations/NNNN_description.sql, numbered 1..N without
// gaps; each is applied once, in its own transaction together with its
// version bump in schema_version, so a crash leaves a domain at a whole step.
type Schema struct {
	Domain     string // [a-z][a-z0-9_]*, at most 32 bytes; "audit" is the store's own
	Migrations fs.FS
}

//go:embed migrations/*.sql
var auditMigrations embed.FS

// auditSchema is the store's own domain: the hash-chained audit log.
var auditSchema = Schema{Domain: "audit", Migrations: auditMigrations}

// layoutVersion is PRAGMA user_version of a database whose schema versions
// are tracked per domain in the schema_version table. Versions 1..3 are the
// layout before it: one global sequence of migrations (see legacyDomains).
// Keeping user_version above 3 makes a binary from before per-domain
// tracking, which knows up to 3, refuse this layout as too new instead of
// using tables it does not know.
const layoutVersion = 4

// legacyDomains is the one-sequence layout: user_version v meant that the
// first v of these domains were at version 1. Their 0001 migrations are the
// old 0001..0003 files, statement for statement.
var legacyDomains = []struct{ domain, table string }{
	{"audit", "audit"},
	{"probe", "probe"},
	{"firstboot", "firstboot_steps"},
}

var domainName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

type migration struct {
	version int
	name    string
	sql     string
}

type domainPlan struct {
	domain     string
	migrations []migration
}

// planSchemas checks the domains and loads their migrations before the
// database is touched, so that a build mistake fails without side effects.
func planSchemas(extra []Schema) ([]domainPlan, error) {
	seen := map[string]bool{}
	var plan []domainPlan
	for _, sc := range append([]Schema{auditSchema}, extra...) {
		if !domainName.MatchString(sc.Domain) {
			return nil, fmt.Errorf("schema domain %q: must match %s", sc.Domain, domainName)
		}
		if seen[sc.Domain] {
			return nil, fmt.Errorf("schema domain %q given twice", sc.Domain)
		}
		seen[sc.Domain] = true
		if sc.Migrations == nil {
			return nil, fmt.Errorf("schema domain %q: no migrations", sc.Domain)
		}
		ms, err := loadMigrations(sc.Migrations)
		if err != nil {
			return nil, fmt.Errorf("loading migrations of domain %q: %w", sc.Domain, err)
		}
		if len(ms) == 0 {
			return nil, fmt.Errorf("schema domain %q: no migrations/NNNN_*.sql files", sc.Domain)
		}
		plan = append(plan, domainPlan{domain: sc.Domain, migrations: ms})
	}
	return plan, nil
}

// loadMigrations reads migrations/NNNN_name.sql, ordered, and insists that
// they are numbered 1..N without gaps or repeats: a gap would mean a build
// that silently skips a schema change.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", base)
		}
		body, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected number %04d (migrations must be numbered 1..N without gaps)", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion returns PRAGMA user_version, the layout version: 4 since
// schema versions are tracked per domain (see DomainVersions).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.writer.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// DomainVersions returns each domain's schema version as schema_version
// records it, for every domain any binary registered, not only this one's.
func (s *Store) DomainVersions(ctx context.Context) (map[string]int, error) {
	rows, err := s.writer.QueryContext(ctx, "SELECT domain, version FROM schema_version")
	if err != nil {
		return nil, fmt.Errorf("reading schema versions of %s: %w", s.path, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var d string
		var v int
		if err := rows.Scan(&d, &v); err != nil {
			return nil, fmt.Errorf("reading schema versions of %s: %w", s.path, err)
		}
		out[d] = v
	}
	return out, rows.Err()
}

// migrate brings the layout to per-domain tracking, then each domain to its
// newest version, one migration per transaction. The version is read inside
// the transaction that applies the next step, so two processes opening the
// same file at once never apply a step twice.
func (s *Store) migrate(ctx context.Context, plan []domainPlan) error {
	if err := s.Write(ctx, func(tx *sql.Tx) error { return s.upgradeLayout(ctx, tx) }); err != nil {
		return err
	}
	for _, d := range plan {
		for {
			done, err := s.migrateStep(ctx, d)
			if err != nil {
				return err
			}
			if done {
				break
			}
		}
	}
	return nil
}

const createSchemaVersion = `CREATE TABLE schema_version (
    domain  TEXT    PRIMARY KEY,   -- store.Schema.Domain
    version INTEGER NOT NULL CHECK (version >= 1)
) STRICT`

// upgradeLayout creates schema_version in a new database, or fills it from
// the one-sequence layout's user_version without re-running anything.
func (s *Store) upgradeLayout(ctx context.Context, tx *sql.Tx) error {
	var cur int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
		return fmt.Errorf("reading schema version of %s: %w", s.path, classify(err))
	}
	switch {
	case cur == layoutVersion:
		return nil
	case cur > layoutVersion:
		return fmt.Errorf("opening %s: %w: layout version %d, this binary knows up to %d", s.path, ErrTooNew, cur, layoutVersion)
	case cur > len(legacyDomains):
		return fmt.Errorf("opening %s: unknown layout version %d", s.path, cur)
	}
	if _, err := tx.ExecContext(ctx, createSchemaVersion); err != nil {
		return fmt.Errorf("creating schema_version in %s: %w", s.path, err)
	}
	for _, l := range legacyDomains[:cur] {
		if err := requireTable(ctx, tx, l.table); err != nil {
			return fmt.Errorf("upgrading %s from layout version %d: %w", s.path, cur, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_version(domain, version) VALUES (?, 1)", l.domain); err != nil {
			return fmt.Errorf("upgrading %s from layout version %d: %w", s.path, cur, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", layoutVersion)); err != nil {
		return fmt.Errorf("upgrading %s to layout version %d: %w", s.path, layoutVersion, err)
	}
	return nil
}

// requireTable refuses to record a legacy domain as migrated when its
// table is not there: the version number would then hide a missing table.
func requireTable(ctx context.Context, tx *sql.Tx, table string) error {
	var n int
	err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", table).Scan(&n)
	if err != nil {
		return fmt.Errorf("looking for table %s: %w", table, err)
	}
	if n != 1 {
		return fmt.Errorf("table %s is missing", table)
	}
	return nil
}

// migrateStep applies d's next pending migration, or reports done.
func (s *Store) migrateStep(ctx context.Context, d domainPlan) (done bool, err error) {
	err = s.Write(ctx, func(tx *sql.Tx) error {
		var cur int
		err := tx.QueryRowContext(ctx, "SELECT version FROM schema_version WHERE domain = ?", d.domain).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("reading schema version of domain %s in %s: %w", d.domain, s.path, err)
		}
		switch {
		case cur > len(d.migrations):
			return fmt.Errorf("opening %s: %w: domain %s is at schema version %d, this binary knows up to %d",
				s.path, ErrTooNew, d.domain, cur, len(d.migrations))
		case cur == len(d.migrations):
			done = true
			return nil
		}
		m := d.migrations[cur]
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("applying migration %s/%s to %s: %w", d.domain, m.name, s.path, err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO schema_version(domain, version) VALUES (?, ?)
ON CONFLICT(domain) DO UPDATE SET version = excluded.version`, d.domain, m.version)
		if err != nil {
			return fmt.Errorf("recording migration %s/%s in %s: %w", d.domain, m.name, s.path, err)
		}
		return nil
	})
	return done, err
}
