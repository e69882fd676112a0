package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// InvalidError is a 400 answer that lists every problem the server found,
// each naming its field. errors.As(err, new(*Error)) holds for it too.
type InvalidError struct {
	Err      *Error
	Problems []apitype.Problem
}

func (e *InvalidError) Error() string { return e.Err.Error() }

func (e *InvalidError) Unwrap() error { return e.Err }

// maxProblems bounds the problems kept from an answer.
const maxProblems = 200

// send sends method path with body (JSON-encoded unless nil) and decodes a
// 2xx answer into into (unless nil).
func (c *Client) send(ctx context.Context, method, path string, body, into any) error {
	return c.sendWith(ctx, method, path, nil, body, into)
}

// sendWith is send with extra request headers (If-Match).
func (c *Client) sendWith(ctx context.Context, method, path string, hdr http.Header, body, into any) error {
	status, rh, data, err := c.roundTripH(ctx, method, path, hdr, body, "application/json")
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return answerErrorH(method, path, status, rh, data)
	}
	if into == nil || status == http.StatusNoContent {
		return nil
	}
	if err := decode(data, into); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// roundTrip sends one request and reads at most maxBody bytes of the
// answer.
func (c *Client) roundTrip(ctx context.Context, method, path string, body any, accept string) (int, []byte, error) {
	status, _, data, err := c.roundTripH(ctx, method, path, nil, body, accept)
	return status, data, err
}

