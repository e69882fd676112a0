package agents

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/store"
)

// PolicyFlag says that a deployed agent fails the policies in force: a
// policy or tenant change made it non-compliant after it was admitted. It
// keeps running (nothing is stopped on the operator's behalf); the flag
// stays until it passes again, after a patch or another change.
type PolicyFlag struct {
	Agent  string `json:"agent"`
	Tenant string `json:"tenant"`
	// Rule and Reason are the first refusal, as admission words it
	// ("policy:tenant/acme@v4 max.memory", with the numbers).
	Rule   string    `json:"rule"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// PolicyData is an EventAgentPolicy's data: the agent's compliance now.
type PolicyData struct {
	Compliant bool   `json:"compliant"`
	Rule      string `json:"rule,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// complianceState is what the reconciler remembers between checks.
type complianceState struct {
	mu sync.Mutex // one check at a time
	// dirty counts admitted deploys and patches: one committing while a
	// policy changes may be judged by neither the change nor a check
	// that ran before its commit, so each one asks for a check.
	dirty    atomic.Int64
	lastSet  *policy.Set
	lastSeen int64
}

// NonCompliant lists the deployed agents flagged as failing the policies
// in force, by id.
func (s *Service) NonCompliant(ctx context.Context) ([]PolicyFlag, error) {
	var out []PolicyFlag
	err := eachRow(ctx, s.st.Read(), func(rows *sql.Rows) error {
		var f PolicyFlag
		var at string
		if err := rows.Scan(&f.Agent, &f.Tenant, &f.Rule, &f.Reason, &at); err != nil {
			return err
		}
		t, err := store.ParseTime("agent_policy_flags", "flagged_at", at)
		if err != nil {
			return err
		}
		f.Since = t
		out = append(out, f)
		return nil
	}, `SELECT f.agent_id, a.tenant, f.rule, f.reason, f.flagged_at FROM agent_policy_flags f
 JOIN agents a ON a.id = f.agent_id WHERE a.desired != 'deleted' ORDER BY f.agent_id`)
	if err != nil {
		return nil, fmt.Errorf("reading the non-compliant agents: %w", err)
	}
	return out, nil
}

// FlagNonCompliant flags at once the agents a policy change made
// non-compliant (policy.Change.NonCompliant, policy.TenantChange's): what
// the API calls right after the change. It only adds flags; the
// reconciler's CheckCompliance also removes those no longer true.
func (s *Service) FlagNonCompliant(ctx context.Context, findings []policy.Finding) error {
	want := make(map[string]PolicyFlag, len(findings))
	for _, f := range findings {
		if !f.Decision.Allow {
			want[f.Agent] = PolicyFlag{Agent: f.Agent, Tenant: f.Tenant, Rule: f.Decision.Rule, Reason: f.Decision.Reason}
		}
	}
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	return s.syncFlags(ctx, want, false)
}

// CheckCompliance judges every deployed agent against the policies in
// force (Compliance.Coverage) and makes the flags agree: an agent that
// fails is flagged, one that passes is not, and each change is audited
// and published (EventAgentPolicy). Without Compliance it does nothing.
// The reconciler calls it whenever the policies or the agents changed.
func (s *Service) CheckCompliance(ctx context.Context) error {
	if s.compliance == nil {
		return nil
	}
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	return s.checkCompliance(ctx)
}

// checkCompliance is CheckCompliance under comp.mu.
func (s *Service) checkCompliance(ctx context.Context) error {
	set, seen := s.compliance.Set(), s.comp.dirty.Load()
	cov, err := s.compliance.Coverage(ctx)
	if err != nil {
		return fmt.Errorf("judging the deployed agents against the policies: %w", err)
	}
	want := map[string]PolicyFlag{}
	for _, a := range cov.Agents {
		if !a.Allow {
			want[a.Agent] = PolicyFlag{Agent: a.Agent, Tenant: a.Tenant, Rule: a.Rule, Reason: a.Reason}
		}
	}
	if err := s.syncFlags(ctx, want, true); err != nil {
		return err
	}
	s.comp.lastSet, s.comp.lastSeen = set, seen
	return nil
}

// maybeCheckCompliance runs a check when the policies changed (a new
// Set) or an agent was admitted since the last one.
func (s *Service) maybeCheckCompliance(ctx context.Context) {
	if s.compliance == nil {
		return
	}
	s.comp.mu.Lock()
	defer s.comp.mu.Unlock()
	if s.compliance.Set() == s.comp.lastSet && s.comp.dirty.Load() == s.comp.lastSeen {
		return
	}
	if err := s.checkCompliance(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("agents: checking compliance", "err", err)
	}
}

// flagChange is one agent's flag set, changed or removed.
type flagChange struct {
	agent string
	flag  *PolicyFlag // nil: removed
}

// syncFlags writes want (agent → flag) and, when full, removes every flag
// not in it; in one transaction with an audit record per change, each
// published once committed. An agent gone or being deleted is skipped.
func (s *Service) syncFlags(ctx context.Context, want map[string]PolicyFlag, full bool) error {
	var changes []flagChange
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		changes = changes[:0]
		have, err := loadFlags(ctx, tx)
		if err != nil {
			return err
		}
		for _, id := range sortedFlagIDs(want) {
			f := want[id]
			f.Reason = oneLine(f.Reason, maxReason)
			if h, ok := have[id]; ok && h.Rule == f.Rule && h.Reason == f.Reason {
				continue
			}
			ok, err := s.setFlag(ctx, tx, f)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			changes = append(changes, flagChange{agent: id, flag: &f})
		}
		if !full {
			return nil
		}
		for _, id := range sortedFlagIDs(have) {
			if _, ok := want[id]; ok {
				continue
			}
			if err := s.clearFlag(ctx, tx, id); err != nil {
				return err
			}
			changes = append(changes, flagChange{agent: id})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording the agents' compliance: %w", err)
	}
	for _, c := range changes {
		s.publishPolicy(c.agent, c.flag)
	}
	return nil
}

// setFlag records f and its audit record; false when the agent is gone.
func (s *Service) setFlag(ctx context.Context, tx *sql.Tx, f PolicyFlag) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO agent_policy_flags (agent_id, rule, reason, flagged_at)
 SELECT id, ?, ?, ? FROM agents WHERE id = ? AND desired != 'deleted'
 ON CONFLICT (agent_id) DO UPDATE SET rule = excluded.rule, reason = excluded.reason`,
		f.Rule, f.Reason, store.FormatTime(s.now()), f.Agent)
	if err != nil {
		return false, fmt.Errorf("flagging %s: %w", quote(f.Agent), err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	return true, s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: SystemActor, Action: "agents.policy.non-compliant", Target: f.Agent,
		Detail: map[string]any{"tenant": f.Tenant, "rule": f.Rule, "reason": f.Reason}})
}

// clearFlag removes an agent's flag with its audit record.
func (s *Service) clearFlag(ctx context.Context, tx *sql.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM agent_policy_flags WHERE agent_id = ?", id); err != nil {
		return fmt.Errorf("clearing the flag of %s: %w", quote(id), err)
	}
	return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: SystemActor, Action: "agents.policy.compliant", Target: id})
}

// clearFlagOnAdmit removes the flag of an agent whose patch was just
// admitted (it passes now), in the patch's transaction; it reports
// whether there was one.
func clearFlagOnAdmit(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	res, err := tx.ExecContext(ctx, "DELETE FROM agent_policy_flags WHERE agent_id = ?", id)
	if err != nil {
		return false, fmt.Errorf("clearing the flag of %s: %w", quote(id), err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func loadFlags(ctx context.Context, q querier) (map[string]PolicyFlag, error) {
	out := map[string]PolicyFlag{}
	err := eachRow(ctx, q, func(rows *sql.Rows) error {
		var f PolicyFlag
		if err := rows.Scan(&f.Agent, &f.Rule, &f.Reason); err != nil {
			return err
		}
		out[f.Agent] = f
		return nil
	}, "SELECT agent_id, rule, reason FROM agent_policy_flags")
	if err != nil {
		return nil, fmt.Errorf("reading the policy flags: %w", err)
	}
	return out, nil
}

func sortedFlagIDs(m map[string]PolicyFlag) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (s *Service) publishPolicy(id string, f *PolicyFlag) {
	d := PolicyData{Compliant: true}
	if f != nil {
		d = PolicyData{Rule: f.Rule, Reason: f.Reason}
	}
	s.publish(Event{Type: EventAgentPolicy, Agent: id, Data: d})
}
