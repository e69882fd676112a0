package policy

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/store"
)

// Change is the outcome of a change to a policy.
type Change struct {
	// Policy is the policy as it now is; after a deletion, its subject
	// and the deletion's version, with no rules.
	Policy Policy `json:"policy"`
	Action Action `json:"action"`
	// Unchanged: the document equals the current version; no version
	// was made and nothing was recorded.
	Unchanged bool `json:"unchanged,omitempty"`
	// NonCompliant are the running agents that passed before the change
	// and fail after it.
	NonCompliant []Finding `json:"nonCompliant,omitempty"`
}

// current is a policy's row.
type current struct {
	id      int64
	version int64
	deleted bool
	spec    *Spec
	desc    string
}

func loadCurrent(ctx context.Context, q querier, sub Subject) (current, bool, error) {
	var c current
	var spec sql.NullString
	err := q.QueryRowContext(ctx, `SELECT p.id, p.version, p.deleted, v.spec, v.description FROM policies p
 JOIN policy_versions v ON v.policy_id = p.id AND v.version = p.version WHERE p.subject_kind = ? AND p.subject_name = ?`,
		string(sub.Kind), sub.Name).Scan(&c.id, &c.version, &c.deleted, &spec, &c.desc)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("reading the policy for %s: %w", sub, err)
	}
	if spec.Valid {
		c.spec = new(Spec)
		if err := decodeStored("policy_versions", "spec", spec.String, c.spec); err != nil {
			return c, false, fmt.Errorf("the policy for %s: %w", sub, err)
		}
	}
	return c, true, nil
}

// Put stores doc as the new version of its subject's policy, creating the
// policy when there is none (or it was deleted). With ifVersion > 0 the
// change is refused (ErrConflict) unless that is the current version. The
// document is checked again as Parse checks it, so a caller may build one
// in code.
func (s *Service) Put(ctx context.Context, actor string, doc *Document, ifVersion int64) (Change, error) {
	if doc == nil {
		return Change{}, invalid("", manifest.CodeRequired, "a policy document is required")
	}
	doc, err := recheck(doc)
	if err != nil {
		return Change{}, s.refuse(ctx, actor, "policy.put", "", err)
	}
	sub := doc.Subject
	var out Change
	text, _ := json.Marshal(doc.Spec)
	found, err := s.change(ctx, actor, "policy.put", sub.String(), func(tx *sql.Tx) (record, error) {
		c, exists, err := loadCurrent(ctx, tx, sub)
		if err != nil {
			return record{}, err
		}
		if err := checkIfVersion(sub, c.version, ifVersion); err != nil {
			return record{}, err
		}
		live := exists && !c.deleted
		if live && c.desc == doc.Description && reflect.DeepEqual(c.spec, &doc.Spec) {
			out = Change{Policy: s.policyOf(sub, c.version, doc), Action: ActionUpdate, Unchanged: true}
			return record{}, errUnchanged
		}
		out.Action = ActionCreate
		if live {
			out.Action = ActionUpdate
		}
		v, err := s.addVersion(ctx, tx, sub, c, exists, versionRow{action: out.Action, spec: string(text), desc: doc.Description, actor: actor})
		if err != nil {
			return record{}, err
		}
		out.Policy = s.policyOf(sub, v, doc)
		out.Policy.UpdatedBy = actor
		return record{action: "policy." + string(out.Action), detail: map[string]any{"version": v, "changed": changedFields(c.spec, &doc.Spec)}}, nil
	})
	if errors.Is(err, errUnchanged) {
		return out, nil
	}
	out.NonCompliant = found
	return out, err
}

func (s *Service) policyOf(sub Subject, v int64, doc *Document) Policy {
	return Policy{Subject: sub, Version: v, Description: doc.Description, Spec: doc.Spec, UpdatedAt: s.o.Now().UTC()}
}

// recheck runs doc through Parse, so that what is stored is what Parse
// accepts, normalised.
func recheck(doc *Document) (*Document, error) {
	d := *doc
	d.APIVersion, d.Kind = APIVersion, KindPolicy
	data, err := json.Marshal(&d)
	if err != nil {
		return nil, invalid("", manifest.CodeInvalid, "cannot be encoded")
	}
	return Parse(data)
}

func checkIfVersion(sub Subject, cur, want int64) error {
	if want > 0 && cur != want {
		return fmt.Errorf("the policy for %s is at version %d, not %d: %w", sub, cur, want, ErrConflict)
	}
	return nil
}

// versionRow is a version to add.
type versionRow struct {
	action Action
	from   int64
	spec   string // "" for a deletion
	desc   string
	actor  string
}