// roundTripH is roundTrip with request headers hdr, returning the
// answer's headers too.
func (c *Client) roundTripH(ctx context.Context, method, path string, hdr http.Header, body any, accept string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("%s %s: encoding the request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://omertad"+path, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s on %s: %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := readBody(resp, c.maxBody)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: reading the response: %w", method, path, err)
	}
	if int64(len(data)) > c.maxBody {
		return 0, nil, nil, fmt.Errorf("%s %s: %w: more than %d bytes", method, path, ErrTooLarge, c.maxBody)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// answerError is a non-2xx answer as an *Error, or an *InvalidError when
// it lists problems, or a *DeniedError when it carries an admission
// decision.
func answerError(method, path string, status int, data []byte) error {
	return answerErrorH(method, path, status, nil, data)
}

// answerErrorH is answerError knowing the answer's headers: a 429 is a
// *RateLimitedError with its Retry-After.
func answerErrorH(method, path string, status int, hdr http.Header, data []byte) error {
	e := &Error{Method: method, Path: path, Status: status, Message: errorMessage(data)}
	if err := policyError(e, hdr, data); err != nil {
		return err
	}
	var inv apitype.Invalid
	if status == http.StatusBadRequest && json.Unmarshal(data, &inv) == nil && len(inv.Problems) > 0 {
		if len(inv.Problems) > maxProblems {
			inv.Problems = inv.Problems[:maxProblems]
		}
		return &InvalidError{Err: e, Problems: inv.Problems}
	}
	return e
}

func esc(id string) string { return url.PathEscape(id) }

// Catalog calls GET /api/v1/catalog.
func (c *Client) Catalog(ctx context.Context) (apitype.CatalogList, error) {
	var v apitype.CatalogList
	return v, c.send(ctx, http.MethodGet, "/api/v1/catalog", nil, &v)
}

// CatalogEntry calls GET /api/v1/catalog/{id}.
func (c *Client) CatalogEntry(ctx context.Context, id string) (apitype.CatalogEntryView, error) {
	var v apitype.CatalogEntryView
	return v, c.send(ctx, http.MethodGet, "/api/v1/catalog/"+esc(id), nil, &v)
}

// ImportCatalog calls POST /api/v1/catalog.
func (c *Client) ImportCatalog(ctx context.Context, req apitype.CatalogImport) (apitype.CatalogImported, error) {
	var v apitype.CatalogImported
	return v, c.send(ctx, http.MethodPost, "/api/v1/catalog", req, &v)
}

// Images calls GET /api/v1/images.
func (c *Client) Images(ctx context.Context) (apitype.ImageList, error) {
	var v apitype.ImageList
	return v, c.send(ctx, http.MethodGet, "/api/v1/images", nil, &v)
}

// ImportImage calls POST /api/v1/images/import: omertad imports the archive
// at req.Path on its own machine. A large archive takes a while: give the
// client a timeout to match (WithTimeout).
func (c *Client) ImportImage(ctx context.Context, req apitype.ImageImport) (apitype.ImageImported, error) {
	var v apitype.ImageImported
	return v, c.send(ctx, http.MethodPost, "/api/v1/images/import", req, &v)
}

// PullImage calls POST /api/v1/images/pull: omertad pulls req.Ref from its
// registry. A large image takes a while: give the client a timeout to
// match (WithTimeout).
func (c *Client) PullImage(ctx context.Context, req apitype.ImagePull) (apitype.ImagePulled, error) {
	var v apitype.ImagePulled
	return v, c.send(ctx, http.MethodPost, "/api/v1/images/pull", req, &v)
}

// Agents calls GET /api/v1/agents.
func (c *Client) Agents(ctx context.Context) (apitype.AgentList, error) {
	var v apitype.AgentList
	return v, c.send(ctx, http.MethodGet, "/api/v1/agents", nil, &v)
}

// Agent calls GET /api/v1/agents/{id}.
func (c *Client) Agent(ctx context.Context, id string) (apitype.Agent, error) {
	var v apitype.Agent
	return v, c.send(ctx, http.MethodGet, "/api/v1/agents/"+esc(id), nil, &v)
}

// DeployAgent calls POST /api/v1/agents.
func (c *Client) DeployAgent(ctx context.Context, req apitype.AgentDeploy) (apitype.Agent, error) {
	var v apitype.Agent
	return v, c.send(ctx, http.MethodPost, "/api/v1/agents", req, &v)
}

// PatchAgent calls PATCH /api/v1/agents/{id}.
func (c *Client) PatchAgent(ctx context.Context, id string, req apitype.AgentPatch) (apitype.Agent, error) {
	var v apitype.Agent
	return v, c.send(ctx, http.MethodPatch, "/api/v1/agents/"+esc(id), req, &v)
}

// Agent verbs of AgentAction.
const (
	ActionDisable = "disable"
	ActionEnable  = "enable"
	ActionRestart = "restart"
)

// AgentAction calls POST /api/v1/agents/{id}/{action}: ActionDisable,
// ActionEnable or ActionRestart.
func (c *Client) AgentAction(ctx context.Context, id, action string) (apitype.Agent, error) {
	switch action {
	case ActionDisable, ActionEnable, ActionRestart:
	default:
		return apitype.Agent{}, fmt.Errorf("agent action %q: not one of disable, enable, restart", action)
	}
	var v apitype.Agent
	return v, c.send(ctx, http.MethodPost, "/api/v1/agents/"+esc(id)+"/"+action, struct{}{}, &v)
}

// DeleteAgent calls DELETE /api/v1/agents/{id}; purge also removes the
// agent's data and logs.
func (c *Client) DeleteAgent(ctx context.Context, id string, purge bool) error {
	path := "/api/v1/agents/" + esc(id)
	if purge {
		path += "?purge=true"
	}
	return c.send(ctx, http.MethodDelete, path, nil, nil)
}

// AgentLogs calls GET /api/v1/agents/{id}/logs: the last tail lines (0: the
// server's default) of the agent's log, the raw bytes it wrote. Escape
// them before showing them.
func (c *Client) AgentLogs(ctx context.Context, id string, tail int) ([]byte, error) {
	path := "/api/v1/agents/" + esc(id) + "/logs"
	if tail != 0 {
		path += "?tail=" + strconv.Itoa(tail)
	}
	status, data, err := c.roundTrip(ctx, http.MethodGet, path, nil, "text/plain")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, answerError(http.MethodGet, path, status, data)
	}
	return data, nil
}

// RunTask calls POST /api/v1/agents/{id}/tasks. With wait > 0 the server
// waits up to that long for the task to end before answering; the task
// comes back as it is then.
func (c *Client) RunTask(ctx context.Context, agent string, req apitype.TaskCreate, wait time.Duration) (apitype.Task, error) {
	path := "/api/v1/agents/" + esc(agent) + "/tasks"
	if wait > 0 {
		path += "?wait=" + url.QueryEscape(wait.String())
	}
	var v apitype.Task
	return v, c.send(ctx, http.MethodPost, path, req, &v)
}

// Tasks calls GET /api/v1/agents/{id}/tasks: up to limit (0: the server's
// default) of the agent's tasks, newest first.
func (c *Client) Tasks(ctx context.Context, agent string, limit int) (apitype.TaskList, error) {
	path := "/api/v1/agents/" + esc(agent) + "/tasks"
	if limit != 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var v apitype.TaskList
	return v, c.send(ctx, http.MethodGet, path, nil, &v)
}

// Task calls GET /api/v1/tasks/{id}.
func (c *Client) Task(ctx context.Context, id string) (apitype.Task, error) {
	var v apitype.Task
	return v, c.send(ctx, http.MethodGet, "/api/v1/tasks/"+esc(id), nil, &v)
}

// CancelTask calls POST /api/v1/tasks/{id}/cancel.
func (c *Client) CancelTask(ctx context.Context, id string) (apitype.Task, error) {
	var v apitype.Task
	return v, c.send(ctx, http.MethodPost, "/api/v1/tasks/"+esc(id)+"/cancel", struct{}{}, &v)
}

// Metrics calls GET /metrics: Prometheus's text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	status, data, err := c.roundTrip(ctx, http.MethodGet, "/metrics", nil, "text/plain")
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", answerError(http.MethodGet, "/metrics", status, data)
	}
	return string(data), nil
}

