package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
)

// TestRootWithoutCredentialsIsSystem: the CLI as root keeps working
// without a session, as an admin.
func TestRootWithoutCredentialsIsSystem(t *testing.T) {
	e := newAuthEnv(t)
	a := e.root.do("GET", "/api/v1/whoami", nil, nil)
	var w apitype.Whoami
	a.decode(t, &w)
	if a.status != 200 || w.Kind != apitype.KindSystem || w.User != "root" || w.Role != "admin" || w.CSRFToken != "" ||
		!slices.Contains(w.Actions, auth.ActionUsersWrite) || w.Peer == nil || w.Peer.UID != 0 {
		t.Fatalf("whoami as root = %s", a)
	}
	// HEAD is GET's, rules and all.
	if a := e.root.do("HEAD", "/api/v1/whoami", nil, nil); a.status != 200 {
		t.Errorf("HEAD /api/v1/whoami as root = %s", a)
	}
	if os.Geteuid() == 0 {
		if a := e.other.do("HEAD", "/api/v1/whoami", nil, nil); a.status != http.StatusUnauthorized {
			t.Errorf("HEAD /api/v1/whoami as uid %d = %s, want 401", consoleUID, a)
		}
	}
}

// TestOtherUIDNeedsCredentials: a peer other than root (the console)
// without a session gets 401 on every route but the public ones.
func TestOtherUIDNeedsCredentials(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	for _, p := range []string{"/api/v1/whoami", "/api/v1/audit", "/api/v1/users", "/api/v1/version"} {
		if a := e.other.do("GET", p, nil, nil); a.status != http.StatusUnauthorized {
			t.Errorf("GET %s as uid %d without credentials = %s, want 401", p, consoleUID, a)
		}
	}
	for _, p := range []string{"/healthz", "/api/v1/setup", "/api/v1/openapi.json"} {
		if a := e.other.do("GET", p, nil, nil); a.status != http.StatusOK {
			t.Errorf("GET %s (public) as uid %d = %s, want 200", p, consoleUID, a)
		}
	}
}

