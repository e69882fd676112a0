// Package store owns omertad's SQLite database: opening it safely (an
// integrity check that leaves a corrupt file as found), migrating the tables
// that each domain registers with a Schema, and the hash-chained audit log,
// whose head is anchored in a file beside the database (state.db.audit-head).
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
	"sync"
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

	// txs holds what AuditTx learned inside each open Write transaction,
	// so that Write can record the chain head once the commit is durable.
	mu  sync.Mutex
	txs map[*sql.Tx]*txState

	// anchored is the highest seq this Store wrote to the anchor file:
	// two goroutines' anchor writes may finish out of order, and the
	// anchor must not step back because of it.
	anchorMu sync.Mutex
	anchored int64
}

// Option configures Open.
type Option func(*options)

type options struct {
	readers int
	now     func() time.Time
	schemas []Schema
}

// WithReaders sets the size of the read-only pool (default 4).
func WithReaders(n int) Option { return func(o *options) { o.readers = n } }

// WithClock replaces time.Now for audit timestamps.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithSchemas adds the tables of other domains (probe.Schema,
// firstboot.Schema, ...), migrated after the store's own audit schema, in the
// order given. A domain's tables exist only in a Store opened with its
// Schema, so every process that uses them must pass it.
func WithSchemas(schemas ...Schema) Option {
	return func(o *options) { o.schemas = append(o.schemas, schemas...) }
}

// Open opens (creating if needed) the database at path, checks its integrity
// and applies pending migrations. The directory must exist. On error nothing
// is left open, and a file that Open itself created is removed.
//
// The integrity check runs on a read-only connection before any read-write
// one (see checkBeforeOpen), so a database refused as corrupt is left byte
// for byte as it was found, -wal and -shm included.
func Open(ctx context.Context, path string, opts ...Option) (_ *Store, err error) {
	o := options{readers: 4, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	plan, err := planSchemas(o.schemas)
	if err != nil {
		return nil, fmt.Errorf("opening state database %s: %w", path, err)
	}
	if _, statErr := os.Stat(filepath.Dir(path)); statErr != nil {
		return nil, fmt.Errorf("opening state database %s: %w", path, statErr)
	}
	unlock := lockOpen(path)
	defer unlock()
	_, statErr := os.Lstat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	if err := checkBeforeOpen(ctx, path); err != nil {
		return nil, err
	}

	s := &Store{path: path, now: o.now, txs: map[*sql.Tx]*txState{}}
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
	if err := s.openWriter(ctx); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx, plan); err != nil {
		return nil, err
	}
	if err := s.openReader(ctx, o.readers); err != nil {
		return nil, err
	}
	return s, nil
}

// openLocks serialises Open per database within this process. SQLite keeps
// one WAL-index mapping per file per process: when a check's read-only
// mapping (readonly_shm) is the first, a concurrent Open's writer is given
// that same mapping and its first write fails with SQLITE_READONLY.
// Processes do not share mappings; across them the retry in checkBeforeOpen
// is enough.
var openLocks sync.Map // absolute path -> *sync.Mutex

func lockOpen(path string) (unlock func()) {
	key := path
	if abs, err := filepath.Abs(path); err == nil {
		key = abs
	}
	mu, _ := openLocks.LoadOrStore(key, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

func (s *Store) openWriter(ctx context.Context) (err error) {
	// synchronous=FULL on the writer: every commit reaches the disk before it
	// is acknowledged. The appliance writes little, and the audit log and the
	// report index must survive a power cut.
	s.writer, err = sql.Open("sqlite3", dsn(s.path, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_busy_timeout": {"5000"},
		"_txlock":       {"immediate"},
		"_foreign_keys": {"on"},
	}))
	if err != nil {
		return fmt.Errorf("opening state database %s: %w", s.path, err)
	}
	s.writer.SetMaxOpenConns(1)
	s.writer.SetConnMaxIdleTime(0)
	if err := s.writer.PingContext(ctx); err != nil {
		return fmt.Errorf("opening state database %s: %w", s.path, classify(err))
	}
	return nil
}

func (s *Store) openReader(ctx context.Context, readers int) (err error) {
	s.reader, err = sql.Open("sqlite3", dsn(s.path, url.Values{
		"mode":          {"ro"},
		"_busy_timeout": {"5000"},
		"_foreign_keys": {"on"},
	}))
	if err != nil {
		return fmt.Errorf("opening state database %s for reading: %w", s.path, err)
	}
	s.reader.SetMaxOpenConns(readers)
	if err := s.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("opening state database %s for reading: %w", s.path, classify(err))
	}
	return nil
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

// IsUnique reports whether err is SQLite refusing a row that would break a
// UNIQUE constraint or index, matched by its extended result code.
func IsUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Read returns the read-only connection pool. Writes through it fail.
func (s *Store) Read() *sql.DB { return s.reader }

// Write runs fn in a transaction on the single writer connection and commits
// it when fn returns nil. BEGIN IMMEDIATE takes the write lock up front, so a
// transaction never fails half-way with "database is locked".
//
// When fn appended to the audit log, Write records the new chain head in the
// anchor file after the commit. An error wrapping ErrAnchor means the
// transaction did commit but the anchor could not be written.
func (s *Store) Write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning write transaction: %w", err)
	}
	ts := &txState{}
	s.mu.Lock()
	s.txs[tx] = ts
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.txs, tx)
		s.mu.Unlock()
	}()
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	if ts.head.Seq > 0 {
		return s.advanceAnchor(ts.head)
	}
	return nil
}

// txState is what AuditTx records about one Write transaction.
type txState struct {
	head    anchor // chain head after this transaction's appends
	checked bool   // the anchor was compared with the chain it extends
}

func (s *Store) txState(tx *sql.Tx) *txState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.txs[tx]
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
