package agents

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/policy"
)

// Admitter is admission (policy.Service.Admit): it judges req against the
// policies and the tenant's quota, records the decision and, when it
// allows, runs commit before any other admission starts, so that the
// decision and the write commit makes are one step as far as quotas go. A
// refusal is a *policy.DeniedError (policy.ErrDenied); commit's error is
// returned as it is.
type Admitter interface {
	Admit(ctx context.Context, actor string, req policy.Request, commit func(policy.Decision) error) (policy.Decision, error)
}

// TaskLimiter enforces the policy's task rate where tasks are submitted
// (policy.TaskLimiter). Allow takes one task from the agent's allowance;
// refused, it says how long until one is available (0: the policy allows
// none) and the rule that decided.
type TaskLimiter interface {
	Allow(agent, category, tenant string, now time.Time) (ok bool, retryAfter time.Duration, rule string)
	Forget(agent string)
}

// ImageVerifier says which trusted key signed an image (the registry's
// verification): its minisign key id, or "" when no trusted signature
// covers it. An error stops the deploy.
type ImageVerifier interface {
	ImageSigner(ctx context.Context, ref, digest string) (string, error)
}

// Compliance judges the deployed agents against the policies in force
// (policy.Service). Set is the current snapshot; a new one means the
// policies or tenants changed.
type Compliance interface {
	Set() *policy.Set
	Coverage(ctx context.Context) (policy.Coverage, error)
}

// WithAdmitter makes Deploy and Patch go through admission. Without one
// every deploy and patch that passes the manifest's checks is admitted
// (tests and tools that run no policy); omertad always sets one.
func WithAdmitter(a Admitter) Option { return func(s *Service) { s.admitter = a } }

// WithTaskLimiter bounds how often tasks may be submitted, per the policy.
func WithTaskLimiter(l TaskLimiter) Option { return func(s *Service) { s.limiter = l } }

// WithImageVerifier sets who says which key signed an image; without one
// every image is unsigned to admission.
func WithImageVerifier(v ImageVerifier) Option { return func(s *Service) { s.verifier = v } }

// WithCompliance makes the reconciler flag the deployed agents that fail
// the policies in force (see CheckCompliance).
func WithCompliance(c Compliance) Option { return func(s *Service) { s.compliance = c } }

