package policy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/store"
)

// Scope is which tenants a user may see. A user with no restriction
// recorded sees every tenant; a restricted user sees only the tenants
// granted, and nothing of the others: the API answers 404 for them, as
// for what does not exist, so that their names do not leak.
type Scope struct {
	User       string   `json:"user"`
	Restricted bool     `json:"restricted"`
	Tenants    []string `json:"tenants,omitempty"` // sorted; only when Restricted
}

// Sees reports whether the user may see tenant ("" is DefaultTenant).
func (sc Scope) Sees(tenant string) bool {
	if !sc.Restricted {
		return true
	}
	_, ok := slices.BinarySearch(sc.Tenants, tenantOf(tenant))
	return ok
}

// Check returns nil when the user may see tenant, and an error wrapping
// ErrNotFound (never a "forbidden") when not.
func (sc Scope) Check(tenant string) error {
	if sc.Sees(tenant) {
		return nil
	}
	return fmt.Errorf("tenant %s: %w", quote(tenantOf(tenant)), ErrNotFound)
}

// maxUser bounds a username (auth's are shorter).
const maxUser = 128

func checkUser(user string) error {
	if user == "" || len(user) > maxUser || strings.ContainsFunc(user, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return invalid("user", manifest.CodeInvalid, fmt.Sprintf("a username has 1 to %d printable characters without spaces", maxUser))
	}
	return nil
}

// Scope returns which tenants user may see. The API gives admins an
// unrestricted Scope without asking: restrictions are for operators.
func (s *Service) Scope(ctx context.Context, user string) (Scope, error) {
	return loadScope(ctx, s.st.Read(), user)
}

func loadScope(ctx context.Context, q querier, user string) (Scope, error) {
	sc := Scope{User: user}
	var one int
	err := q.QueryRowContext(ctx, "SELECT 1 FROM policy_scoped_users WHERE username = ?", user).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return sc, nil
	}
	if err != nil {
		return sc, fmt.Errorf("reading the scope of %s: %w", quote(user), err)
	}
	sc.Restricted, sc.Tenants = true, []string{}
	rows, err := q.QueryContext(ctx, "SELECT tenant FROM policy_grants WHERE username = ? ORDER BY tenant", user)
	if err != nil {
		return sc, fmt.Errorf("reading the scope of %s: %w", quote(user), err)
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return sc, fmt.Errorf("reading the scope of %s: %w", quote(user), err)
		}
		sc.Tenants = append(sc.Tenants, t)
	}
	return sc, rows.Err()
}

// Visible returns nil when user may see tenant, an error wrapping
// ErrNotFound when not (or when the tenant does not exist).
func (s *Service) Visible(ctx context.Context, user, tenant string) error {
	sc, err := s.Scope(ctx, user)
	if err != nil {
		return err
	}
	if err := sc.Check(tenant); err != nil {
		return err
	}
	if _, ok := s.Set().tenants[tenantOf(tenant)]; !ok {
		return fmt.Errorf("tenant %s: %w", quote(tenantOf(tenant)), ErrNotFound)
	}
	return nil
}

// SetScope restricts user to tenants (restricted true; an empty list
// means no tenant at all) or lifts every restriction (restricted false,
// tenants ignored). Each tenant must exist.
func (s *Service) SetScope(ctx context.Context, actor, user string, restricted bool, tenants []string) (Scope, error) {
	const action = "policy.scope.set"
	if err := checkUser(user); err != nil {
		return Scope{}, s.refuse(ctx, actor, action, "", err)
	}
	target := "user/" + user
	if len(tenants) > maxList {
		return Scope{}, s.refuse(ctx, actor, action, target, invalid("tenants", manifest.CodeTooMany, fmt.Sprintf("%d tenants; at most %d", len(tenants), maxList)))
	}
	want := slices.Clone(tenants)
	if !restricted {
		want = nil
	}
	slices.Sort(want)
	want = append([]string{}, slices.Compact(want)...)
	var out Scope
	_, err := s.change(ctx, actor, action, target, func(tx *sql.Tx) (record, error) {
		for i, t := range want {
			if _, ok := s.Set().tenants[t]; !ok {
				return record{}, invalid(manifest.Index("tenants", i), manifest.CodeInvalid, fmt.Sprintf("no tenant %s", quote(t)))
			}
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM policy_scoped_users WHERE username = ?", user); err != nil {
			return record{}, fmt.Errorf("writing the scope of %s: %w", quote(user), err)
		}
		out = Scope{User: user}
		if !restricted {
			return record{detail: map[string]any{"restricted": false}}, nil
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO policy_scoped_users (username, updated_by, updated_at) VALUES (?,?,?)",
			user, actor, store.FormatTime(s.o.Now())); err != nil {
			return record{}, fmt.Errorf("writing the scope of %s: %w", quote(user), err)
		}
		for _, t := range want {
			if _, err := tx.ExecContext(ctx, "INSERT INTO policy_grants (username, tenant) VALUES (?,?)", user, t); err != nil {
				return record{}, fmt.Errorf("granting %s to %s: %w", quote(t), quote(user), err)
			}
		}
		out = Scope{User: user, Restricted: true, Tenants: want}
		return record{detail: map[string]any{"restricted": true, "tenants": want}}, nil
	})
	return out, err
}
