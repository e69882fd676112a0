package gateway

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Usage is one request as recorded.
type Usage struct {
	At               time.Time     `json:"at"`
	Agent            AgentRef      `json:"agent"`
	Endpoint         string        `json:"endpoint"` // chat, completions, embeddings
	Model            string        `json:"model"`
	Backend          string        `json:"backend"`
	Status           int           `json:"status"`
	Code             string        `json:"code"`
	Stream           bool          `json:"stream"`
	Attempts         int           `json:"attempts"`
	Reported         bool          `json:"reported"` // the backend reported the tokens below
	PromptTokens     int64         `json:"prompt_tokens"`
	CompletionTokens int64         `json:"completion_tokens"`
	ChargedTokens    int64         `json:"charged_tokens"`
	CostNanoUSD      int64         `json:"cost_nano_usd"`
	Latency          time.Duration `json:"latency"`
}

// auditActor is the actor of the gateway's own audit records.
const auditActor = "gateway"

// recorder queues usage records and audit entries in memory and writes
// them in one transaction per batch: the writer's synchronous=FULL
// commit is one fsync per batch instead of one per request, and no
// request waits for it.
type recorder struct {
	st        *store.Store
	log       *slog.Logger
	now       func() time.Time
	interval  time.Duration
	batch     int
	max       int
	retention time.Duration

	mu        sync.Mutex
	pending   []Usage
	audits    []store.AuditEntry
	dropped   uint64
	lastPrune time.Time
	kick      chan struct{}
}

func (r *recorder) add(u Usage) {
	r.mu.Lock()
	if len(r.pending) >= r.max {
		// The database has not taken a batch for a long while: the
		// budgets in memory stay right, the history loses this row.
		r.dropped++
		r.mu.Unlock()
		return
	}
	r.pending = append(r.pending, u)
	full := len(r.pending) >= r.batch
	r.mu.Unlock()
	if full {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

func (r *recorder) audit(e store.AuditEntry) {
	r.mu.Lock()
	r.audits = append(r.audits, e)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *recorder) counts() (pending int, dropped uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending), r.dropped
}

// run writes batches every interval, or sooner when one is full, until
// ctx ends; then it writes what is left.
func (r *recorder) run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.flush(fctx); err != nil {
				return fmt.Errorf("writing the last gateway usage records: %w", err)
			}
			return nil
		case <-t.C:
		case <-r.kick:
		}
		if err := r.flush(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("gateway usage not written; retrying", "err", terminal.Escape(err.Error()))
		}
	}
}

