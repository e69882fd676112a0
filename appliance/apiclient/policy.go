package apiclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// DeniedError is a 403 that carries an admission decision: a deploy,
// patch or task the policy or the tenant's quota refused. Decision names
// the rule that decided and the reason, with the numbers. A 403 without a
// decision (a role that may not) stays an *Error. errors.As(err,
// new(*Error)) holds for it too.
type DeniedError struct {
	Err      *Error
	Decision apitype.PolicyDecision
}

func (e *DeniedError) Error() string { return e.Err.Error() }

// Unwrap makes errors.As(err, &*Error) find the 403.
func (e *DeniedError) Unwrap() error { return e.Err }

// maxDenials bounds the denials kept from an answer.
const maxDenials = 64

// policyError is the typed error of an answer about policy: a 403 with a
// decision, or a 429 (when its headers are known) with its Retry-After;
// nil for any other.
func policyError(e *Error, hdr http.Header, data []byte) error {
	switch e.Status {
	case http.StatusForbidden:
		var d apitype.Denied
		if json.Unmarshal(data, &d) != nil || (d.Decision.Rule == "" && len(d.Decision.Denials) == 0) {
			return nil
		}
		if len(d.Decision.Denials) > maxDenials {
			d.Decision.Denials = d.Decision.Denials[:maxDenials]
		}
		return &DeniedError{Err: e, Decision: d.Decision}
	case http.StatusTooManyRequests:
		if hdr == nil {
			return nil
		}
		secs, _ := strconv.Atoi(hdr.Get("Retry-After"))
		secs = min(max(secs, 1), int(maxRetryAfter/time.Second))
		return &RateLimitedError{Err: e, RetryAfter: time.Duration(secs) * time.Second}
	}
	return nil
}

func policyPath(kind, name string) string {
	return "/api/v1/policies/" + esc(kind) + "/" + esc(name)
}

// ifMatch is the If-Match header of a change that expects version v; nil
// when v is 0 (no check).
func ifMatch(v int64) http.Header {
	if v <= 0 {
		return nil
	}
	return http.Header{"If-Match": {strconv.Quote(strconv.FormatInt(v, 10))}}
}

// Policies calls GET /api/v1/policies.
func (c *Client) Policies(ctx context.Context) (apitype.PolicyList, error) {
	var v apitype.PolicyList
	return v, c.send(ctx, http.MethodGet, "/api/v1/policies", nil, &v)
}

// Policy calls GET /api/v1/policies/{kind}/{name}.
func (c *Client) Policy(ctx context.Context, kind, name string) (apitype.PolicyView, error) {
	var v apitype.PolicyView
	return v, c.send(ctx, http.MethodGet, policyPath(kind, name), nil, &v)
}

// PutPolicy calls PUT /api/v1/policies/{kind}/{name} with the document
// (YAML or JSON text). ifVersion > 0 refuses the change (a 409 *Error)
// unless the policy is at that version; it is sent as If-Match.
func (c *Client) PutPolicy(ctx context.Context, kind, name, document string, ifVersion int64) (apitype.PolicyChange, error) {
	var v apitype.PolicyChange
	return v, c.sendWith(ctx, http.MethodPut, policyPath(kind, name), ifMatch(ifVersion), apitype.PolicyPut{Document: document}, &v)
}

// PolicyHistory calls GET /api/v1/policies/{kind}/{name}/history: at most
// limit versions (0: the server's default), older than before when
// before > 0.
func (c *Client) PolicyHistory(ctx context.Context, kind, name string, before int64, limit int) (apitype.PolicyHistory, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := policyPath(kind, name) + "/history"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var v apitype.PolicyHistory
	return v, c.send(ctx, http.MethodGet, path, nil, &v)
}

// RollbackPolicy calls POST /api/v1/policies/{kind}/{name}/rollback: a new
// version equal to version to. ifVersion is PutPolicy's.
func (c *Client) RollbackPolicy(ctx context.Context, kind, name string, to, ifVersion int64) (apitype.PolicyChange, error) {
	var v apitype.PolicyChange
	return v, c.send(ctx, http.MethodPost, policyPath(kind, name)+"/rollback", apitype.PolicyRollback{Version: to, IfVersion: ifVersion}, &v)
}

// Tenants calls GET /api/v1/tenants.
func (c *Client) Tenants(ctx context.Context) (apitype.TenantList, error) {
	var v apitype.TenantList
	return v, c.send(ctx, http.MethodGet, "/api/v1/tenants", nil, &v)
}

// Tenant calls GET /api/v1/tenants/{name}.
func (c *Client) Tenant(ctx context.Context, name string) (apitype.TenantView, error) {
	var v apitype.TenantView
	return v, c.send(ctx, http.MethodGet, "/api/v1/tenants/"+esc(name), nil, &v)
}

// PutTenant calls PUT /api/v1/tenants/{name} with the tenant document
// (YAML or JSON text).
func (c *Client) PutTenant(ctx context.Context, name, document string) (apitype.TenantChange, error) {
	var v apitype.TenantChange
	return v, c.send(ctx, http.MethodPut, "/api/v1/tenants/"+esc(name), apitype.TenantPut{Document: document}, &v)
}

// TenantScope calls GET /api/v1/users/{name}/tenants.
func (c *Client) TenantScope(ctx context.Context, user string) (apitype.TenantScope, error) {
	var v apitype.TenantScope
	return v, c.send(ctx, http.MethodGet, "/api/v1/users/"+esc(user)+"/tenants", nil, &v)
}

// SetTenantScope calls PUT /api/v1/users/{name}/tenants.
func (c *Client) SetTenantScope(ctx context.Context, user string, req apitype.TenantScopeSet) (apitype.TenantScope, error) {
	var v apitype.TenantScope
	return v, c.send(ctx, http.MethodPut, "/api/v1/users/"+esc(user)+"/tenants", req, &v)
}

// DecisionFilter selects GET /api/v1/decisions's answer; zero values
// select all (Limit 0: the server's default).
type DecisionFilter struct {
	Agent, Tenant string
	Denied        bool
	Before        int64
	Limit         int
}

func (f DecisionFilter) query() string {
	q := url.Values{}
	if f.Agent != "" {
		q.Set("agent", f.Agent)
	}
	if f.Tenant != "" {
		q.Set("tenant", f.Tenant)
	}
	if f.Denied {
		q.Set("denied", "true")
	}
	if f.Before > 0 {
		q.Set("before", strconv.FormatInt(f.Before, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// Decisions calls GET /api/v1/decisions, newest first.
func (c *Client) Decisions(ctx context.Context, f DecisionFilter) (apitype.DecisionList, error) {
	if f.Limit < 0 || f.Limit > apitype.DecisionLimitMax {
		return apitype.DecisionList{}, fmt.Errorf("decisions: limit %d is not between 0 and %d", f.Limit, apitype.DecisionLimitMax)
	}
	var v apitype.DecisionList
	return v, c.send(ctx, http.MethodGet, "/api/v1/decisions"+f.query(), nil, &v)
}

// Coverage calls GET /api/v1/coverage: the policy coverage and
// manifests-validated KPIs.
func (c *Client) Coverage(ctx context.Context) (apitype.CoverageView, error) {
	var v apitype.CoverageView
	return v, c.send(ctx, http.MethodGet, "/api/v1/coverage", nil, &v)
}
