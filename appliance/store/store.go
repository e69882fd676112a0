// Package store owns omertad's SQLite database: opening it safely, migrating
// it, and the hash-chained audit log.
//
// There is one writer connection (SQLite allows one writer at a time; a pool
// of writers only trades "database is locked" for waiting) and a pool of
// read-only connections. WAL lets readers proceed while the writer commits.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// ErrCorrupt is returned (wrapped) by Open when the file is not a healthy
// SQLite database.
var ErrCorrupt = errors.New("database is corrupt")

// ErrTooNew is returned (wrapped) by Open when the database was migrated by a
// newer binary than this one.
var ErrTooNew = errors.New("database schema is newer than this binary")

// Store is an open state database.
type Store struct {
	path   string
	writer *sql.DB
	reader *sql.DB
	now    func() time.Time
}

// Option configures Open.
type Option func(*options)

type options struct {
	readers int
	now     func() time.Time
}

// WithReaders sets the size of the read-only pool (default 4).
func WithReaders(n int) Option { return func(o *options) { o.readers = n } }

// WithClock replaces time.Now for audit timestamps.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Open opens (creating if needed) the database at path, checks its integrity
// and applies pending migrations. The directory must exist. On error nothing
// is left open, and a file that Open itself created is removed.
func Open(ctx context.Context, path string, opts ...Option) (_ *Store, err error) {
	o := options{readers: 4, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if _, statErr := os.Stat(filepath.Dir(path)); statErr != nil {
		return nil, fmt.Errorf("opening state database %s: %w", path, statErr)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)

	s := &Store{path: path, now: o.now}
	defer func() {
		if err == nil {
			return
		}
		s.Close()
		if created {
			for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
				os.Remove(path + suffix)
			}
		}
	}()

	// synchronous=FULL on the writer: every commit reaches the disk before it
	// is acknowledged. The appliance writes little, and the audit log and the
	// report index must survive a power cut.
	s.writer, err = sql.Open("sqlite3", dsn(path, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_busy_timeout": {"5000"},
		"_txlock":       {"immediate"},
		"_foreign_keys": {"on"},
	}))
	if err != nil {
		return nil, fmt.Errorf("opening state database %s: %w", path, err)
	}
	s.writer.SetMaxOpenConns(1)
	s.writer.SetConnMaxIdleTime(0)
	if err := s.writer.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("opening state database %s: %w", path, classify(err))
	}
	if err := s.checkIntegrity(ctx); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}

	s.reader, err = sql.Open("sqlite3", dsn(path, url.Values{
		"mode":          {"ro"},
		"_busy_timeout": {"5000"},
		"_foreign_keys": {"on"},
	}))
	if err != nil {
		return nil, fmt.Errorf("opening state database %s for reading: %w", path, err)
	}
	s.reader.SetMaxOpenConns(o.readers)
	if err := s.reader.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("opening state database %s for reading: %w", path, classify(err))
	}
	return s, nil
}

func dsn(path string, q url.Values) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// classify maps SQLite's "not a database" family of errors to ErrCorrupt.
func classify(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt) {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
}

func (s *Store) checkIntegrity(ctx context.Context) error {
	rows, err := s.writer.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("checking integrity of %s: %w", s.path, classify(err))
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("checking integrity of %s: %w", s.path, classify(err))
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("checking integrity of %s: %w", s.path, classify(err))
	}
	if len(problems) > 0 {
		if len(problems) > 3 {
			problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
		}
		return fmt.Errorf("checking integrity of %s: %w: %s", s.path, ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Read returns the read-only connection pool. Writes through it fail.
func (s *Store) Read() *sql.DB { return s.reader }

// Write runs fn in a transaction on the single writer connection and commits
// it when fn returns nil. BEGIN IMMEDIATE takes the write lock up front, so a
// transaction never fails half-way with "database is locked".
func (s *Store) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning write transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// Ping proves that both pools answer a query; the daemon's watchdog uses it.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.writer.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("state database writer: %w", err)
	}
	if err := s.reader.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&one); err != nil {
		return fmt.Errorf("state database reader: %w", err)
	}
	return nil
}

// Close closes both pools. It is safe on a partly opened Store.
func (s *Store) Close() error {
	var errs []error
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
	}
	if s.writer != nil {
		errs = append(errs, s.writer.Close())
	}
	return errors.Join(errs...)
}
