package api

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/store"
)

// TestDBVersion: the version read on the kept connection with the kept
// statement changes with each commit of the store's writer and not
// otherwise; a connection that broke is given up, and the next call
// takes another, prepares again and counts from another epoch.
func TestDBVersion(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(probe.Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := &dbVersion{st: st}
	t.Cleanup(d.close)
	v1, ok := d.get(ctx)
	if !ok {
		t.Fatal("no version read")
	}
	if v, ok := d.get(ctx); !ok || v != v1 {
		t.Errorf("an unchanged database: version %d, %v; want %d", v, ok, v1)
	}
	write := func() {
		t.Helper()
		if err := st.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS t_version(x); INSERT INTO t_version VALUES (1)")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	write()
	v2, ok := d.get(ctx)
	if !ok || v2 == v1 {
		t.Errorf("after a commit: version %d, %v; want one other than %d", v2, ok, v1)
	}
	// The kept statement fails once its connection is gone.
	d.mu.Lock()
	d.conn.Close()
	d.mu.Unlock()
	if _, ok := d.get(ctx); ok {
		t.Error("a version read on a closed connection")
	}
	if d.conn != nil || d.stmt != nil {
		t.Error("the broken connection is kept")
	}
	write()
	// Another connection's count may meet the first one's: the versions
	// of two connections never do.
	if v3, ok := d.get(ctx); !ok || v3 == v1 || v3 == v2 {
		t.Errorf("after the connection broke: version %d, %v; want one read on another, not %d or %d", v3, ok, v1, v2)
	}
	var nilD *dbVersion
	if _, ok := nilD.get(ctx); ok {
		t.Error("a version without a store")
	}
}