// EventFilter selects the events of Events: by type (apitype.EventTask,
// ...; none: all), agent and task (empty: all).
type EventFilter struct {
	Types []string
	Agent string
	Task  string
}

// Events calls GET /api/v1/events and returns the stream, which the
// caller must Close. The stream has no timeout: ctx ends it.
func (c *Client) Events(ctx context.Context, f EventFilter) (*EventStream, error) {
	q := url.Values{}
	if len(f.Types) > 0 {
		q.Set("types", strings.Join(f.Types, ","))
	}
	if f.Agent != "" {
		q.Set("agent", f.Agent)
	}
	if f.Task != "" {
		q.Set("task", f.Task)
	}
	path := "/api/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	s, err := c.openStream(ctx, path)
	if err != nil {
		return nil, err
	}
	return &EventStream{s: s}, nil
}

// EventStream is an open GET /api/v1/events.
type EventStream struct{ s *sseStream }

// Next returns the next event. An event of type apitype.EventLagged or
// apitype.EventShutdown is the last: the stream ends after it.
func (e *EventStream) Next() (apitype.Event, error) {
	m, err := e.s.next()
	if err != nil {
		return apitype.Event{}, err
	}
	if m.event == apitype.EventLagged || m.event == apitype.EventShutdown {
		return apitype.Event{Type: m.event, Data: json.RawMessage(m.data)}, nil
	}
	var ev apitype.Event
	if err := json.Unmarshal(m.data, &ev); err != nil {
		return apitype.Event{}, fmt.Errorf("event stream: event %q: %w", m.event, err)
	}
	return ev, nil
}

// Close ends the stream.
func (e *EventStream) Close() error { return e.s.close() }

// FollowAgentLogs calls GET /api/v1/agents/{id}/logs?follow=true: the last
// tail lines (0: the server's default), then what the agent writes, until
// ctx ends or the stream is closed.
func (c *Client) FollowAgentLogs(ctx context.Context, id string, tail int) (*LogStream, error) {
	path := "/api/v1/agents/" + esc(id) + "/logs?follow=true"
	if tail != 0 {
		path += "&tail=" + strconv.Itoa(tail)
	}
	s, err := c.openStream(ctx, path)
	if err != nil {
		return nil, err
	}
	return &LogStream{s: s}, nil
}

// LogStream is an open followed log.
type LogStream struct{ s *sseStream }

// Next returns the next piece of the log (raw text: escape it before
// showing it); io.EOF when the server ends the log.
func (l *LogStream) Next() (string, error) {
	for {
		m, err := l.s.next()
		if err != nil {
			return "", err
		}
		switch m.event {
		case apitype.EventLog:
			var s string
			if err := json.Unmarshal(m.data, &s); err != nil {
				return "", fmt.Errorf("log stream: %w", err)
			}
			return s, nil
		case apitype.EventLogEnd:
			return "", io.EOF
		}
	}
}

// Close ends the stream.
func (l *LogStream) Close() error { return l.s.close() }

// openStream sends GET path for a server-sent event stream. Unlike the
// other calls it has no overall timeout (a stream lasts); the connection
// and the answer's headers must still come within the client's timeout.
func (c *Client) openStream(ctx context.Context, path string) (*sseStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://omertad"+path, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	hc := &http.Client{Transport: c.http.Transport, CheckRedirect: c.http.CheckRedirect}
	var timer *time.Timer
	if c.http.Timeout > 0 {
		timer = time.AfterFunc(c.http.Timeout, cancel)
	}
	resp, err := hc.Do(req)
	stopped := timer == nil || timer.Stop()
	if err != nil || !stopped {
		cancel()
		if err == nil {
			resp.Body.Close()
			err = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("GET %s on %s: %w", path, c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, c.maxBody))
		return nil, answerError(http.MethodGet, path, resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET %s: answered %q, not an event stream", path, ct)
	}
	return newSSEStream(resp.Body, cancel), nil
}

// ErrStreamClosed is returned by Next after Close.
var ErrStreamClosed = errors.New("stream closed")
