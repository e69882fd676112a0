package api

import (
	"context"
	"database/sql"
	"sync"

	"github.com/omertaos/omertaos/appliance/store"
)

// dbVersion tells whether the database changed: SQLite's data_version,
// read on a connection of its own, changes whenever another connection
// (the store's one writer) commits. Reading it is one PRAGMA, against the
// hundreds of queries some answers cost (the agents list asks two per
// agent).
type dbVersion struct {
	st   *store.Store
	mu   sync.Mutex
	conn *sql.Conn // one of the store's readers, kept
	// stmt is the PRAGMA prepared on conn: preparing it was as much as
	// running it, on every GET /dashboard and GET /agents.
	stmt *sql.Stmt
	// epoch counts the connections taken: data_version is a connection's
	// own count, and two connections' may meet, so the version returned
	// carries the epoch too.
	epoch int64
}

// epochShift leaves data_version 2^40 commits before it meets the epoch.
const epochShift = 40

// get returns the database's version; ok is false when it cannot be read
// (nothing is cached then).
func (d *dbVersion) get(ctx context.Context) (v int64, ok bool) {
	if d == nil || d.st == nil {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		c, err := d.st.Read().Conn(ctx)
		if err != nil {
			return 0, false
		}
		stmt, err := c.PrepareContext(ctx, "PRAGMA data_version")
		if err != nil {
			c.Close()
			return 0, false
		}
		d.conn, d.stmt = c, stmt
		d.epoch++
	}
	if err := d.stmt.QueryRowContext(ctx).Scan(&v); err != nil {
		// A broken connection goes back to the pool (which closes it);
		// the next call takes another.
		d.dropLocked()
		return 0, false
	}
	return d.epoch<<epochShift | v&(1<<epochShift-1), true
}

func (d *dbVersion) dropLocked() {
	if d.stmt != nil {
		d.stmt.Close()
		d.stmt = nil
	}
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
}

// close gives the connection back.
func (d *dbVersion) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropLocked()
}

// answerCache keeps one encoded answer made from the database alone, for
// as long as the database does not change. Only one request makes it at a
// time: a burst after a change waits for one answer instead of each
// making its own.
type answerCache struct {
	mu   sync.Mutex
	ver  int64
	ok   bool
	body []byte
}

// get returns the answer of version ver, making it with build when the
// one kept is of another version. An answer that failed is not kept.
func (a *answerCache) get(ver int64, build func() ([]byte, error)) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ok && a.ver == ver {
		return a.body, nil
	}
	b, err := build()
	if err != nil {
		return nil, err
	}
	a.ver, a.body, a.ok = ver, b, true
	return b, nil
}

// fromDB is build's answer, kept in a until the database changes when
// pure says the answer is made from the database alone; made afresh
// otherwise, or when the database's version cannot be read.
func (s *Server) fromDB(ctx context.Context, pure bool, a *answerCache, build func() ([]byte, error)) ([]byte, error) {
	if !pure {
		return build()
	}
	ver, ok := s.dbv.get(ctx)
	if !ok {
		return build()
	}
	return a.get(ver, build)
}
