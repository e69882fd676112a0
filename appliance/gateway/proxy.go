package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// Causes of an attempt's end that are not the agent's doing.
var (
	errAttemptTimeout = errors.New("the backend did not answer in time")
	errStreamIdle     = errors.New("the stream sent nothing for too long")
	errStreamTooLong  = errors.New("the stream went on for too long")
)

// Usage codes that are recorded but never sent (the agent is gone, or
// the answer had already begun).
const (
	codeClientGone        = "client_gone"
	codeStreamInterrupted = "stream_interrupted"
	statusClientGone      = 499
)

func (g *Gateway) scopes(agent AgentRef, rules Rules, now time.Time) []scope {
	return []scope{
		{what: "agent", id: agent.ID, limits: rules.Agent, b: g.rates.get("a/"+agent.ID, rules.Agent, now)},
		{what: "tenant", id: agent.Tenant, limits: rules.Tenant, b: g.rates.get("t/"+agent.Tenant, rules.Tenant, now)},
	}
}

// serveForward checks a request against the policy and the limits, then
// forwards it along its model's route.
func (g *Gateway) serveForward(w http.ResponseWriter, r *http.Request, agent AgentRef, ep *endpoint, start time.Time) {
	u := &Usage{At: g.now(), Agent: agent, Endpoint: ep.name}
	reg := g.reg.Load()
	body, e := readBody(r, g.bounds.MaxBodyBytes)
	if e != nil {
		g.refused(w, u, reg, e, start)
		return
	}
	req, err := parseRequest(body, g.bounds.MaxJSONDepth, ep)
	if err != nil {
		g.refused(w, u, reg, refuse(http.StatusBadRequest, CodeInvalidRequest, "%s", terminal.Escape(err.Error())), start)
		return
	}
	u.Model, u.Stream = req.model, req.stream
	rules, err := g.pol.Rules(r.Context(), agent)
	if err != nil {
		g.log.Warn("gateway policy unavailable", "agent", terminal.Escape(agent.ID), "err", terminal.Escape(err.Error()))
		g.refused(w, u, reg, refuse(http.StatusServiceUnavailable, CodePolicyUnavailable, "the agent's policy could not be read"), start)
		return
	}
	if !rules.ModelAllowed(req.model) {
		g.refused(w, u, reg, refuse(http.StatusForbidden, CodeModelNotAllowed, "agent %s: model %s is not allowed by its policy",
			quote(agent.ID), quote(req.model)), start)
		return
	}
	m := reg.Model(req.model)
	if e := modelUsable(req.model, m); e != nil {
		g.refused(w, u, reg, e, start)
		return
	}
	now := g.now()
	scopes := g.scopes(agent, rules, now)
	if e := g.rates.admit(now, scopes); e != nil {
		g.refused(w, u, reg, e, start)
		return
	}
	if e := g.forward(w, r, req, m, ep, rules, scopes, u); e != nil {
		g.refused(w, u, reg, e, start)
		return
	}
	g.finish(u, reg, start)
}

// modelUsable refuses a model the registry lacks (404) or holds disabled
// (403 with the reason it was not enabled).
func modelUsable(name string, m *Model) *Error {
	switch {
	case m == nil:
		return refuse(http.StatusNotFound, CodeModelNotFound, "model %s is not in the model registry", quote(name))
	case m.Disabled != "":
		return refuse(http.StatusForbidden, CodeModelNotEnabled, "model %s is not enabled: %s", quote(name), terminal.Escape(m.Disabled))
	}
	return nil
}

// refused answers e and records it.
func (g *Gateway) refused(w http.ResponseWriter, u *Usage, reg *Registry, e *Error, start time.Time) {
	writeError(w, e)
	u.Status, u.Code = e.Status, string(e.Code)
	g.log.Debug("gateway refused a request", "agent", terminal.Escape(u.Agent.ID), "model", terminal.Escape(u.Model),
		"code", string(e.Code), "reason", e.Message)
	g.finish(u, reg, start)
}

