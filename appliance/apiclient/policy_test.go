package apiclient

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// TestPolicyErrors: a 403 with a decision is a *DeniedError, a 403
// without one stays an *Error, a 429 is a *RateLimitedError with its
// Retry-After (bounded), and If-Match carries the expected version.
func TestPolicyErrors(t *testing.T) {
	var ifMatch, query string
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/agents" && r.Method == http.MethodPost:
			w.WriteHeader(403)
			w.Write([]byte(`{"error":"denied by quota:tenant/acme agents: 3 against 2","decision":{"allow":false,"rule":"quota:tenant/acme agents",` +
				`"reason":"3 against 2","denials":[{"rule":"quota:tenant/acme agents","reason":"3 against 2"}],"applied":["profile:user"],"explicit":true}}`))
		case r.URL.Path == "/api/v1/agents/x":
			w.WriteHeader(403)
			w.Write([]byte(`{"error":"role \"auditor\" may not agents.write"}`))
		case strings.HasSuffix(r.URL.Path, "/tasks"):
			w.Header().Set("Retry-After", r.URL.Query().Get("ra"))
			w.WriteHeader(429)
			w.Write([]byte(`{"error":"rate limited"}`))
		case r.URL.Path == "/api/v1/policies/agent/foo":
			ifMatch = r.Header.Get("If-Match")
			w.WriteHeader(409)
			w.Write([]byte(`{"error":"stale"}`))
		case r.URL.Path == "/api/v1/decisions":
			query = r.URL.RawQuery
			w.Write([]byte(`{"decisions":[]}`))
		}
	})
	c := New(sock, WithTimeout(5*time.Second))
	defer c.Close()
	ctx := context.Background()

	_, err := c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "tool"})
	var de *DeniedError
	var e *Error
	if !errors.As(err, &de) || de.Decision.Rule != "quota:tenant/acme agents" || len(de.Decision.Denials) != 1 || !errors.As(err, &e) || e.Status != 403 {
		t.Fatalf("DeployAgent = %#v, want a DeniedError with the decision", err)
	}
	if _, err := c.PatchAgent(ctx, "x", apitype.AgentPatch{}); errors.As(err, &de) || !errors.As(err, &e) || e.Status != 403 {
		t.Errorf("PatchAgent refused by role = %#v, want a plain 403 *Error", err)
	}
	for ra, want := range map[string]time.Duration{"7": 7 * time.Second, "": time.Second, "99999999": maxRetryAfter} {
		err := c.send(ctx, http.MethodPost, "/api/v1/agents/a/tasks?ra="+ra, struct{}{}, nil)
		var rl *RateLimitedError
		if !errors.As(err, &rl) || rl.RetryAfter != want || !errors.As(err, &e) || e.Status != 429 {
			t.Errorf("429 with Retry-After %q = %#v, want RetryAfter %v", ra, err, want)
		}
	}
	if _, err := c.PutPolicy(ctx, "agent", "foo", "doc", 3); !errors.As(err, &e) || e.Status != 409 || ifMatch != `"3"` {
		t.Errorf("PutPolicy = %v with If-Match %q", err, ifMatch)
	}
	if _, err := c.Decisions(ctx, DecisionFilter{Agent: "a b", Denied: true, Limit: 5}); err != nil || query != "agent=a+b&denied=true&limit=5" {
		t.Errorf("Decisions sent %q: %v", query, err)
	}
	if _, err := c.Decisions(ctx, DecisionFilter{Limit: 201}); err == nil {
		t.Error("a limit over the server's was sent")
	}
}

// FuzzPolicyError: whatever a 403 or 429 body and Retry-After hold, the
// typed error is bounded and never panics: a DeniedError only with a rule
// or denials, at most maxDenials of them; a wait within maxRetryAfter.
func FuzzPolicyError(f *testing.F) {
	f.Add(403, "", `{"error":"x","decision":{"rule":"r","reason":"why","denials":[{"rule":"r","reason":"why"}]}}`)
	f.Add(403, "", `{"error":"role may not"}`)
	f.Add(429, "-5", `{"error":"slow down"}`)
	f.Add(429, "999999999999", ``)
	f.Add(403, "", `{"decision":{"denials":[`+strings.Repeat(`{"rule":"r"},`, 100)+`{"rule":"r"}]}}`)
	f.Fuzz(func(t *testing.T, status int, retry, body string) {
		e := &Error{Method: "POST", Path: "/x", Status: status, Message: errorMessage([]byte(body))}
		err := policyError(e, http.Header{"Retry-After": {retry}}, []byte(body))
		var de *DeniedError
		var rl *RateLimitedError
		switch {
		case errors.As(err, &de):
			if status != 403 || len(de.Decision.Denials) > maxDenials || (de.Decision.Rule == "" && len(de.Decision.Denials) == 0) {
				t.Fatalf("DeniedError %+v from status %d", de.Decision, status)
			}
		case errors.As(err, &rl):
			if status != 429 || rl.RetryAfter < time.Second || rl.RetryAfter > maxRetryAfter {
				t.Fatalf("RateLimitedError %v from status %d", rl.RetryAfter, status)
			}
		case err != nil:
			t.Fatalf("unexpected %T", err)
		}
	})
}
