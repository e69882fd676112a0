package policy

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/store"
)

// DecisionRecord is a recorded admission decision.
type DecisionRecord struct {
	ID       int64     `json:"id"`
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"`
	Op       Op        `json:"op"`
	Agent    string    `json:"agent"`
	Tenant   string    `json:"tenant"`
	Decision Decision  `json:"decision"`
	Request  Request   `json:"request"`
}

// decisionDetail is the detail column: what the table's columns do not
// hold.
type decisionDetail struct {
	Denials  []Denial `json:"denials,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Applied  []string `json:"applied"`
	Explicit bool     `json:"explicit"`
	Request  Request  `json:"request"`
}

// Record stores a decision (the latest DecisionHistory are kept) and, for
// a denial, appends "policy.admission.denied" to the audit log in the same
// transaction. Allowed deploys are audited by the agents service, which
// does the deploy.
func (s *Service) Record(ctx context.Context, actor string, req Request, d Decision) (int64, error) {
	if err := checkActor(actor); err != nil {
		return 0, err
	}
	req.Tenant = tenantOf(req.Tenant)
	op := req.Op
	if op != OpPatch && op != OpCheck {
		op = OpDeploy
	}
	detail, err := json.Marshal(decisionDetail{Denials: d.Denials, Warnings: d.Warnings, Applied: d.Applied, Explicit: d.Explicit, Request: req})
	if err != nil {
		return 0, fmt.Errorf("encoding the decision on %s: %w", quote(req.Agent), err)
	}
	var id int64
	err = s.st.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO policy_decisions (at, actor, op, agent_id, tenant, allow, rule, reason, detail)
 VALUES (?,?,?,?,?,?,?,?,?)`, store.FormatTime(s.o.Now()), actor, string(op), req.Agent, req.Tenant, d.Allow, d.Rule, d.Reason, string(detail))
		if err != nil {
			return fmt.Errorf("recording the decision on %s: %w", quote(req.Agent), err)
		}
		if id, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("recording the decision on %s: %w", quote(req.Agent), err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM policy_decisions WHERE id <= ?", id-int64(s.o.DecisionHistory)); err != nil {
			return fmt.Errorf("trimming the decision history: %w", err)
		}
		if d.Allow {
			return nil
		}
		return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: actor, Action: "policy.admission.denied", Target: "agent/" + req.Agent,
			Detail: map[string]any{"op": op, "tenant": req.Tenant, "rule": d.Rule, "reason": d.Reason, "decision": id}})
	})
	return id, err
}

// DecisionQuery selects recorded decisions; zero values select all.
type DecisionQuery struct {
	Agent      string
	Tenant     string
	DeniedOnly bool
	Before     int64 // ids below this one (paging); 0: the newest
	Limit      int   // at most this many (default and maximum 200)
}

