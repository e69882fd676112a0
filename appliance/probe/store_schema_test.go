package probe

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

func openSchemaStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func storeResult(at time.Time) *Result {
	return &Result{SchemaVersion: SchemaVersion, Time: at}
}

// TestStoreSchemaOwnsTables: the probe tables come with probe.Schema, and
// a Store opened without it has none.
func TestStoreSchemaOwnsTables(t *testing.T) {
	ctx := context.Background()
	st := openSchemaStore(t)
	if dv, err := st.DomainVersions(ctx); err != nil || dv["probe"] != 1 {
		t.Fatalf("DomainVersions = %v, %v", dv, err)
	}
	bare, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if err := Save(ctx, bare, storeResult(fixedNow()), false); err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("Save without probe.Schema = %v, want no such table", err)
	}
}

// TestStoreSecondBaseline: the refusal of a second baseline is recognised
// by SQLite's constraint code, and other probes still store.
func TestStoreSecondBaseline(t *testing.T) {
	ctx := context.Background()
	st := openSchemaStore(t)
	if err := Save(ctx, st, storeResult(fixedNow()), true); err != nil {
		t.Fatal(err)
	}
	if err := Save(ctx, st, storeResult(fixedNow()), true); !errors.Is(err, ErrBaselineExists) {
		t.Fatalf("second baseline: %v, want ErrBaselineExists", err)
	}
	for i := 0; i < 2; i++ {
		if err := Save(ctx, st, storeResult(fixedNow().Add(time.Hour)), false); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
	}
	b, err := Baseline(ctx, st)
	if err != nil || b == nil || !b.Baseline || !b.At.Equal(fixedNow()) {
		t.Fatalf("Baseline = %+v, %v", b, err)
	}
}

// TestStoreBadTimeIsError: a drift row or probe row whose time is not a
// stored time is an error naming the table and column; DriftEvents used to
// return it as the zero time.
func TestStoreBadTimeIsError(t *testing.T) {
	ctx := context.Background()
	st := openSchemaStore(t)
	if err := Save(ctx, st, storeResult(fixedNow()), true); err != nil {
		t.Fatal(err)
	}
	err := st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO probe_drift(at, probe_id, baseline_id, kind, message) VALUES ('last tuesday', 1, 1, 'gpu.lost', 'm')`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := DriftEvents(ctx, st, 10); err == nil || !strings.Contains(err.Error(), "probe_drift.at") {
		t.Fatalf("DriftEvents = %+v, %v; want an error naming probe_drift.at", ev, err)
	}
	err = st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO probe(at, baseline, schema_version, result) VALUES ('', 0, 'v', '{}')`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := Latest(ctx, st); err == nil || !strings.Contains(err.Error(), "probe.at") {
		t.Fatalf("Latest = %+v, %v; want an error naming probe.at", p, err)
	}
}
