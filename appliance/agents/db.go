package agents

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/store"
)

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// agentRow is an agent's row joined with its status row.
type agentRow struct {
	ID, Tenant string
	Desired    Desired
	Purge      bool
	Gen        int64
	LastGen    int64
	PrevGen    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	St         statusRow
	// Flag is set while the agent fails the policies in force.
	Flag *PolicyFlag
}

// statusRow is agent_status. Zero times are NULL.
type statusRow struct {
	State          State
	Reason         string
	Restarts       int64
	OOMKills       int64
	TaskOOM        int64
	LastExitCode   *int64
	LastExitAt     time.Time
	Failures       []time.Time
	NextStartAt    time.Time
	CrashLoopSince time.Time
	PendingOp      string
	PendingSince   time.Time
	UpdatedAt      time.Time
}

// containerID is the container of an agent's generation: derived, so that
// the reconciler finds it from the row alone after a crash.
func containerID(agent string, gen int64) string {
	return agent + "-g" + strconv.FormatInt(gen, 10)
}

const selectAgents = `SELECT a.id, a.tenant, a.desired, a.purge, a.generation, a.last_generation, a.prev_generation,
 a.created_at, a.updated_at, s.state, s.reason, s.restarts, s.oom_kills, s.task_oom, s.last_exit_code, s.last_exit_at,
 s.failures, s.next_start_at, s.crash_loop_since, s.pending_op, s.pending_since, s.updated_at,
 f.rule, f.reason, f.flagged_at
 FROM agents a JOIN agent_status s ON s.agent_id = a.id LEFT JOIN agent_policy_flags f ON f.agent_id = a.id`

func loadAgents(ctx context.Context, q querier, where string, args ...any) ([]agentRow, error) {
	rows, err := q.QueryContext(ctx, selectAgents+" "+where+" ORDER BY a.id", args...)
	if err != nil {
		return nil, fmt.Errorf("reading agents: %w", err)
	}
	defer rows.Close()
	var out []agentRow
	for rows.Next() {
		r, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading agents: %w", err)
	}
	return out, nil
}

func loadAgent(ctx context.Context, q querier, id string) (agentRow, error) {
	rs, err := loadAgents(ctx, q, "WHERE a.id = ?", id)
	if err != nil {
		return agentRow{}, err
	}
	if len(rs) == 0 {
		return agentRow{}, fmt.Errorf("agent %s: %w", quote(id), ErrNotFound)
	}
	return rs[0], nil
}

func scanAgent(rows *sql.Rows) (agentRow, error) {
	var r agentRow
	var created, updated, failures, stUpdated string
	var exitAt, nextStart, crash, pendingSince, flagRule, flagReason, flagAt sql.NullString
	var exitCode sql.NullInt64
	err := rows.Scan(&r.ID, &r.Tenant, &r.Desired, &r.Purge, &r.Gen, &r.LastGen, &r.PrevGen, &created, &updated,
		&r.St.State, &r.St.Reason, &r.St.Restarts, &r.St.OOMKills, &r.St.TaskOOM, &exitCode, &exitAt,
		&failures, &nextStart, &crash, &r.St.PendingOp, &pendingSince, &stUpdated, &flagRule, &flagReason, &flagAt)
	if err != nil {
		return r, fmt.Errorf("reading agents: %w", err)
	}
	if exitCode.Valid {
		r.St.LastExitCode = &exitCode.Int64
	}
	var errs []error
	parse := func(dst *time.Time, table, col, v string) {
		t, err := store.ParseTime(table, col, v)
		*dst = t
		errs = append(errs, err)
	}
	parseNull := func(dst *time.Time, col string, v sql.NullString) {
		t, err := store.ParseNullTime("agent_status", col, v)
		*dst = t
		errs = append(errs, err)
	}
	parse(&r.CreatedAt, "agents", "created_at", created)
	parse(&r.UpdatedAt, "agents", "updated_at", updated)
	parse(&r.St.UpdatedAt, "agent_status", "updated_at", stUpdated)
	parseNull(&r.St.LastExitAt, "last_exit_at", exitAt)
	parseNull(&r.St.NextStartAt, "next_start_at", nextStart)
	parseNull(&r.St.CrashLoopSince, "crash_loop_since", crash)
	parseNull(&r.St.PendingSince, "pending_since", pendingSince)
	if err := decodeFailures(failures, &r.St.Failures); err != nil {
		errs = append(errs, err)
	}
	if flagAt.Valid {
		f := &PolicyFlag{Agent: r.ID, Tenant: r.Tenant, Rule: flagRule.String, Reason: flagReason.String}
		parse(&f.Since, "agent_policy_flags", "flagged_at", flagAt.String)
		r.Flag = f
	}
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("reading agent %s: %w", quote(r.ID), err)
	}
	return r, nil
}