// addVersion appends a version and points the policy at it.
func (s *Service) addVersion(ctx context.Context, tx *sql.Tx, sub Subject, c current, exists bool, r versionRow) (int64, error) {
	now := store.FormatTime(s.o.Now())
	deleted := r.action == ActionDelete
	if !exists {
		res, err := tx.ExecContext(ctx, "INSERT INTO policies (subject_kind, subject_name, version, created_at, updated_at) VALUES (?,?,?,?,?)",
			string(sub.Kind), sub.Name, 1, now, now)
		if err != nil {
			return 0, fmt.Errorf("creating the policy for %s: %w", sub, err)
		}
		if c.id, err = res.LastInsertId(); err != nil {
			return 0, fmt.Errorf("creating the policy for %s: %w", sub, err)
		}
	}
	v := c.version + 1
	var spec, from any
	if !deleted {
		spec = r.spec
	}
	if r.from > 0 {
		from = r.from
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO policy_versions (policy_id, version, action, from_version, description, spec, actor, created_at)
 VALUES (?,?,?,?,?,?,?,?)`, c.id, v, string(r.action), from, r.desc, spec, r.actor, now); err != nil {
		return 0, fmt.Errorf("writing version %d of the policy for %s: %w", v, sub, err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE policies SET version = ?, deleted = ?, updated_at = ? WHERE id = ?", v, deleted, now, c.id); err != nil {
		return 0, fmt.Errorf("writing the policy for %s: %w", sub, err)
	}
	return v, nil
}

// Rollback makes a new version of sub's policy equal to version to (its
// rules and description), recorded as a rollback from it. A policy that
// was deleted comes back this way.
func (s *Service) Rollback(ctx context.Context, actor string, sub Subject, to, ifVersion int64) (Change, error) {
	sub = normSubject(sub)
	var out Change
	found, err := s.change(ctx, actor, "policy.rollback", sub.String(), func(tx *sql.Tx) (record, error) {
		c, exists, err := loadCurrent(ctx, tx, sub)
		if err != nil {
			return record{}, err
		}
		if !exists {
			return record{}, fmt.Errorf("no policy for %s: %w", sub, ErrNotFound)
		}
		if err := checkIfVersion(sub, c.version, ifVersion); err != nil {
			return record{}, err
		}
		old, err := loadVersion(ctx, tx, c.id, sub, to)
		if err != nil {
			return record{}, err
		}
		if old.Spec == nil {
			return record{}, invalid("version", manifest.CodeInvalid, fmt.Sprintf("version %d of the policy for %s is a deletion; delete the policy instead", to, sub))
		}
		if to == c.version {
			return record{}, invalid("version", manifest.CodeInvalid, fmt.Sprintf("version %d is the current version of the policy for %s", to, sub))
		}
		text, _ := json.Marshal(old.Spec)
		v, err := s.addVersion(ctx, tx, sub, c, true, versionRow{action: ActionRollback, from: to, spec: string(text), desc: old.Description, actor: actor})
		if err != nil {
			return record{}, err
		}
		out = Change{Action: ActionRollback, Policy: Policy{Subject: sub, Version: v, Description: old.Description, Spec: *old.Spec,
			UpdatedAt: s.o.Now().UTC(), UpdatedBy: actor}}
		return record{detail: map[string]any{"version": v, "from_version": to, "changed": changedFields(c.spec, old.Spec)}}, nil
	})
	out.NonCompliant = found
	return out, err
}

// Delete ends sub's policy: a version without rules is added (the history
// stays, and Rollback can bring an earlier version back).
func (s *Service) Delete(ctx context.Context, actor string, sub Subject, ifVersion int64) (Change, error) {
	sub = normSubject(sub)
	var out Change
	found, err := s.change(ctx, actor, "policy.delete", sub.String(), func(tx *sql.Tx) (record, error) {
		c, exists, err := loadCurrent(ctx, tx, sub)
		if err != nil {
			return record{}, err
		}
		if !exists || c.deleted {
			return record{}, fmt.Errorf("no policy for %s: %w", sub, ErrNotFound)
		}
		if err := checkIfVersion(sub, c.version, ifVersion); err != nil {
			return record{}, err
		}
		v, err := s.addVersion(ctx, tx, sub, c, true, versionRow{action: ActionDelete, actor: actor})
		if err != nil {
			return record{}, err
		}
		out = Change{Action: ActionDelete, Policy: Policy{Subject: sub, Version: v, UpdatedAt: s.o.Now().UTC(), UpdatedBy: actor}}
		return record{detail: map[string]any{"version": v}}, nil
	})
	out.NonCompliant = found
	return out, err
}

const selectVersion = `SELECT v.version, v.action, v.from_version, v.description, v.spec, v.actor, v.created_at FROM policy_versions v`

func scanVersion(sc interface{ Scan(...any) error }, sub Subject) (Version, error) {
	var v Version
	var from sql.NullInt64
	var spec sql.NullString
	var action, at string
	if err := sc.Scan(&v.Version, &action, &from, &v.Description, &spec, &v.Actor, &at); err != nil {
		return v, err
	}
	v.Subject, v.Action, v.FromVersion = sub, Action(action), from.Int64
	var err error
	if v.At, err = store.ParseTime("policy_versions", "created_at", at); err != nil {
		return v, err
	}
	if spec.Valid {
		v.Spec = new(Spec)
		if err := decodeStored("policy_versions", "spec", spec.String, v.Spec); err != nil {
			return v, fmt.Errorf("version %d of the policy for %s: %w", v.Version, sub, err)
		}
	}
	return v, nil
}

func loadVersion(ctx context.Context, q querier, id int64, sub Subject, version int64) (Version, error) {
	v, err := scanVersion(q.QueryRowContext(ctx, selectVersion+" WHERE v.policy_id = ? AND v.version = ?", id, version), sub)
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("the policy for %s has no version %d: %w", sub, version, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("reading version %d of the policy for %s: %w", version, sub, err)
	}
	return v, nil
}

// Get returns the live policy for sub.
func (s *Service) Get(ctx context.Context, sub Subject) (Policy, error) {
	sub = normSubject(sub)
	ps, err := queryPolicies(ctx, s.st.Read(), "AND p.subject_kind = ? AND p.subject_name = ?", string(sub.Kind), sub.Name)
	if err != nil {
		return Policy{}, err
	}
	if len(ps) == 0 {
		return Policy{}, fmt.Errorf("no policy for %s: %w", sub, ErrNotFound)
	}
	return ps[0], nil
}

// List returns every live policy, by subject.
func (s *Service) List(ctx context.Context) ([]Policy, error) { return livePolicies(ctx, s.st.Read()) }

func livePolicies(ctx context.Context, q querier) ([]Policy, error) { return queryPolicies(ctx, q, "") }

func queryPolicies(ctx context.Context, q querier, where string, args ...any) ([]Policy, error) {
	rows, err := q.QueryContext(ctx, `SELECT p.subject_kind, p.subject_name, p.version, v.description, v.spec, v.actor, v.created_at
 FROM policies p JOIN policy_versions v ON v.policy_id = p.id AND v.version = p.version WHERE p.deleted = 0 `+where+
		" ORDER BY p.subject_kind, p.subject_name", args...)
	if err != nil {
		return nil, fmt.Errorf("reading policies: %w", err)
	}
	defer rows.Close()
	var out []Policy
	for rows.Next() {
		var p Policy
		var kind, spec, at string
		if err := rows.Scan(&kind, &p.Subject.Name, &p.Version, &p.Description, &spec, &p.UpdatedBy, &at); err != nil {
			return nil, fmt.Errorf("reading policies: %w", err)
		}
		p.Subject.Kind = SubjectKind(kind)
		if err := decodeStored("policy_versions", "spec", spec, &p.Spec); err != nil {
			return nil, fmt.Errorf("the policy for %s: %w", p.Subject, err)
		}
		if p.UpdatedAt, err = store.ParseTime("policy_versions", "created_at", at); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// MaxHistory bounds one History call.
const MaxHistory = 1000

// History returns sub's versions, newest first: at most limit (0 or more
// than MaxHistory is MaxHistory), older than before when before > 0.
func (s *Service) History(ctx context.Context, sub Subject, before int64, limit int) ([]Version, error) {
	sub = normSubject(sub)
	if limit <= 0 || limit > MaxHistory {
		limit = MaxHistory
	}
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := s.st.Read().QueryContext(ctx, selectVersion+` JOIN policies p ON p.id = v.policy_id
 WHERE p.subject_kind = ? AND p.subject_name = ? AND v.version < ? ORDER BY v.version DESC LIMIT ?`, string(sub.Kind), sub.Name, before, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", sub, err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		v, err := scanVersion(rows, sub)
		if err != nil {
			return nil, fmt.Errorf("reading the history of %s: %w", sub, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", sub, err)
	}
	if len(out) == 0 {
		if _, ok, err := loadCurrent(ctx, s.st.Read(), sub); err != nil || !ok {
			return nil, errors.Join(err, fmt.Errorf("no policy for %s: %w", sub, ErrNotFound))
		}
	}
	return out, nil
}

// Version returns one version of sub's policy.
func (s *Service) Version(ctx context.Context, sub Subject, version int64) (Version, error) {
	sub = normSubject(sub)
	c, ok, err := loadCurrent(ctx, s.st.Read(), sub)
	if err != nil {
		return Version{}, err
	}
	if !ok {
		return Version{}, fmt.Errorf("no policy for %s: %w", sub, ErrNotFound)
	}
	return loadVersion(ctx, s.st.Read(), c.id, sub, version)
}

func normSubject(sub Subject) Subject {
	if sub.Kind == SubjectCategory {
		sub.Name = normCategory(sub.Name)
	}
	return sub
}

// changedFields lists the rules that differ between two specs, as field
// paths ("spec.max.memory"), for the audit record.
func changedFields(before, after *Spec) []string {
	a, b := map[string]string{}, map[string]string{}
	flatten("spec", toTree(before), a)
	flatten("spec", toTree(after), b)
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func toTree(s *Spec) any {
	if s == nil {
		return nil
	}
	data, _ := json.Marshal(s)
	var v any
	_ = json.Unmarshal(data, &v)
	return v
}

// flatten writes each leaf of v (lists are leaves) under its path.
func flatten(path string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok {
		for k, e := range m {
			flatten(path+"."+k, e, out)
		}
		return
	}
	if v == nil {
		return
	}
	data, _ := json.Marshal(v)
	out[path] = string(data)
}