// TestSetupOnce: the first admin comes from the setup token, once; a wrong
// token is refused with the sentinel's message alone; afterwards setup
// answers 409 and GET /setup says done.
func TestSetupOnce(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	var st apitype.SetupState
	if a := e.other.do("GET", "/api/v1/setup", nil, nil); a.status != 200 {
		t.Fatalf("GET /setup = %s", a)
	} else if a.decode(t, &st); st.Done {
		t.Fatalf("setup done before setup: %s", a)
	}
	bad := e.other.do("POST", "/api/v1/setup", nil, apitype.SetupRequest{Token: "wrongwrongwrongwrongwrongwrong22", Username: "admin", Password: adminPass})
	if bad.status != http.StatusForbidden || errorOf(bad) != auth.ErrSetupToken.Error() {
		t.Fatalf("setup with a wrong token = %s, want 403 %q", bad, auth.ErrSetupToken)
	}
	s := e.setup()
	if s.User != "admin" || s.Role != "admin" || s.SessionID == "" || s.CSRFToken == "" || s.IdleTimeoutS != int64(auth.DefaultIdleTimeout.Seconds()) {
		t.Fatalf("setup session = %+v", s)
	}
	again := e.other.do("POST", "/api/v1/setup", nil, apitype.SetupRequest{Token: setupToken, Username: "admin2", Password: adminPass})
	if again.status != http.StatusConflict {
		t.Fatalf("second setup = %s, want 409", again)
	}
	a := e.other.do("GET", "/api/v1/setup", nil, nil)
	if a.decode(t, &st); !st.Done {
		t.Fatalf("GET /setup after setup = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/whoami", s.read(), nil); a.status != 200 {
		t.Fatalf("whoami with the setup session = %s", a)
	}
}

// TestSessionAndCSRF: a session reads without its CSRF token but changes
// nothing without it (403, audited with the user, role and address);
// logout ends it.
func TestSessionAndCSRF(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	s := e.setup()
	var w apitype.Whoami
	a := e.other.do("GET", "/api/v1/whoami", s.read(), nil)
	if a.decode(t, &w); w.Kind != apitype.KindSession || w.User != "admin" || w.CSRFToken != s.CSRFToken || w.Peer == nil || w.Peer.UID != consoleUID {
		t.Fatalf("whoami = %s", a)
	}
	h := s.read()
	h[apitype.HeaderClientAddr] = "192.0.2.7"
	body := apitype.UserCreate{Username: "bob", Role: "operator"}
	for _, csrf := range []string{"", "wrong", s.CSRFToken + "x"} {
		if csrf != "" {
			h[apitype.HeaderCSRF] = csrf
		}
		if a := e.other.do("POST", "/api/v1/users", h, body); a.status != http.StatusForbidden {
			t.Fatalf("POST /users with CSRF %q = %s, want 403", csrf, a)
		}
	}
	rec, ok := e.lastAudit("api.refused")
	if d := auditDetail(t, rec); !ok || rec.Actor != "user:admin" || d["role"] != "admin" || d["address"] != "192.0.2.7" || d["outcome"] != "refused" ||
		rec.Target != "POST /api/v1/users" {
		t.Fatalf("refusal audit record = %+v %v", rec, d)
	}
	if a := e.other.do("POST", "/api/v1/users", s.change(), body); a.status != http.StatusCreated {
		t.Fatalf("POST /users with the CSRF token = %s", a)
	}
	if a := e.other.do("POST", "/api/v1/logout", s.read(), nil); a.status != http.StatusForbidden {
		t.Fatalf("logout without CSRF = %s, want 403", a)
	}
	if a := e.other.do("POST", "/api/v1/logout", s.change(), nil); a.status != http.StatusNoContent {
		t.Fatalf("logout = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/whoami", s.read(), nil); a.status != http.StatusUnauthorized {
		t.Fatalf("whoami after logout = %s, want 401", a)
	}
}

// TestClientAddr: the browser's address is believed from the console's
// uid, and not from root; a malformed one is refused naming the header.
func TestClientAddr(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	s := e.setup()
	h := s.read()
	h[apitype.HeaderClientAddr] = "::ffff:198.51.100.9"
	e.other.do("POST", "/api/v1/login", h, apitype.LoginRequest{Username: "admin", Password: "not the password"})
	if rec, _ := e.lastAudit("auth.login"); auditDetail(t, rec)["address"] != "198.51.100.9" {
		t.Errorf("failed login from the console: address %v, want 198.51.100.9", auditDetail(t, rec)["address"])
	}
	e.root.do("POST", "/api/v1/login", map[string]string{apitype.HeaderClientAddr: "198.51.100.10"}, apitype.LoginRequest{Username: "admin", Password: "not the password"})
	if rec, _ := e.lastAudit("auth.login"); auditDetail(t, rec)["address"] != "local:uid=0" {
		t.Errorf("failed login from root claiming an address: address %v, want local:uid=0", auditDetail(t, rec)["address"])
	}
	for _, bad := range []string{"example.com", "192.0.2.1:80", "fe80::1%eth0", "192.0.2.1\x00"} {
		h[apitype.HeaderClientAddr] = bad
		a := e.other.do("GET", "/api/v1/whoami", h, nil)
		var inv apitype.Invalid
		if a.decode(t, &inv); a.status != http.StatusBadRequest || len(inv.Problems) != 1 || inv.Problems[0].Path != apitype.HeaderClientAddr {
			t.Errorf("client address %q = %s, want 400 naming the header", bad, a)
		}
	}
}

// TestBearerTokens: a token acts with its role; Authorization that is not
// a bearer token, and a session and a token together, are 401.
func TestBearerTokens(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	s := e.setup()
	op := e.token(s, "ci", auth.RoleOperator)
	if a := e.other.do("GET", "/api/v1/whoami", bearer(op), nil); a.status != 200 {
		t.Fatalf("whoami with a token = %s", a)
	} else {
		var w apitype.Whoami
		if a.decode(t, &w); w.Kind != apitype.KindToken || w.User != "token:ci" || w.Role != "operator" || w.CSRFToken != "" {
			t.Fatalf("whoami with a token = %s", a)
		}
	}
	if a := e.other.do("GET", "/api/v1/tokens", bearer(op), nil); a.status != http.StatusForbidden {
		t.Errorf("operator token listing tokens = %s, want 403", a)
	}
	// A token needs no CSRF token: no browser sends it by itself.
	if a := e.other.do("POST", "/api/v1/users", bearer(op), apitype.UserCreate{Username: "x", Role: "admin"}); a.status != http.StatusForbidden {
		t.Errorf("operator token creating a user = %s, want 403", a)
	}
	both := bearer(op)
	both[apitype.HeaderSession] = s.SessionID
	for name, h := range map[string]map[string]string{
		"basic":   {apitype.HeaderAuthorization: "Basic YWRtaW46eA=="},
		"empty":   {apitype.HeaderAuthorization: "Bearer "},
		"unknown": bearer("omt_" + "0000000000000000000000000000000000000000000"),
		"both":    both,
	} {
		if a := e.other.do("GET", "/api/v1/whoami", h, nil); a.status != http.StatusUnauthorized {
			t.Errorf("%s credentials = %s, want 401", name, a)
		}
	}
	if a := e.other.do("DELETE", "/api/v1/tokens/1", s.change(), nil); a.status != http.StatusNoContent {
		t.Fatalf("revoking = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/whoami", bearer(op), nil); a.status != http.StatusUnauthorized {
		t.Errorf("revoked token = %s, want 401", a)
	}
}

// TestLoginRateLimited: failed logins beyond the account's burst are 429
// with Retry-After in whole seconds.
func TestLoginRateLimited(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t, func(o *auth.Options, _ *Deps) { o.AccountLimit = auth.Limit{Burst: 2, Window: time.Hour} })
	e.setup()
	var last answer
	for range 3 {
		last = e.other.do("POST", "/api/v1/login", nil, apitype.LoginRequest{Username: "admin", Password: "not the password at all"})
	}
	secs, err := strconv.Atoi(last.header.Get("Retry-After"))
	if last.status != http.StatusTooManyRequests || err != nil || secs < 1 || secs > 3600 {
		t.Fatalf("third failed login = %s, Retry-After %q; want 429 with seconds", last, last.header.Get("Retry-After"))
	}
}

// TestPublicRouteIgnoresStaleSession: a browser whose cookie expired still
// logs in; the stale session is not a reason to refuse.
func TestPublicRouteIgnoresStaleSession(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	e.setup()
	h := map[string]string{apitype.HeaderSession: "AAAAAAAAAAAAAAAAAAAAAA"}
	if a := e.other.do("POST", "/api/v1/login", h, apitype.LoginRequest{Username: "admin", Password: adminPass}); a.status != 200 {
		t.Fatalf("login with a stale session = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/whoami", h, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("whoami with the stale session = %s, want 401", a)
	}
}

// TestLoginRotatesSession: logging in with a session ends it.
func TestLoginRotatesSession(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	s := e.setup()
	a := e.other.do("POST", "/api/v1/login", s.read(), apitype.LoginRequest{Username: "admin", Password: adminPass})
	var next apitype.Session
	if a.decode(t, &next); a.status != 200 || next.SessionID == s.SessionID {
		t.Fatalf("login = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/whoami", s.read(), nil); a.status != http.StatusUnauthorized {
		t.Fatalf("the session from before the login = %s, want 401", a)
	}
}

func TestUnknownRoute404(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/nope"}, {"DELETE", "/api/v1/users"}, {"GET", "/api/v1/users/"}, {"OPTIONS", "/api/v1/whoami"},
		{"GET", "/api/v1//users"}, {"GET", "/API/v1/whoami"},
	} {
		for _, pc := range []peerClient{e.root, e.other} {
			if a := pc.do(c.method, c.path, nil, nil); a.status != http.StatusNotFound {
				t.Errorf("%s %s as uid %d = %s, want 404", c.method, c.path, pc.uid, a)
			}
		}
	}
}

// TestAuthErrorStatus maps each auth error to its status.
func TestAuthErrorStatus(t *testing.T) {
	s := New(Deps{})
	tests := []struct {
		err  error
		code int
		msg  string
	}{
		{auth.ErrBadCredentials, 401, auth.ErrBadCredentials.Error()},
		{fmt.Errorf("%w: session expired", auth.ErrUnauthenticated), 401, "not authenticated: session expired"},
		{fmt.Errorf("x: %w", auth.ErrForbidden), 403, "x: forbidden"},
		{auth.ErrCSRF, 403, auth.ErrCSRF.Error()},
		{fmt.Errorf("%w: no user", auth.ErrNotFound), 404, "not found: no user"},
		{fmt.Errorf("%w: exists", auth.ErrConflict), 409, "conflict: exists"},
		{auth.ErrSetupDone, 409, auth.ErrSetupDone.Error()},
		{fmt.Errorf("%w: it expired", auth.ErrSetupToken), 403, auth.ErrSetupToken.Error()},
		{fmt.Errorf("%w: used", auth.ErrResetToken), 403, auth.ErrResetToken.Error()},
		{&auth.InvalidError{Field: "password", Reason: "too short"}, 400, "password: too short"},
		{&auth.RateLimitError{RetryAfter: 90 * time.Second}, 429, "too many attempts; try again in 1m30s"},
		{errors.New("disk on fire"), 500, "disk on fire"},
	}
	for _, tt := range tests {
		app := fiber.New(fiber.Config{ErrorHandler: s.errorHandler})
		app.Get("/", func(c *fiber.Ctx) error { return s.authError(c, tt.err) })
		resp, err := app.Test(httptest.NewRequest("GET", "/", nil))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		var e apitype.Error
		json.Unmarshal(body, &e)
		if resp.StatusCode != tt.code || e.Error != tt.msg {
			t.Errorf("%v = %d %s, want %d %q", tt.err, resp.StatusCode, body, tt.code, tt.msg)
		}
		if tt.code == 429 && resp.Header.Get("Retry-After") != "90" {
			t.Errorf("Retry-After = %q, want 90", resp.Header.Get("Retry-After"))
		}
	}
}

func TestCallerString(t *testing.T) {
	for _, c := range []struct {
		p    auth.Principal
		want string
	}{
		{auth.Principal{Kind: auth.KindSession, User: "alice", Role: auth.RoleAdmin, Address: "192.0.2.7"}, "user:alice (admin) from 192.0.2.7"},
		{auth.Principal{Kind: auth.KindToken, User: "token:ci", Role: auth.RoleOperator, Address: "local:uid=1000"}, "token:ci (operator) from local:uid=1000"},
		{func() auth.Principal { p := auth.System("root"); p.Address = "local:uid=0"; return p }(), "system:root (admin) from local:uid=0"},
		{auth.Principal{Address: "192.0.2.8"}, "anonymous (no role) from 192.0.2.8"},
	} {
		if got := callerOf(c.p).String(); got != c.want {
			t.Errorf("callerOf(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}