// maxFailures bounds the failure times kept: the crash-loop threshold is
// at most 100 (manifest.Check).
const maxFailures = 100

func decodeFailures(text string, out *[]time.Time) error {
	if len(text) > 64<<10 {
		return errors.New("agent_status.failures: longer than 64 KiB")
	}
	var ss []string
	if err := json.Unmarshal([]byte(text), &ss); err != nil {
		return fmt.Errorf("agent_status.failures: %w", err)
	}
	if len(ss) > maxFailures {
		ss = ss[len(ss)-maxFailures:]
	}
	ts := make([]time.Time, 0, len(ss))
	for _, v := range ss {
		t, err := store.ParseTime("agent_status", "failures", v)
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	*out = ts
	return nil
}

func encodeFailures(ts []time.Time) string {
	ss := make([]string, len(ts))
	for i, t := range ts {
		ss[i] = store.FormatTime(t)
	}
	b, _ := json.Marshal(ss)
	return string(b)
}

func nullInt(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// writeStatus replaces the agent's status row.
func writeStatus(ctx context.Context, tx *sql.Tx, id string, st statusRow) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO agent_status (agent_id, state, reason, restarts, oom_kills, task_oom,
 last_exit_code, last_exit_at, failures, next_start_at, crash_loop_since, pending_op, pending_since, updated_at)
 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
 ON CONFLICT (agent_id) DO UPDATE SET state = excluded.state, reason = excluded.reason, restarts = excluded.restarts,
 oom_kills = excluded.oom_kills, task_oom = excluded.task_oom, last_exit_code = excluded.last_exit_code,
 last_exit_at = excluded.last_exit_at, failures = excluded.failures, next_start_at = excluded.next_start_at,
 crash_loop_since = excluded.crash_loop_since, pending_op = excluded.pending_op, pending_since = excluded.pending_since,
 updated_at = excluded.updated_at`,
		id, string(st.State), st.Reason, st.Restarts, st.OOMKills, st.TaskOOM, nullInt(st.LastExitCode),
		store.FormatNullTime(st.LastExitAt), encodeFailures(st.Failures), store.FormatNullTime(st.NextStartAt),
		store.FormatNullTime(st.CrashLoopSince), st.PendingOp, store.FormatNullTime(st.PendingSince),
		store.FormatTime(st.UpdatedAt))
	if err != nil {
		return fmt.Errorf("writing the status of %s: %w", quote(id), err)
	}
	return nil
}

// storedSpec is one generation's manifest, its compiled configuration
// schema (nil when it has none) and its public configuration.
type storedSpec struct {
	Manifest *manifest.Manifest
	Schema   *manifest.ConfigSchema
	Config   map[string]any
	// Signer is the key that verified the image when it was admitted.
	Signer string
}

// loadSpec reads one generation's spec; the manifest is parsed (and so
// checked again) once per generation and then cached.
func (s *Service) loadSpec(ctx context.Context, q querier, id string, gen int64) (storedSpec, error) {
	var mtext, ctext, signer string
	err := q.QueryRowContext(ctx, "SELECT manifest, config, image_signer FROM agent_specs WHERE agent_id = ? AND generation = ?",
		id, gen).Scan(&mtext, &ctext, &signer)
	if errors.Is(err, sql.ErrNoRows) {
		return storedSpec{}, fmt.Errorf("agent %s generation %d: %w", quote(id), gen, ErrNotFound)
	}
	if err != nil {
		return storedSpec{}, fmt.Errorf("reading agent %s generation %d: %w", quote(id), gen, err)
	}
	var cfg map[string]any
	if err := decodeJSON([]byte(ctext), &cfg); err != nil {
		return storedSpec{}, fmt.Errorf("agent %s generation %d: agent_specs.config: %w", quote(id), gen, err)
	}
	e, err := s.parseSpec(id, gen, mtext)
	if err != nil {
		return storedSpec{}, err
	}
	return storedSpec{Manifest: e.m, Schema: e.cs, Config: cfg, Signer: signer}, nil
}

func (s *Service) parseSpec(id string, gen int64, mtext string) (*specEntry, error) {
	k := specKey{id, gen}
	if e := s.specs.get(k); e != nil {
		return e, nil
	}
	m, err := manifest.Parse([]byte(mtext))
	if err != nil {
		return nil, fmt.Errorf("agent %s generation %d: the stored manifest no longer parses: %w", quote(id), gen, err)
	}
	e := &specEntry{m: m}
	if m.Spec.ConfigSchema != nil {
		cs, ps := manifest.CompileConfigSchema(m.Spec.ConfigSchema, "spec.configSchema")
		if len(ps) > 0 {
			return nil, fmt.Errorf("agent %s generation %d: the stored configuration schema: %w", quote(id), gen, ps)
		}
		e.cs = cs
	}
	s.specs.put(k, e)
	return e, nil
}

// cachedManifest is the manifest of a generation, from the cache when it
// is there (the reconciler's hot path).
func (s *Service) cachedManifest(ctx context.Context, id string, gen int64) (*manifest.Manifest, error) {
	return s.cachedManifestTx(ctx, s.st.Read(), id, gen)
}

// cachedManifestTx is cachedManifest reading through q.
func (s *Service) cachedManifestTx(ctx context.Context, q querier, id string, gen int64) (*manifest.Manifest, error) {
	if e := s.specs.get(specKey{id, gen}); e != nil {
		return e.m, nil
	}
	var mtext string
	err := q.QueryRowContext(ctx, "SELECT manifest FROM agent_specs WHERE agent_id = ? AND generation = ?", id, gen).Scan(&mtext)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("agent %s generation %d: %w", quote(id), gen, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading agent %s generation %d: %w", quote(id), gen, err)
	}
	e, err := s.parseSpec(id, gen, mtext)
	if err != nil {
		return nil, err
	}
	return e.m, nil
}

// loadSecrets reads one generation's secret values, keyed by JSON pointer.
// Only the configuration file of the agent's container is built from them.
func loadSecrets(ctx context.Context, q querier, id string, gen int64) (map[string]any, error) {
	rows, err := q.QueryContext(ctx, "SELECT key, value FROM agent_secrets WHERE agent_id = ? AND generation = ?", id, gen)
	if err != nil {
		return nil, fmt.Errorf("reading the secrets of %s: %w", quote(id), err)
	}
	defer rows.Close()
	out := map[string]any{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("reading the secrets of %s: %w", quote(id), err)
		}
		var val any
		if err := decodeJSON([]byte(v), &val); err != nil {
			// The value is not quoted: it is a secret.
			return nil, fmt.Errorf("the secret %s of %s is not JSON", quote(k), quote(id))
		}
		out[k] = val
	}
	return out, rows.Err()
}

// secretKeys lists the pointers of the secrets set for a generation.
func secretKeys(ctx context.Context, q querier, id string, gen int64) ([]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT key FROM agent_secrets WHERE agent_id = ? AND generation = ? ORDER BY key", id, gen)
	if err != nil {
		return nil, fmt.Errorf("reading the secret names of %s: %w", quote(id), err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// insertSpec writes a generation: manifest (without spec.config), public
// configuration, the image's signer and the secrets.
func (s *Service) insertSpec(ctx context.Context, tx *sql.Tx, id string, gen int64, cs checkedSpec) error {
	public, secrets := cs.public, cs.secrets
	stored := *cs.m
	stored.Spec.Config = nil
	mtext, err := json.Marshal(&stored)
	if err != nil {
		return fmt.Errorf("encoding the manifest of %s: %w", quote(id), err)
	}
	if public == nil {
		public = map[string]any{}
	}
	ctext, err := json.Marshal(public)
	if err != nil {
		return fmt.Errorf("encoding the configuration of %s: %w", quote(id), err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO agent_specs (agent_id, generation, manifest, config, image_signer, created_at) VALUES (?,?,?,?,?,?)",
		id, gen, string(mtext), string(ctext), cs.signer, store.FormatTime(s.now())); err != nil {
		return fmt.Errorf("writing agent %s generation %d: %w", quote(id), gen, err)
	}
	keys := make([]string, 0, len(secrets))
	for k := range secrets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := json.Marshal(secrets[k])
		if err != nil {
			return fmt.Errorf("encoding a secret of %s", quote(id))
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO agent_secrets (agent_id, generation, key, value) VALUES (?,?,?,?)",
			id, gen, k, string(v)); err != nil {
			return fmt.Errorf("writing the secrets of %s: %w", quote(id), err)
		}
	}
	return nil
}

// recordDeploy writes the outcome of a deploy or patch for the KPI and
// clears the pending mark in st.
func (s *Service) recordDeploy(ctx context.Context, tx *sql.Tx, id string, st *statusRow, ok bool, why string) error {
	if st.PendingOp == "" {
		return nil
	}
	d := s.now().Sub(st.PendingSince)
	if st.PendingSince.IsZero() || d < 0 {
		d = 0
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO deploy_events (at, agent_id, op, ok, duration_ms, error) VALUES (?,?,?,?,?,?)",
		store.FormatTime(s.now()), id, st.PendingOp, ok, d.Milliseconds(), oneLine(why, 1024))
	if err != nil {
		return fmt.Errorf("recording the deploy of %s: %w", quote(id), err)
	}
	st.PendingOp, st.PendingSince = "", time.Time{}
	return nil
}

// DeployStats is the deploy success KPI over a period.
type DeployStats struct {
	Since     time.Time `json:"since"`
	Total     int       `json:"total"`
	Succeeded int       `json:"succeeded"`
	// Rate is Succeeded/Total, or 1 when there was none.
	Rate float64 `json:"rate"`
}

// DeployStats counts the deploys and patches whose outcome was recorded
// since the given time (the console asks for the last 7 days).
func (s *Service) DeployStats(ctx context.Context, since time.Time) (DeployStats, error) {
	out := DeployStats{Since: since.UTC(), Rate: 1}
	err := s.st.Read().QueryRowContext(ctx, "SELECT count(*), coalesce(sum(ok), 0) FROM deploy_events WHERE at >= ?",
		store.FormatTime(since)).Scan(&out.Total, &out.Succeeded)
	if err != nil {
		return out, fmt.Errorf("reading deploy events: %w", err)
	}
	if out.Total > 0 {
		out.Rate = float64(out.Succeeded) / float64(out.Total)
	}
	return out, nil
}

// decodeJSON decodes with numbers kept as json.Number, the form the
// manifest's configuration validator expects.
func decodeJSON(data []byte, v any) error {
	d := json.NewDecoder(bytesReader(data))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