// RateLimitedError is a task refused because the agent's task rate is
// spent. errors.Is(err, ErrRateLimited) holds for it.
type RateLimitedError struct {
	Agent string
	// Rule is the policy rule that set the rate
	// ("policy:tenant/acme@v2 tasks.perMinute").
	Rule string
	// RetryAfter is how long until a task is allowed again.
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("agent %s: %s by %s: retry after %s", quote(e.Agent), ErrRateLimited, e.Rule, e.RetryAfter.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// allowTask takes one task from the agent's allowance.
func (s *Service) allowTask(row agentRow, m *manifest.Manifest) error {
	if s.limiter == nil {
		return nil
	}
	ok, retry, rule := s.limiter.Allow(row.ID, m.Metadata.Category, row.Tenant, s.now())
	switch {
	case ok:
		return nil
	case retry <= 0:
		// A rate of 0 is a refusal, not a wait: no retry would pass.
		d := policy.Decision{Rule: rule, Reason: "the policy allows no tasks (tasks.perMinute is 0)",
			Denials: []policy.Denial{{Rule: rule, Reason: "the policy allows no tasks (tasks.perMinute is 0)"}}}
		return fmt.Errorf("running a task on %s: %w", quote(row.ID), &policy.DeniedError{Decision: d})
	}
	return &RateLimitedError{Agent: row.ID, Rule: rule, RetryAfter: retry}
}

// imageSigner asks the verifier, when there is one, who signed the image.
func (s *Service) imageSigner(ctx context.Context, img *manifest.Image) (string, error) {
	if s.verifier == nil {
		return "", nil
	}
	signer, err := s.verifier.ImageSigner(ctx, img.Ref, img.Digest)
	if err != nil {
		return "", fmt.Errorf("verifying the signature of %s: %w", quote(img.Ref), err)
	}
	return signer, nil
}

// Recorder stores a decision made outside admission the way admission
// stores its own (policy.Service.Record: the decision and, for a denial,
// its audit record). An Admitter that is one records refusals of the
// image's verification too.
type Recorder interface {
	Record(ctx context.Context, actor string, req policy.Request, d policy.Decision) (int64, error)
}

// recordRefusal records a verification's refusal of a deploy (a registry
// that lists the image failed its checks), which stops the deploy before
// admission, as a denied decision with its audit record, so that it is
// seen where admission's own refusals are. Other errors pass unchanged.
func (s *Service) recordRefusal(ctx context.Context, op policy.Op, id, tenant, actor string, cs checkedSpec, err error) error {
	var de *policy.DeniedError
	rec, ok := s.admitter.(Recorder)
	if !ok || !errors.As(err, &de) {
		return err
	}
	if _, rerr := rec.Record(ctx, actor, s.policyRequest(op, id, tenant, cs), de.Decision); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// policyRequest is what admission judges of a checked spec: what the
// manifest says (policy.RequestFor), the secret keys actually set and the
// image's verified signer.
func (s *Service) policyRequest(op policy.Op, id, tenant string, cs checkedSpec) policy.Request {
	return requestOf(op, id, tenant, cs.m, s.profile, sortedKeys(cs.secrets), cs.signer)
}

// requestOf builds a request; secrets are the keys set. RequestFor would
// list the keys the configuration schema declares, compiling it again:
// they are replaced by the keys set, so it is given the manifest without
// its schema.
func requestOf(op policy.Op, id, tenant string, m *manifest.Manifest, p config.Profile, secrets []string, signer string) policy.Request {
	bare := *m
	bare.Spec.ConfigSchema = nil
	r := policy.RequestFor(op, id, tenant, &bare, p)
	r.Secrets = secrets
	r.Image.Signer = signer
	return r
}

// admit runs commit through admission when there is an Admitter, and
// alone otherwise. A refusal wraps policy.ErrDenied and carries the
// Decision (errors.As with *policy.DeniedError).
func (s *Service) admit(ctx context.Context, what, actor string, req policy.Request, commit func(*policy.Decision) error) error {
	if s.admitter == nil {
		return commit(nil)
	}
	_, err := s.admitter.Admit(ctx, actor, req, func(d policy.Decision) error { return commit(&d) })
	if errors.Is(err, policy.ErrDenied) {
		return fmt.Errorf("%s %s: %w", what, quote(req.Agent), err)
	}
	if err == nil {
		s.comp.dirty.Add(1)
	}
	return err
}

// decisionDetail is what the audit record of an admitted deploy or patch
// keeps of its decision.
func decisionDetail(d *policy.Decision) map[string]any {
	out := map[string]any{"applied": d.Applied, "explicit": d.Explicit}
	if len(d.Warnings) > 0 {
		out["warnings"] = d.Warnings
	}
	return out
}

// PolicyRequests are the deployed agents (enabled or disabled, not being
// deleted) as admission sees them, Op check: policy's Options.Running. A
// disabled agent counts: enabling it is not admitted again, so it keeps
// its share of the quota. One statement, so that a patch committing
// meanwhile is seen whole or not at all.
func (s *Service) PolicyRequests(ctx context.Context) ([]policy.Request, error) {
	type deployed struct {
		id, tenant, signer, secrets string
		gen                         int64
	}
	var list []deployed
	err := eachRow(ctx, s.st.Read(), func(rows *sql.Rows) error {
		var d deployed
		if err := rows.Scan(&d.id, &d.tenant, &d.gen, &d.signer, &d.secrets); err != nil {
			return err
		}
		list = append(list, d)
		return nil
	}, `SELECT a.id, a.tenant, a.generation, sp.image_signer,
 (SELECT json_group_array(key) FROM (SELECT key FROM agent_secrets s WHERE s.agent_id = a.id AND s.generation = a.generation ORDER BY key))
 FROM agents a JOIN agent_specs sp ON sp.agent_id = a.id AND sp.generation = a.generation
 WHERE a.desired != 'deleted' ORDER BY a.id`)
	if err != nil {
		return nil, fmt.Errorf("listing the deployed agents: %w", err)
	}
	out := make([]policy.Request, 0, len(list))
	for _, d := range list {
		var secrets []string
		if err := json.Unmarshal([]byte(d.secrets), &secrets); err != nil {
			return nil, fmt.Errorf("agent %s: its secret keys: %w", quote(d.id), err)
		}
		m, err := s.cachedManifest(ctx, d.id, d.gen)
		if err != nil {
			return nil, err
		}
		out = append(out, requestOf(policy.OpCheck, d.id, d.tenant, m, s.profile, secrets, d.signer))
	}
	return out, nil
}

// eachRow runs a query and calls fn on each row.
func eachRow(ctx context.Context, q querier, fn func(*sql.Rows) error, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
