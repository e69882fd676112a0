package probe

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// ErrBaselineExists is returned (wrapped) by Save when a baseline is already
// stored. A resumed first boot may see it and carry on: the first baseline
// stays, because drift is measured against the machine as first seen.
var ErrBaselineExists = errors.New("a baseline probe is already stored")

// Stored is a probe as kept in the store.
type Stored struct {
	ID       int64     `json:"id"`
	At       time.Time `json:"at"`
	Baseline bool      `json:"baseline"`
	Result   *Result   `json:"result"`
}

// Save stores res; baseline is true for first boot's probe. Storing a
// baseline is audited, so that an auditor can see which probe later drift
// is measured against.
func Save(ctx context.Context, st *store.Store, res *Result, baseline bool) error {
	_, err := save(ctx, st, res, baseline, nil)
	return err
}

// save stores res and, in the same transaction, the drift events found
// against baselineID, each audited.
func save(ctx context.Context, st *store.Store, res *Result, baseline bool, drift *driftRecord) (int64, error) {
	b, err := json.Marshal(res)
	if err != nil {
		return 0, fmt.Errorf("encoding probe result: %w", err)
	}
	at := store.FormatTime(res.Time)
	var id int64
	err = st.Write(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, "INSERT INTO probe(at, baseline, schema_version, result) VALUES (?,?,?,?)",
			at, baseline, res.SchemaVersion, string(b))
		if err != nil {
			// Only the one-baseline index is UNIQUE on probe, so a
			// UNIQUE violation here is the second baseline.
			if baseline && store.IsUnique(err) {
				return ErrBaselineExists
			}
			return err
		}
		if id, err = r.LastInsertId(); err != nil {
			return err
		}
		if baseline {
			if err := st.AuditTx(ctx, tx, store.AuditEntry{Actor: "omertad", Action: "probe.baseline", Target: fmt.Sprintf("probe/%d", id),
				Detail: map[string]any{"gpus": res.GPU.Summary, "memory_bytes": res.Host.Memory.TotalBytes, "kernel": res.Host.Kernel.Release}}); err != nil {
				return err
			}
		}
		if drift == nil {
			return nil
		}
		for _, ev := range drift.events {
			if _, err := tx.ExecContext(ctx,
				"INSERT INTO probe_drift(at, probe_id, baseline_id, kind, subject, before, after, message) VALUES (?,?,?,?,?,?,?,?)",
				at, id, drift.baselineID, ev.Kind, ev.Subject, ev.Before, ev.After, ev.Message); err != nil {
				return err
			}
			if err := st.AuditTx(ctx, tx, store.AuditEntry{Actor: "omertad", Action: "probe.drift", Target: ev.Subject,
				Detail: map[string]any{"kind": ev.Kind, "before": ev.Before, "after": ev.After, "message": ev.Message,
					"probe_id": id, "baseline_id": drift.baselineID}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storing probe: %w", err)
	}
	return id, nil
}

type driftRecord struct {
	baselineID int64
	events     []DriftEvent
}

// Baseline returns the stored baseline: first boot's probe, or when there
// is none the first probe stored. nil when nothing is stored.
func Baseline(ctx context.Context, st *store.Store) (*Stored, error) {
	return queryOne(ctx, st, "SELECT id, at, baseline, result FROM probe ORDER BY baseline DESC, id ASC LIMIT 1")
}

// Latest returns the newest stored probe, nil when there is none.
func Latest(ctx context.Context, st *store.Store) (*Stored, error) {
	return queryOne(ctx, st, "SELECT id, at, baseline, result FROM probe ORDER BY id DESC LIMIT 1")
}

func queryOne(ctx context.Context, st *store.Store, q string) (*Stored, error) {
	var (
		s      Stored
		at, js string
	)
	err := st.Read().QueryRowContext(ctx, q).Scan(&s.ID, &at, &s.Baseline, &js)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading stored probe: %w", err)
	}
	if s.At, err = store.ParseTime("probe", "at", at); err != nil {
		return nil, fmt.Errorf("reading stored probe %d: %w", s.ID, err)
	}
	s.Result = &Result{}
	if err := json.Unmarshal([]byte(js), s.Result); err != nil {
		return nil, fmt.Errorf("reading stored probe %d: %w", s.ID, err)
	}
	return &s, nil
}

// StoredDrift is a drift event as kept in the store.
type StoredDrift struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	ProbeID    int64     `json:"probe_id"`
	BaselineID int64     `json:"baseline_id"`
	DriftEvent
}

// DriftEvents returns up to limit events, newest first.
func DriftEvents(ctx context.Context, st *store.Store, limit int) ([]StoredDrift, error) {
	rows, err := st.Read().QueryContext(ctx,
		"SELECT id, at, probe_id, baseline_id, kind, subject, before, after, message FROM probe_drift ORDER BY id DESC LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("reading drift events: %w", err)
	}
	defer rows.Close()
	out := []StoredDrift{}
	for rows.Next() {
		var (
			d  StoredDrift
			at string
		)
		if err := rows.Scan(&d.ID, &at, &d.ProbeID, &d.BaselineID, &d.Kind, &d.Subject, &d.Before, &d.After, &d.Message); err != nil {
			return nil, fmt.Errorf("reading drift events: %w", err)
		}
		if d.At, err = store.ParseTime("probe_drift", "at", at); err != nil {
			return nil, fmt.Errorf("reading drift event %d: %w", d.ID, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading drift events: %w", err)
	}
	return out, nil
}
