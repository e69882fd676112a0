package policy

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/store"
)

// TenantChange is the outcome of a change to a tenant.
type TenantChange struct {
	Tenant       Tenant    `json:"tenant"`
	Created      bool      `json:"created,omitempty"`
	Unchanged    bool      `json:"unchanged,omitempty"`
	NonCompliant []Finding `json:"nonCompliant,omitempty"`
}

const selectTenants = "SELECT name, description, quotas, created_at, updated_at, updated_by FROM policy_tenants"

func loadTenants(ctx context.Context, q querier, name string) ([]Tenant, error) {
	query, args := selectTenants+" ORDER BY name", []any(nil)
	if name != "" {
		query, args = selectTenants+" WHERE name = ?", []any{name}
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("reading tenants: %w", err)
	}
	defer rows.Close()
	var out []Tenant
	for rows.Next() {
		var t Tenant
		var quotas, created, updated string
		if err := rows.Scan(&t.Name, &t.Description, &quotas, &created, &updated, &t.UpdatedBy); err != nil {
			return nil, fmt.Errorf("reading tenants: %w", err)
		}
		if err := decodeStored("policy_tenants", "quotas", quotas, &t.Quotas); err != nil {
			return nil, fmt.Errorf("tenant %s: %w", quote(t.Name), err)
		}
		if t.CreatedAt, err = store.ParseTime("policy_tenants", "created_at", created); err != nil {
			return nil, err
		}
		if t.UpdatedAt, err = store.ParseTime("policy_tenants", "updated_at", updated); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Tenants returns every tenant, by name. The API filters them with the
// caller's Scope.
func (s *Service) Tenants(ctx context.Context) ([]Tenant, error) {
	return loadTenants(ctx, s.st.Read(), "")
}

// Tenant returns one tenant.
func (s *Service) Tenant(ctx context.Context, name string) (Tenant, error) {
	ts, err := loadTenants(ctx, s.st.Read(), name)
	if err != nil {
		return Tenant{}, err
	}
	if len(ts) == 0 {
		return Tenant{}, fmt.Errorf("tenant %s: %w", quote(name), ErrNotFound)
	}
	return ts[0], nil
}

// PutTenant creates a tenant or replaces its description and quotas. The
// document is checked again as ParseTenant checks it.
func (s *Service) PutTenant(ctx context.Context, actor string, doc *TenantDocument) (TenantChange, error) {
	if doc == nil {
		return TenantChange{}, invalid("", manifest.CodeRequired, "a tenant document is required")
	}
	d := *doc
	d.APIVersion, d.Kind = APIVersion, KindTenant
	data, err := json.Marshal(&d)
	if err == nil {
		doc, err = ParseTenant(data)
	}
	if err != nil {
		return TenantChange{}, s.refuse(ctx, actor, "policy.tenant.put", "", err)
	}
	var out TenantChange
	quotas, _ := json.Marshal(doc.Quotas)
	target := "tenant/" + doc.Name
	found, err := s.change(ctx, actor, "policy.tenant.put", target, func(tx *sql.Tx) (record, error) {
		old, err := loadTenants(ctx, tx, doc.Name)
		if err != nil {
			return record{}, err
		}
		now := s.o.Now().UTC()
		out.Tenant = Tenant{Name: doc.Name, Description: doc.Description, Quotas: doc.Quotas, CreatedAt: now, UpdatedAt: now, UpdatedBy: actor}
		if len(old) == 1 {
			if old[0].Description == doc.Description && reflect.DeepEqual(old[0].Quotas, doc.Quotas) {
				out = TenantChange{Tenant: old[0], Unchanged: true}
				return record{}, errUnchanged
			}
			out.Tenant.CreatedAt = old[0].CreatedAt
			_, err = tx.ExecContext(ctx, "UPDATE policy_tenants SET description = ?, quotas = ?, updated_at = ?, updated_by = ? WHERE name = ?",
				doc.Description, string(quotas), store.FormatTime(now), actor, doc.Name)
		} else {
			out.Created = true
			_, err = tx.ExecContext(ctx, "INSERT INTO policy_tenants (name, description, quotas, created_at, updated_at, updated_by) VALUES (?,?,?,?,?,?)",
				doc.Name, doc.Description, string(quotas), store.FormatTime(now), store.FormatTime(now), actor)
		}
		if err != nil {
			return record{}, fmt.Errorf("writing tenant %s: %w", quote(doc.Name), err)
		}
		action := "policy.tenant.update"
		if out.Created {
			action = "policy.tenant.create"
		}
		return record{action: action, detail: map[string]any{"quotas": doc.Quotas, "description": doc.Description}}, nil
	})
	if errors.Is(err, errUnchanged) {
		return out, nil
	}
	out.NonCompliant = found
	return out, err
}

// DeleteTenant removes a tenant and the grants of it. The default tenant,
// a tenant with deployed agents and a tenant with a live policy of its
// own are refused with ErrConflict.
func (s *Service) DeleteTenant(ctx context.Context, actor, name string) error {
	const action = "policy.tenant.delete"
	target := "tenant/" + name
	if name == DefaultTenant {
		return s.refuse(ctx, actor, action, target, fmt.Errorf("the default tenant cannot be deleted: %w", ErrConflict))
	}
	// Holding the admission lock keeps a deploy into the tenant from
	// landing between the count below and the deletion.
	s.admit.Lock()
	defer s.admit.Unlock()
	running, err := s.running(ctx)
	if err != nil {
		return err
	}
	if u := SumUsage(running, name, ""); u.Agents > 0 {
		return s.refuse(ctx, actor, action, target, fmt.Errorf("tenant %s has %d deployed agents: %w", quote(name), u.Agents, ErrConflict))
	}
	_, err = s.change(ctx, actor, action, target, func(tx *sql.Tx) (record, error) {
		c, ok, err := loadCurrent(ctx, tx, Subject{SubjectTenant, name})
		if err != nil {
			return record{}, err
		}
		if ok && !c.deleted {
			return record{}, fmt.Errorf("tenant %s has a policy; delete it first: %w", quote(name), ErrConflict)
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM policy_tenants WHERE name = ?", name)
		if err != nil {
			return record{}, fmt.Errorf("deleting tenant %s: %w", quote(name), err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return record{}, fmt.Errorf("tenant %s: %w", quote(name), ErrNotFound)
		}
		return record{}, nil
	})
	return err
}
