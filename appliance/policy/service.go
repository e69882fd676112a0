package policy

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the policy domain's tables (policies, policy_versions,
// policy_tenants, policy_scoped_users, policy_grants, policy_decisions) for
// store.WithSchemas. The Store given to New must be opened with it.
var Schema = store.Schema{Domain: "policy", Migrations: migrations}

// DefaultDecisionHistory is how many admission decisions are kept.
const DefaultDecisionHistory = 1000

// SystemActor is the actor of what the Service records on its own.
const SystemActor = "omertad"

// Options configure New.
type Options struct {
	Store   *store.Store   // opened with Schema; required
	Profile config.Profile // whose defaults are the bottom layer; "" is user
	Now     func() time.Time
	// Running returns the requests of the deployed agents (the agents
	// service's desired state, Op and Usage left zero). It gives Admit the
	// tenant's totals, Coverage its agents, and every change the agents
	// it makes non-compliant. nil: no agents are known.
	Running func(ctx context.Context) ([]Request, error)
	// MonthUsage returns a tenant's model use this calendar month (the
	// gateway's accounting). nil: none is known.
	MonthUsage func(ctx context.Context, tenant string) (tokens, usdMicros int64, err error)
	// DecisionHistory bounds the decisions kept; 0 is the default.
	DecisionHistory int
}

// Service is the policy domain: versioned policies, tenants and their
// quotas, operator scoping, admission and coverage. It is safe for
// concurrent use; Evaluate reads an immutable Set and takes no lock.
type Service struct {
	st  *store.Store
	o   Options
	set atomic.Pointer[Set]
	// mu serialises changes, so that the Sets swapped in after commits
	// follow the commits' order.
	mu sync.Mutex
	// admit serialises Admit, so that two deploys cannot both fit a quota
	// that only one fits.
	admit sync.Mutex
}

// New checks o and loads the current policies and tenants.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("policy: Options.Store is required")
	}
	if o.Profile == "" {
		o.Profile = config.ProfileUser
	}
	if _, err := config.ParseProfile(string(o.Profile)); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DecisionHistory <= 0 {
		o.DecisionHistory = DefaultDecisionHistory
	}
	s := &Service{st: o.Store, o: o}
	set, err := loadSet(ctx, s.st.Read(), o.Profile)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	s.set.Store(set)
	return s, nil
}

// Set is the current snapshot.
func (s *Service) Set() *Set { return s.set.Load() }

// Evaluate judges req against the current policies (see Evaluate).
func (s *Service) Evaluate(req Request) Decision { return Evaluate(s.Set(), req) }

// Effective is the policy an agent runs under now.
func (s *Service) Effective(agent, category, tenant string) *Effective {
	return s.Set().Effective(agent, category, tenant)
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// loadSet reads every live policy and every tenant.
func loadSet(ctx context.Context, q querier, profile config.Profile) (*Set, error) {
	ps, err := livePolicies(ctx, q)
	if err != nil {
		return nil, err
	}
	ts, err := loadTenants(ctx, q, "")
	if err != nil {
		return nil, err
	}
	return NewSet(profile, ps, ts), nil
}

// running is Options.Running, or none.
func (s *Service) running(ctx context.Context) ([]Request, error) {
	if s.o.Running == nil {
		return nil, nil
	}
	rs, err := s.o.Running(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the deployed agents: %w", err)
	}
	return rs, nil
}

// change runs fn in one transaction with its audit record: fn returns the
// record's detail, then the Set as it will be after the commit is built
// inside the same transaction, the running agents it breaks are added to
// the detail, and the Set is swapped in once the commit is durable.
func (s *Service) change(ctx context.Context, actor, action, target string, fn func(tx *sql.Tx) (record, error)) ([]Finding, error) {
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	running, err := s.running(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var next *Set
	var found []Finding
	err = s.st.Write(ctx, func(tx *sql.Tx) error {
		rec, err := fn(tx)
		if err != nil {
			return err
		}
		detail := rec.detail
		if detail == nil {
			detail = map[string]any{}
		}
		if rec.action != "" {
			action = rec.action
		}
		if next, err = loadSet(ctx, tx, s.o.Profile); err != nil {
			return err
		}
		found = NonCompliant(s.Set(), next, running)
		if len(found) > 0 {
			detail["non_compliant"] = findingIDs(found)
		}
		return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: actor, Action: action, Target: target, Detail: detail})
	})
	if err == nil || errors.Is(err, store.ErrAnchor) {
		// ErrAnchor: committed, the anchor file not written; the change
		// stands and the daemon reports the anchor.
		s.set.Store(next)
		return found, err
	}
	if errors.Is(err, errUnchanged) {
		return nil, err
	}
	return nil, s.refuse(ctx, actor, action, target, err)
}

// record is the audit record of a change: its action, when it is not the
// one change was called with, and its detail.
type record struct {
	action string
	detail map[string]any
}

// errUnchanged rolls back a change that would change nothing.
var errUnchanged = errors.New("unchanged")

// maxReason bounds a refusal's reason in the audit log.
const maxReason = 1024

// refuse records a refused change (invalid, stale, not found) in the
// audit log and returns cause; other errors are returned as they are.
func (s *Service) refuse(ctx context.Context, actor, action, target string, cause error) error {
	if !errors.Is(cause, ErrInvalid) && !errors.Is(cause, ErrConflict) && !errors.Is(cause, ErrNotFound) {
		return cause
	}
	reason := cause.Error()
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "")
	}
	err := s.st.Audit(context.WithoutCancel(ctx), store.AuditEntry{Actor: actor, Action: action, Target: target,
		Detail: map[string]any{"outcome": "refused", "reason": reason}})
	if err != nil {
		return errors.Join(cause, fmt.Errorf("recording the refusal in the audit log: %w", err))
	}
	return cause
}

func findingIDs(fs []Finding) []string {
	ids := make([]string, len(fs))
	for i, f := range fs {
		ids[i] = f.Agent
	}
	return ids
}

// maxActor bounds the actor recorded in the audit log.
const maxActor = 128

func checkActor(actor string) error {
	if actor == "" || len(actor) > maxActor || strings.ContainsFunc(actor, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalid("actor", manifest.CodeRequired, fmt.Sprintf("the audit log needs who asks: 1 to %d printable characters", maxActor))
	}
	return nil
}

// decodeStored reads JSON this package wrote, strictly: a column that no
// longer decodes is a damaged database, not a default.
func decodeStored(table, column, text string, v any) error {
	d := json.NewDecoder(strings.NewReader(text))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%s.%s: %w", table, column, err)
	}
	return nil
}