func (g *Gateway) finish(u *Usage, reg *Registry, start time.Time) {
	u.Latency = time.Since(start)
	code := u.Code
	if code == "" {
		code = "ok"
	}
	g.met.requests.WithLabelValues(u.Agent.ID, modelLabel(reg, u.Model), code).Inc()
	if u.Reported {
		g.met.tokens.WithLabelValues(u.Agent.ID, "prompt").Add(float64(u.PromptTokens))
		g.met.tokens.WithLabelValues(u.Agent.ID, "completion").Add(float64(u.CompletionTokens))
	}
	if u.ChargedTokens > 0 {
		g.met.tokens.WithLabelValues(u.Agent.ID, "charged").Add(float64(u.ChargedTokens))
	}
	if u.CostNanoUSD > 0 {
		g.met.cost.WithLabelValues(u.Agent.ID).Add(nanoToUSD(u.CostNanoUSD))
	}
	g.met.latency.WithLabelValues(u.Endpoint).Observe(u.Latency.Seconds())
	g.rec.add(*u)
}

// outcome is how one attempt ended.
type outcome int

const (
	served     outcome = iota // an answer went to the agent (or began to)
	failed                    // nothing went to the agent; the next target may try
	skipped                   // not tried (its credential is unusable); the next target may try
	clientGone                // the agent went away before anything was answered
)

// result is an attempt's end.
type result struct {
	outcome   outcome
	err       *Error // failed, skipped
	status    int    // served: the status passed on
	usage     tokenUsage
	broken    bool // served, but the backend failed mid-stream
	gone      bool // served, but the agent went away mid-answer
	backendOK bool // the backend answered (a success for its breaker)
}

// forward tries the route's targets in order. Each is skipped when the
// policy forbids cloud and it is a cloud one, when its circuit is open,
// or when the worst this request could cost there does not fit a budget;
// it is left for the next on a connection error, a timeout or a 5xx. It
// returns the refusal to answer when no target served.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, req *request, m *Model, ep *endpoint, rules Rules, scopes []scope, u *Usage) *Error {
	var budgetErr, lastErr *Error
	var wait time.Duration
	cloudSkipped := 0
	prompt, completion := req.estimate(m, ep)
	for i, t := range m.Route {
		if t.Cloud() && !rules.AllowCloud {
			cloudSkipped++
			continue
		}
		br := g.breaker(t.Backend.Name)
		ok, d := br.allow(g.now())
		if !ok {
			if wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		est := spend{tokens: prompt + completion, cost: t.cost(prompt, completion)}
		res, e := g.budgets.reserve(g.now(), scopes, est)
		if e != nil {
			br.abandon()
			if i > 0 {
				e.Message = fmt.Sprintf("fallback to backend %s refused: %s", t.Backend.Name, e.Message)
			}
			budgetErr = e
			continue
		}
		u.Attempts++
		out := g.attempt(w, r, req, t, ep)
		charge := g.settle(out, t, est, br, u)
		res.settle(g.now(), charge)
		g.rates.charge(g.now(), scopes, charge.tokens)
		switch out.outcome {
		case served:
			return nil
		case clientGone:
			u.Status, u.Code = statusClientGone, codeClientGone
			return nil
		}
		lastErr = out.err
	}
	return noTarget(m, budgetErr, lastErr, cloudSkipped, wait)
}

// settle tells the breaker how the attempt went, fills the usage record
// and returns what budgets are charged: the tokens the backend reported
// at the target's prices, or the estimate when an answer came without
// them (a backend that reports nothing is not free).
func (g *Gateway) settle(out result, t Target, est spend, br *breaker, u *Usage) spend {
	label := "ok"
	switch {
	case out.outcome == served && out.backendOK && !out.broken:
		if from, changed := br.success(); changed {
			g.breakerChanged(t.Backend.Name, from, BreakerClosed, "a request succeeded")
		}
	case out.outcome == failed || out.broken:
		label = "error"
		if out.err != nil {
			label = attemptLabel(out.err.Code)
		}
		if from, changed := br.failure(g.now()); changed {
			g.breakerChanged(t.Backend.Name, from, BreakerOpen, out.reason())
		}
	default:
		br.abandon()
	}
	if out.outcome != skipped && out.outcome != clientGone {
		g.met.attempts.WithLabelValues(t.Backend.Name, label).Inc()
	}
	if out.outcome != served {
		return spend{}
	}
	u.Backend, u.Status = t.Backend.Name, out.status
	switch {
	case out.gone:
		u.Code = codeClientGone
	case out.broken:
		u.Code = codeStreamInterrupted
	}
	var charge spend
	switch {
	case out.usage.reported:
		u.Reported, u.PromptTokens, u.CompletionTokens = true, out.usage.prompt, out.usage.completion
		charge = spend{tokens: satAdd(out.usage.prompt, out.usage.completion), cost: t.cost(out.usage.prompt, out.usage.completion)}
	case out.backendOK && u.Status < 300:
		charge = est
	}
	u.ChargedTokens, u.CostNanoUSD = charge.tokens, charge.cost
	return charge
}

