package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// recorder is a server that keeps the headers and bodies it was sent.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (r *recorder) last() (*http.Request, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs[len(r.reqs)-1], r.body[len(r.body)-1]
}

func (r *recorder) serve(t *testing.T, answer func(w http.ResponseWriter, req *http.Request)) string {
	return hostile(t, func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs, r.body = append(r.reqs, req), append(r.body, string(b))
		r.mu.Unlock()
		answer(w, req)
	})
}

func jsonAnswer(v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
}

// TestCredentialHeaders: options and As put the credentials in the
// headers omertad reads; As overrides what the client carries and leaves
// the client itself alone.
func TestCredentialHeaders(t *testing.T) {
	var rec recorder
	sock := rec.serve(t, jsonAnswer(apitype.Whoami{Kind: "session", User: "alice", Role: "admin", Actions: []string{"self"}}))
	ctx := context.Background()
	base := New(sock, WithSession("sess1", "csrf1"), WithClientAddr("192.0.2.7"))
	defer base.Close()
	if w, err := base.Identity(ctx); err != nil || w.User != "alice" {
		t.Fatalf("Identity = %+v, %v", w, err)
	}
	req, _ := rec.last()
	if req.Header.Get(apitype.HeaderSession) != "sess1" || req.Header.Get(apitype.HeaderCSRF) != "csrf1" ||
		req.Header.Get(apitype.HeaderClientAddr) != "192.0.2.7" || req.Header.Get("Authorization") != "" {
		t.Fatalf("headers = %v", req.Header)
	}
	view := base.As(Credentials{Session: "sess2", CSRF: "csrf2"})
	if _, err := view.Identity(ctx); err != nil {
		t.Fatal(err)
	}
	req, _ = rec.last()
	if req.Header.Get(apitype.HeaderSession) != "sess2" || req.Header.Get(apitype.HeaderCSRF) != "csrf2" || req.Header.Get(apitype.HeaderClientAddr) != "192.0.2.7" {
		t.Fatalf("As headers = %v", req.Header)
	}
	base.Identity(ctx)
	if req, _ = rec.last(); req.Header.Get(apitype.HeaderSession) != "sess1" {
		t.Fatalf("As changed the client it was made from: %v", req.Header)
	}
	tok := New(sock, WithBearer("omt_secret"))
	defer tok.Close()
	tok.Identity(ctx)
	if req, _ = rec.last(); req.Header.Get("Authorization") != "Bearer omt_secret" || req.Header.Get(apitype.HeaderSession) != "" {
		t.Fatalf("bearer headers = %v", req.Header)
	}
	root := New(sock)
	defer root.Close()
	root.Identity(ctx)
	if req, _ = rec.last(); req.Header.Get("Authorization") != "" || req.Header.Get(apitype.HeaderSession) != "" || req.Header.Get(apitype.HeaderClientAddr) != "" {
		t.Fatalf("a client without credentials sent %v", req.Header)
	}
}