// Decisions returns recorded decisions, newest first.
func (s *Service) Decisions(ctx context.Context, dq DecisionQuery) ([]DecisionRecord, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where, args = append(where, cond), append(args, v) }
	if dq.Agent != "" {
		add("agent_id = ?", dq.Agent)
	}
	if dq.Tenant != "" {
		add("tenant = ?", dq.Tenant)
	}
	if dq.DeniedOnly {
		add("allow = ?", 0)
	}
	if dq.Before > 0 {
		add("id < ?", dq.Before)
	}
	if dq.Limit <= 0 || dq.Limit > 200 {
		dq.Limit = 200
	}
	q := "SELECT id, at, actor, op, agent_id, tenant, allow, rule, reason, detail FROM policy_decisions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.st.Read().QueryContext(ctx, q+" ORDER BY id DESC LIMIT ?", append(args, dq.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("reading decisions: %w", err)
	}
	defer rows.Close()
	var out []DecisionRecord
	for rows.Next() {
		r, err := scanDecision(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func scanDecision(rows *sql.Rows) (DecisionRecord, error) {
	var r DecisionRecord
	var at, op, detail string
	if err := rows.Scan(&r.ID, &at, &r.Actor, &op, &r.Agent, &r.Tenant, &r.Decision.Allow, &r.Decision.Rule, &r.Decision.Reason, &detail); err != nil {
		return r, fmt.Errorf("reading decisions: %w", err)
	}
	r.Op = Op(op)
	var err error
	if r.At, err = store.ParseTime("policy_decisions", "at", at); err != nil {
		return r, err
	}
	var d decisionDetail
	if err := decodeStored("policy_decisions", "detail", detail, &d); err != nil {
		return r, fmt.Errorf("decision %d: %w", r.ID, err)
	}
	r.Decision.Denials, r.Decision.Warnings, r.Decision.Applied, r.Decision.Explicit = d.Denials, d.Warnings, d.Applied, d.Explicit
	r.Request = d.Request
	return r, nil
}

// Admit is what the agents service calls at deploy and patch: it fills
// req.Usage from Options.Running (the tenant's other agents) and
// Options.MonthUsage, evaluates, records the decision and, when allowed,
// runs commit (the agents service's own transaction) before another
// admission can start, so that two deploys cannot both take the last of a
// quota. A denial returns the Decision and a *DeniedError (ErrDenied);
// commit's error is returned as it is.
func (s *Service) Admit(ctx context.Context, actor string, req Request, commit func(Decision) error) (Decision, error) {
	if err := checkActor(actor); err != nil {
		return Decision{}, err
	}
	if err := checkRequest(&req); err != nil {
		return Decision{}, err
	}
	s.admit.Lock()
	defer s.admit.Unlock()
	if err := s.fillUsage(ctx, &req); err != nil {
		return Decision{}, err
	}
	d := Evaluate(s.Set(), req)
	if _, err := s.Record(ctx, actor, req, d); err != nil {
		return d, err
	}
	if !d.Allow {
		return d, &DeniedError{Decision: d}
	}
	if commit != nil {
		return d, commit(d)
	}
	return d, nil
}

func (s *Service) fillUsage(ctx context.Context, req *Request) error {
	req.Tenant = tenantOf(req.Tenant)
	if s.o.Running != nil {
		running, err := s.running(ctx)
		if err != nil {
			return err
		}
		req.Usage = SumUsage(running, req.Tenant, req.Agent)
	}
	if s.o.MonthUsage != nil {
		tokens, usd, err := s.o.MonthUsage(ctx, req.Tenant)
		if err != nil {
			return fmt.Errorf("reading the model use of tenant %s: %w", quote(req.Tenant), err)
		}
		req.Usage.TokensMonth, req.Usage.USDMicrosMonth = tokens, usd
	}
	return nil
}

// checkRequest refuses a request that cannot be judged (no agent, an
// operation that is not one), rather than judging it.
func checkRequest(r *Request) error {
	switch r.Op {
	case OpDeploy, OpPatch, OpCheck:
	default:
		return invalid("op", manifest.CodeInvalid, fmt.Sprintf("%s is not deploy, patch or check", quote(string(r.Op))))
	}
	if !labelRe.MatchString(r.Agent) {
		return invalid("agent", manifest.CodeInvalid, fmt.Sprintf("%s is not an agent id", quote(r.Agent)))
	}
	return nil
}

// Coverage judges every deployed agent (Options.Running) against the
// current policies: the policy coverage KPI and each agent's status.
func (s *Service) Coverage(ctx context.Context) (Coverage, error) {
	running, err := s.running(ctx)
	if err != nil {
		return Coverage{}, err
	}
	return ComputeCoverage(s.Set(), running), nil
}

// Impact returns the deployed agents that doc would make non-compliant,
// without storing it: the console shows them before the admin saves.
func (s *Service) Impact(ctx context.Context, doc *Document) ([]Finding, error) {
	doc, err := recheck(doc)
	if err != nil {
		return nil, err
	}
	running, err := s.running(ctx)
	if err != nil {
		return nil, err
	}
	cur := s.Set()
	v := int64(1)
	if p, ok := cur.Policy(doc.Subject); ok {
		v = p.Version + 1
	}
	next := cur.WithPolicy(Policy{Subject: doc.Subject, Version: v, Description: doc.Description, Spec: doc.Spec})
	return NonCompliant(cur, next, running), nil
}