func (r result) reason() string {
	if r.err != nil {
		return r.err.Message
	}
	return "the stream broke off"
}

func attemptLabel(c Code) string {
	switch c {
	case CodeBackendTimeout:
		return "timeout"
	case CodeBackendTooLarge:
		return "bad_answer"
	}
	return "error"
}

// noTarget is the answer when no target served: a budget refusal first
// (the agent can act on it, and a fallback refused for its price must
// say so), then every target being cloud, then the last failure, then
// open circuits.
func noTarget(m *Model, budgetErr, lastErr *Error, cloudSkipped int, wait time.Duration) *Error {
	switch {
	case budgetErr != nil:
		if lastErr != nil {
			budgetErr.Message += "; before that: " + lastErr.Message
		}
		return budgetErr
	case cloudSkipped == len(m.Route):
		return refuse(http.StatusForbidden, CodeCloudNotAllowed, "model %s is served only by cloud backends, and the agent's policy does not allow cloud", quote(m.Name))
	case lastErr != nil:
		return lastErr
	}
	e := refuse(http.StatusServiceUnavailable, CodeBackendUnavailable, "every backend of model %s is failing (circuit open)", quote(m.Name))
	e.RetryAfter = wait
	return e
}

// attempt sends the request to one target and, if it answers, passes the
// answer on.
func (g *Gateway) attempt(w http.ResponseWriter, r *http.Request, req *request, t Target, ep *endpoint) result {
	be := t.Backend
	secret, e := g.credential(r.Context(), be)
	if e != nil {
		return result{outcome: skipped, err: e}
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	timer := time.AfterFunc(t.Timeout, func() { cancel(errAttemptTimeout) })
	defer timer.Stop()
	out, err := http.NewRequestWithContext(ctx, http.MethodPost, be.URL+ep.path, bytes.NewReader(req.body(t.Model)))
	if err != nil {
		return result{outcome: failed, err: refuse(http.StatusBadGateway, CodeBackendError, "backend %s: %s", be.Name, terminal.Escape(err.Error()))}
	}
	h := out.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept-Encoding", "identity")
	h.Set("User-Agent", userAgent)
	if req.stream {
		h.Set("Accept", "text/event-stream")
	} else {
		h.Set("Accept", "application/json")
	}
	if secret != nil {
		h.Set("Authorization", "Bearer "+string(secret))
	}
	resp, err := g.rt.RoundTrip(out)
	if err != nil {
		return g.sendFailure(ctx, r, t, err)
	}
	if resp.StatusCode >= 500 || resp.StatusCode < 200 || (resp.StatusCode >= 300 && resp.StatusCode < 400) {
		drain(resp.Body)
		g.log.Warn("gateway backend failed", "backend", be.Name, "status", resp.StatusCode)
		return result{outcome: failed, err: refuse(http.StatusBadGateway, CodeBackendError, "backend %s answered %d", be.Name, resp.StatusCode)}
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		// Asked for identity; bytes the agent cannot read are no answer.
		drain(resp.Body)
		g.log.Warn("gateway backend sent an encoded answer", "backend", be.Name, "encoding", terminal.Escape(ce))
		return result{outcome: failed, err: refuse(http.StatusBadGateway, CodeBackendError, "backend %s answered in an encoding that was not asked for", be.Name)}
	}
	if req.stream && resp.StatusCode == http.StatusOK && mediaType(resp.Header.Get("Content-Type")) == "text/event-stream" {
		timer.Stop() // the stream's own timers take over
		return g.pipeStream(ctx, cancel, w, r, resp, be, secret)
	}
	return g.passBody(ctx, w, r, resp, be, secret)
}

// sendFailure classifies a failed round trip.
func (g *Gateway) sendFailure(ctx context.Context, r *http.Request, t Target, err error) result {
	if r.Context().Err() != nil {
		return result{outcome: clientGone}
	}
	if context.Cause(ctx) == errAttemptTimeout {
		g.log.Warn("gateway backend timed out", "backend", t.Backend.Name, "timeout", t.Timeout.String())
		return result{outcome: failed, err: refuse(http.StatusGatewayTimeout, CodeBackendTimeout, "backend %s did not answer within %s", t.Backend.Name, t.Timeout)}
	}
	g.log.Warn("gateway backend unreachable", "backend", t.Backend.Name, "err", terminal.Escape(err.Error()))
	return result{outcome: failed, err: refuse(http.StatusBadGateway, CodeBackendError, "backend %s could not be reached", t.Backend.Name)}
}

// credential reads a backend's secret and checks that it can go into a
// header. Neither a log line nor an error says what it is.
func (g *Gateway) credential(ctx context.Context, be *Backend) ([]byte, *Error) {
	if be.Credential == "" {
		return nil, nil
	}
	v, err := g.sec.Secret(ctx, be.Credential)
	if err == nil && (len(v) == 0 || len(v) > maxCredentialBytes || !headerSafe(v)) {
		err = fmt.Errorf("the value is empty, longer than %d bytes, or holds characters a header cannot carry", maxCredentialBytes)
	}
	if err != nil {
		g.log.Warn("gateway credential unusable", "backend", be.Name, "secret", be.Credential, "err", terminal.Escape(err.Error()))
		return nil, refuse(http.StatusBadGateway, CodeBackendError, "backend %s: its credential is unavailable", be.Name)
	}
	return v, nil
}

func headerSafe(v []byte) bool {
	for _, c := range v {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}

// safeContentType passes on the media types an OpenAI client reads and
// nothing a browser would render.
func safeContentType(ct string) string {
	switch mediaType(ct) {
	case "application/json":
		return "application/json"
	case "text/event-stream":
		return "text/event-stream"
	case "text/plain":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// passBody reads a whole answer (within MaxResponseBytes and the target's
// timeout), hides the credential should the backend echo it, and passes
// it on with the backend's status.
func (g *Gateway) passBody(ctx context.Context, w http.ResponseWriter, r *http.Request, resp *http.Response, be *Backend, secret []byte) result {
	limit := g.bounds.MaxResponseBytes
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	resp.Body.Close()
	switch {
	case err != nil && r.Context().Err() != nil:
		return result{outcome: clientGone}
	case err != nil && context.Cause(ctx) == errAttemptTimeout:
		return result{outcome: failed, err: refuse(http.StatusGatewayTimeout, CodeBackendTimeout, "backend %s did not finish its answer in time", be.Name)}
	case err != nil:
		return result{outcome: failed, err: refuse(http.StatusBadGateway, CodeBackendError, "backend %s: reading its answer failed", be.Name)}
	case int64(len(data)) > limit:
		g.log.Warn("gateway backend answer too large", "backend", be.Name, "limit", limit)
		return result{outcome: failed, err: refuse(http.StatusBadGateway, CodeBackendTooLarge, "backend %s answered more than %d bytes", be.Name, limit)}
	}
	data = redact(data, secret)
	h := w.Header()
	h.Set("Content-Type", safeContentType(resp.Header.Get("Content-Type")))
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(headerBackend, be.Name)
	w.WriteHeader(resp.StatusCode)
	_, werr := w.Write(data)
	usage, _ := parseUsage(data, g.bounds.MaxJSONDepth)
	return result{outcome: served, status: resp.StatusCode, usage: usage, backendOK: true, gone: werr != nil}
}