// TestRequestsAndPaths: each call sends its method, path and body.
func TestRequestsAndPaths(t *testing.T) {
	var rec recorder
	sock := rec.serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete || r.URL.Path == "/api/v1/logout" || r.URL.Path == "/api/v1/reset" || r.URL.Path == "/api/v1/password" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Write([]byte("{}"))
	})
	c := New(sock)
	defer c.Close()
	ctx := context.Background()
	calls := []struct {
		do           func() error
		method, path string
		body         string
	}{
		{func() error { _, err := c.Login(ctx, "alice", "pw"); return err }, "POST", "/api/v1/login", `{"username":"alice","password":"pw"}`},
		{func() error { return c.Logout(ctx) }, "POST", "/api/v1/logout", ""},
		{func() error { _, err := c.SetupState(ctx); return err }, "GET", "/api/v1/setup", ""},
		{func() error {
			_, err := c.Setup(ctx, apitype.SetupRequest{Token: "t", Username: "u", Password: "p"})
			return err
		}, "POST", "/api/v1/setup", `{"token":"t","username":"u","password":"p"}`},
		{func() error { return c.CompleteReset(ctx, "omr_x", "pw") }, "POST", "/api/v1/reset", `{"token":"omr_x","password":"pw"}`},
		{func() error { return c.ChangePassword(ctx, "a", "b") }, "POST", "/api/v1/password", `{"current_password":"a","new_password":"b"}`},
		{func() error { _, err := c.Users(ctx); return err }, "GET", "/api/v1/users", ""},
		{func() error { _, err := c.User(ctx, "a/b"); return err }, "GET", "/api/v1/users/a%2Fb", ""},
		{func() error {
			_, err := c.CreateUser(ctx, apitype.UserCreate{Username: "bob", Role: "auditor"})
			return err
		}, "POST", "/api/v1/users", `{"username":"bob","role":"auditor"}`},
		{func() error { _, err := c.DisableUser(ctx, "bob"); return err }, "POST", "/api/v1/users/bob/disable", ""},
		{func() error { _, err := c.EnableUser(ctx, "bob"); return err }, "POST", "/api/v1/users/bob/enable", ""},
		{func() error { _, err := c.ResetUser(ctx, "bob"); return err }, "POST", "/api/v1/users/bob/reset", ""},
		{func() error { _, err := c.SetUserRole(ctx, "bob", "admin"); return err }, "PUT", "/api/v1/users/bob/role", `{"role":"admin"}`},
		{func() error { _, err := c.Tokens(ctx); return err }, "GET", "/api/v1/tokens", ""},
		{func() error {
			_, err := c.CreateToken(ctx, apitype.TokenCreate{Name: "ci", Role: "operator"})
			return err
		}, "POST", "/api/v1/tokens", `{"name":"ci","role":"operator"}`},
		{func() error { return c.RevokeToken(ctx, 42) }, "DELETE", "/api/v1/tokens/42", ""},
		{func() error { _, err := c.Report(ctx); return err }, "GET", "/api/v1/report", ""},
		{func() error { _, err := c.ReportHTML(ctx); return err }, "GET", "/api/v1/report.html", ""},
		{func() error { _, err := c.OpenAPI(ctx); return err }, "GET", "/api/v1/openapi.json", ""},
	}
	for _, call := range calls {
		if err := call.do(); err != nil {
			t.Errorf("%s %s: %v", call.method, call.path, err)
			continue
		}
		req, body := rec.last()
		if req.Method != call.method || req.URL.EscapedPath() != call.path || body != call.body {
			t.Errorf("sent %s %s %q, want %s %s %q", req.Method, req.URL.EscapedPath(), body, call.method, call.path, call.body)
		}
	}
}

// TestRefusals: a 429 is a *RateLimitedError with Retry-After (bounded),
// a 400 naming fields an *InvalidError, both still an *Error.
func TestRefusals(t *testing.T) {
	retry := "90"
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/login":
			w.Header().Set("Retry-After", retry)
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":"too many attempts"}`))
		default:
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(apitype.Invalid{Error: "password: too short", Problems: []apitype.Problem{{Path: "password", Code: "invalid", Reason: "too short"}}})
		}
	})
	c := New(sock)
	defer c.Close()
	ctx := context.Background()
	for _, tt := range []struct {
		header string
		want   time.Duration
	}{{"90", 90 * time.Second}, {"", time.Second}, {"-5", time.Second}, {"99999999999999", 24 * time.Hour}, {"soon", time.Second}} {
		retry = tt.header
		_, err := c.Login(ctx, "a", "b")
		var rl *RateLimitedError
		var ae *Error
		if !errors.As(err, &rl) || rl.RetryAfter != tt.want || !errors.As(err, &ae) || ae.Status != 429 || !IsStatus(err, 429) {
			t.Errorf("429 with Retry-After %q = %#v, want RetryAfter %v", tt.header, err, tt.want)
		}
	}
	_, err := c.CreateUser(ctx, apitype.UserCreate{})
	var inv *InvalidError
	if !errors.As(err, &inv) || len(inv.Problems) != 1 || inv.Problems[0].Path != "password" || !IsStatus(err, 400) {
		t.Errorf("400 with problems = %#v", err)
	}
}
