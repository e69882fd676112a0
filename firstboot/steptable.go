package firstboot

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// AuditActor is the actor of first boot's audit entries.
const AuditActor = "firstboot"

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is first boot's table (firstboot_steps) for store.WithSchemas.
// Every Store used with the runner or Steps must be opened with it.
var Schema = store.Schema{Domain: "firstboot", Migrations: migrations}

// syncTable writes every step's row, so that the console sees the whole
// list (pending ones included) from the first moment, and the Lynis
// audit's row after them, pending until the report says it is skipped or
// RunAudit runs it.
func (r *runner) syncTable(ctx context.Context) error {
	return r.st.Write(ctx, func(tx *sql.Tx) error {
		for i := range r.j.Steps {
			if err := upsertStep(ctx, tx, i+1, &r.j.Steps[i], r.opts.Now()); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `
INSERT INTO firstboot_steps(name, position, status, attempts, error, updated_at)
VALUES (?, ?, ?, 0, '', ?) ON CONFLICT(name) DO NOTHING`, AuditStep, auditPosition(), StatusPending, store.FormatTime(r.opts.Now()))
		if err != nil {
			return fmt.Errorf("recording step %s in firstboot_steps: %w", AuditStep, err)
		}
		return nil
	})
}

// auditPosition is the Lynis audit's place in the step table: after the
// steps, since it runs after first boot.
func auditPosition() int { return len(StepNames()) + 1 }

// record mirrors one step's state into firstboot_steps and, at the end of a
// step, appends an audit entry in the same transaction.
func (r *runner) record(ctx context.Context, s *StepState, audit bool) error {
	pos := 0
	for i := range r.j.Steps {
		if r.j.Steps[i].Name == s.Name {
			pos = i + 1
		}
	}
	return r.st.Write(ctx, func(tx *sql.Tx) error {
		if err := upsertStep(ctx, tx, pos, s, r.opts.Now()); err != nil {
			return err
		}
		if !audit {
			return nil
		}
		detail := map[string]any{"status": s.Status, "attempt": s.Attempts, "journal_attempt": r.j.Attempts}
		if s.Error != "" {
			detail["error"] = s.Error
		}
		if s.Reason != "" {
			detail["reason"] = s.Reason
		}
		if s.Status == StatusDone && !s.StartedAt.IsZero() {
			detail["duration_ms"] = s.FinishedAt.Sub(s.StartedAt).Milliseconds()
		}
		for k, v := range r.auditExtra {
			detail[k] = v
		}
		r.auditExtra = nil
		return r.st.AuditTx(ctx, tx, store.AuditEntry{
			Actor:  AuditActor,
			Action: "firstboot.step." + s.Status,
			Target: s.Name,
			Detail: detail,
		})
	})
}

func upsertStep(ctx context.Context, tx *sql.Tx, pos int, s *StepState, now time.Time) error {
	note := s.Error
	if note == "" {
		note = s.Reason
	}
	_, err := tx.ExecContext(ctx, `
INSERT INTO firstboot_steps(name, position, status, attempts, started_at, finished_at, error, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(name) DO UPDATE SET
    position = excluded.position, status = excluded.status, attempts = excluded.attempts,
    started_at = excluded.started_at, finished_at = excluded.finished_at,
    error = excluded.error, updated_at = excluded.updated_at`,
		s.Name, pos, s.Status, s.Attempts, store.FormatNullTime(s.StartedAt), store.FormatNullTime(s.FinishedAt), note,
		store.FormatTime(now))
	if err != nil {
		return fmt.Errorf("recording step %s in firstboot_steps: %w", s.Name, err)
	}
	return nil
}

// StepRow is one row of firstboot_steps.
type StepRow struct {
	Name       string    `json:"name"`
	Position   int       `json:"position"`
	Status     string    `json:"status"`
	Attempts   int       `json:"attempts"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// Steps reads the step table, in order, for the console and the API.
func Steps(ctx context.Context, db *sql.DB) ([]StepRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT name, position, status, attempts, started_at, finished_at, error FROM firstboot_steps ORDER BY position`)
	if err != nil {
		return nil, fmt.Errorf("reading firstboot_steps: %w", err)
	}
	defer rows.Close()
	var out []StepRow
	for rows.Next() {
		var s StepRow
		var started, finished sql.NullString
		if err := rows.Scan(&s.Name, &s.Position, &s.Status, &s.Attempts, &started, &finished, &s.Error); err != nil {
			return nil, fmt.Errorf("reading firstboot_steps: %w", err)
		}
		if s.StartedAt, err = store.ParseNullTime("firstboot_steps", "started_at", started); err != nil {
			return nil, fmt.Errorf("reading step %q: %w", s.Name, err)
		}
		if s.FinishedAt, err = store.ParseNullTime("firstboot_steps", "finished_at", finished); err != nil {
			return nil, fmt.Errorf("reading step %q: %w", s.Name, err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