// flush writes everything queued. On failure the records go back to the
// front of the queue, within its bound.
func (r *recorder) flush(ctx context.Context) error {
	r.mu.Lock()
	rows, audits := r.pending, r.audits
	r.pending, r.audits = nil, nil
	prune := r.retention > 0 && r.now().Sub(r.lastPrune) > time.Hour
	r.mu.Unlock()
	if len(rows) == 0 && len(audits) == 0 && !prune {
		return nil
	}
	err := r.st.Write(ctx, func(tx *sql.Tx) error {
		if err := insertUsage(ctx, tx, rows); err != nil {
			return err
		}
		for _, a := range audits {
			if err := r.st.AuditTx(ctx, tx, a); err != nil {
				return err
			}
		}
		if prune {
			cut := store.FormatTime(r.now().Add(-r.retention))
			if _, err := tx.ExecContext(ctx, "DELETE FROM gateway_usage WHERE at < ?", cut); err != nil {
				return fmt.Errorf("pruning gateway usage: %w", err)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrAnchor) {
		r.requeue(rows, audits)
		return err
	}
	if prune {
		r.mu.Lock()
		r.lastPrune = r.now()
		r.mu.Unlock()
	}
	return err
}

func (r *recorder) requeue(rows []Usage, audits []store.AuditEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	room := r.max - len(r.pending)
	if room < len(rows) {
		r.dropped += uint64(len(rows) - max(room, 0))
		rows = rows[:max(room, 0)]
	}
	r.pending = append(rows, r.pending...)
	r.audits = append(audits, r.audits...)
}

type monthKey struct{ month, agent, tenant string }

func insertUsage(ctx context.Context, tx *sql.Tx, rows []Usage) error {
	if len(rows) == 0 {
		return nil
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO gateway_usage (at, agent_id, tenant, endpoint, model, backend, status, code,
		stream, attempts, prompt_tokens, completion_tokens, charged_tokens, cost_nano_usd, latency_us)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("recording gateway usage: %w", err)
	}
	defer ins.Close()
	totals := map[monthKey]*Usage{}
	refused := map[monthKey]int64{}
	counts := map[monthKey]int64{}
	for _, u := range rows {
		var p, c any
		if u.Reported {
			p, c = u.PromptTokens, u.CompletionTokens
		}
		if _, err := ins.ExecContext(ctx, store.FormatTime(u.At), u.Agent.ID, u.Agent.Tenant, u.Endpoint, u.Model, u.Backend,
			u.Status, u.Code, u.Stream, u.Attempts, p, c, u.ChargedTokens, u.CostNanoUSD, u.Latency.Microseconds()); err != nil {
			return fmt.Errorf("recording gateway usage: %w", err)
		}
		k := monthKey{month(u.At), u.Agent.ID, u.Agent.Tenant}
		t := totals[k]
		if t == nil {
			t = &Usage{}
			totals[k] = t
		}
		counts[k]++
		if u.Code != "" {
			refused[k]++
		}
		t.PromptTokens += u.PromptTokens
		t.CompletionTokens += u.CompletionTokens
		t.ChargedTokens = satAdd(t.ChargedTokens, u.ChargedTokens)
		t.CostNanoUSD = satAdd(t.CostNanoUSD, u.CostNanoUSD)
	}
	for k, t := range totals {
		if _, err := tx.ExecContext(ctx, `INSERT INTO gateway_usage_monthly (month, agent_id, tenant, requests, refused,
			prompt_tokens, completion_tokens, charged_tokens, cost_nano_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (month, agent_id, tenant) DO UPDATE SET requests = requests + excluded.requests,
			refused = refused + excluded.refused, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
			completion_tokens = completion_tokens + excluded.completion_tokens,
			charged_tokens = charged_tokens + excluded.charged_tokens, cost_nano_usd = cost_nano_usd + excluded.cost_nano_usd`,
			k.month, k.agent, k.tenant, counts[k], refused[k], t.PromptTokens, t.CompletionTokens, t.ChargedTokens, t.CostNanoUSD); err != nil {
			return fmt.Errorf("recording monthly gateway usage: %w", err)
		}
	}
	return nil
}

// loadBudgets charges the ledgers with what the database holds for the
// month of now.
func loadBudgets(ctx context.Context, st *store.Store, b *budgets, now time.Time) error {
	mon := month(now)
	rows, err := st.Read().QueryContext(ctx, `SELECT agent_id, tenant, charged_tokens, cost_nano_usd
		FROM gateway_usage_monthly WHERE month = ?`, mon)
	if err != nil {
		return fmt.Errorf("reading this month's gateway usage: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var agent, tenant string
		var s spend
		if err := rows.Scan(&agent, &tenant, &s.tokens, &s.cost); err != nil {
			return fmt.Errorf("reading this month's gateway usage: %w", err)
		}
		b.load(mon, "a/"+agent, s)
		b.load(mon, "t/"+tenant, s)
	}
	return rows.Err()
}

// MonthlyUsage is one agent's totals for a month.
type MonthlyUsage struct {
	Month            string   `json:"month"`
	Agent            AgentRef `json:"agent"`
	Requests         int64    `json:"requests"`
	Refused          int64    `json:"refused"`
	PromptTokens     int64    `json:"prompt_tokens"`
	CompletionTokens int64    `json:"completion_tokens"`
	ChargedTokens    int64    `json:"charged_tokens"`
	CostUSD          float64  `json:"cost_usd"`
}

// MonthlyUsage returns every agent's totals for mon (YYYY-MM), as written
// so far (at most one flush interval behind).
func (g *Gateway) MonthlyUsage(ctx context.Context, mon string) ([]MonthlyUsage, error) {
	rows, err := g.st.Read().QueryContext(ctx, `SELECT month, agent_id, tenant, requests, refused, prompt_tokens,
		completion_tokens, charged_tokens, cost_nano_usd FROM gateway_usage_monthly WHERE month = ? ORDER BY agent_id, tenant`, mon)
	if err != nil {
		return nil, fmt.Errorf("reading gateway usage of %s: %w", quote(mon), err)
	}
	defer rows.Close()
	var out []MonthlyUsage
	for rows.Next() {
		var m MonthlyUsage
		var cost int64
		if err := rows.Scan(&m.Month, &m.Agent.ID, &m.Agent.Tenant, &m.Requests, &m.Refused, &m.PromptTokens,
			&m.CompletionTokens, &m.ChargedTokens, &cost); err != nil {
			return nil, fmt.Errorf("reading gateway usage of %s: %w", quote(mon), err)
		}
		m.CostUSD = nanoToUSD(cost)
		out = append(out, m)
	}
	return out, rows.Err()
}

// RecentUsage returns up to limit of an agent's latest requests, newest
// first; agent "" means every agent's.
func (g *Gateway) RecentUsage(ctx context.Context, agent string, limit int) ([]Usage, error) {
	limit = min(max(limit, 1), 1000)
	rows, err := g.st.Read().QueryContext(ctx, `SELECT at, agent_id, tenant, endpoint, model, backend, status, code, stream,
		attempts, prompt_tokens, completion_tokens, charged_tokens, cost_nano_usd, latency_us FROM gateway_usage
		WHERE ? = '' OR agent_id = ? ORDER BY id DESC LIMIT ?`, agent, agent, limit)
	if err != nil {
		return nil, fmt.Errorf("reading gateway usage: %w", err)
	}
	defer rows.Close()
	var out []Usage
	for rows.Next() {
		u, err := scanUsage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func scanUsage(rows *sql.Rows) (Usage, error) {
	var u Usage
	var at string
	var p, c sql.NullInt64
	var lat int64
	if err := rows.Scan(&at, &u.Agent.ID, &u.Agent.Tenant, &u.Endpoint, &u.Model, &u.Backend, &u.Status, &u.Code, &u.Stream,
		&u.Attempts, &p, &c, &u.ChargedTokens, &u.CostNanoUSD, &lat); err != nil {
		return u, fmt.Errorf("reading gateway usage: %w", err)
	}
	t, err := store.ParseTime("gateway_usage", "at", at)
	if err != nil {
		return u, err
	}
	u.At, u.Latency = t, time.Duration(lat)*time.Microsecond
	u.Reported, u.PromptTokens, u.CompletionTokens = p.Valid, p.Int64, c.Int64
	return u, nil
}

// Flush writes the queued usage records and audit entries now (tests,
// and a caller that wants the totals current before reading them).
func (g *Gateway) Flush(ctx context.Context) error { return g.rec.flush(ctx) }
