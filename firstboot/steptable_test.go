package firstboot

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

func openStepStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestStepTableRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := openStepStore(t)
	if dv, err := st.DomainVersions(ctx); err != nil || dv["firstboot"] != 1 {
		t.Fatalf("DomainVersions = %v, %v", dv, err)
	}
	start := time.Date(2026, 11, 26, 3, 0, 0, 5, time.FixedZone("CET", 3600))
	steps := []StepState{
		{Name: "disk", Status: StatusDone, Attempts: 1, StartedAt: start, FinishedAt: start.Add(time.Second)},
		{Name: "site", Status: StatusPending},
	}
	err := st.Write(ctx, func(tx *sql.Tx) error {
		for i := range steps {
			if err := upsertStep(ctx, tx, i+1, &steps[i], start); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := Steps(ctx, st.Read())
	if err != nil || len(rows) != 2 {
		t.Fatalf("Steps = %+v, %v", rows, err)
	}
	if !rows[0].StartedAt.Equal(start) || !rows[0].FinishedAt.Equal(start.Add(time.Second)) {
		t.Errorf("disk times = %v, %v", rows[0].StartedAt, rows[0].FinishedAt)
	}
	if !rows[1].StartedAt.IsZero() || !rows[1].FinishedAt.IsZero() {
		t.Errorf("pending step has times %v, %v", rows[1].StartedAt, rows[1].FinishedAt)
	}
}

// TestStepTableBadTimeIsError: a step whose time is not a stored time is an
// error naming the column; Steps used to report it as "never started".
func TestStepTableBadTimeIsError(t *testing.T) {
	ctx := context.Background()
	st := openStepStore(t)
	for _, col := range []string{"started_at", "finished_at"} {
		err := st.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO firstboot_steps(name, position, status, ` + col + `, updated_at)
VALUES ('x-` + col + `', 1, 'done', 'after lunch', '2026-11-26T02:00:00Z')`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if rows, err := Steps(ctx, st.Read()); err == nil || !strings.Contains(err.Error(), "firstboot_steps."+col) {
			t.Fatalf("Steps = %+v, %v; want an error naming firstboot_steps.%s", rows, err, col)
		}
		err = st.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec(`DELETE FROM firstboot_steps`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
