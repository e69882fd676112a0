package ui

import (
	"net/http"
	"strings"
	"testing"
)

func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	e := newEnv(t, Limits{Body: 1024})
	admin := e.signIn("alice", "admin")
	cases := []struct {
		name string
		r    *http.Request
	}{
		{"page", req("GET", "/", "", &admin)},
		{"login", req("GET", "/login", "", nil)},
		{"redirect", req("GET", "/agents", "", nil)},
		{"static", req("GET", "/static/app.css", "", nil)},
		{"api", req("GET", "/api/v1/agents", "", &admin)},
		{"api refused by omertad", req("GET", "/api/v1/users", "", nil)},
		{"not on the allow-list", req("GET", "/api/v1/nothing", "", &admin)},
		{"no such page", req("GET", "/nothing", "", &admin)},
		{"cross-site refusal", func() *http.Request {
			r := req("POST", "/login", form("username", "a", "password", "b"), nil)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			return r
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := e.do(tc.r)
			for _, h := range securityHeaders {
				if got := resp.Header.Get(h[0]); got != h[1] {
					t.Errorf("%d: %s = %q, want %q", resp.StatusCode, h[0], got, h[1])
				}
			}
		})
	}
}

func TestContentSecurityPolicyIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
		"connect-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("CSP lacks %q", want)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("CSP allows something unsafe: %s", ContentSecurityPolicy)
	}
}

// cookieAttrs splits a Set-Cookie header into lower-cased attributes.
func cookieAttrs(sc string) (name, value string, attrs map[string]string) {
	parts := strings.Split(sc, ";")
	name, value, _ = strings.Cut(strings.TrimSpace(parts[0]), "=")
	attrs = map[string]string{}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		attrs[strings.ToLower(k)] = strings.ToLower(v)
	}
	return name, value, attrs
}

func TestSessionCookieSetAtLoginAndClearedAtLogout(t *testing.T) {
	e := newEnv(t, Limits{})
	e.fake.AddUser("alice", "admin", testPassword)
	resp, body := e.post("/login", form("username", "alice", "password", testPassword), nil)
	wantStatus(t, resp, body, http.StatusSeeOther)
	sc := resp.Header.Get("Set-Cookie")
	name, value, attrs := cookieAttrs(sc)
	if name != CookieName || value == "" {
		t.Fatalf("Set-Cookie = %q, want %s=<session>", sc, CookieName)
	}
	for _, a := range []string{"secure", "httponly"} {
		if _, ok := attrs[a]; !ok {
			t.Errorf("cookie lacks %s: %q", a, sc)
		}
	}
	if attrs["samesite"] != "strict" || attrs["path"] != "/" {
		t.Errorf("cookie SameSite/Path = %q/%q, want strict and /: %q", attrs["samesite"], attrs["path"], sc)
	}
	if _, ok := attrs["domain"]; ok {
		t.Errorf("a __Host- cookie must have no Domain: %q", sc)
	}
	u := user{cookie: CookieName + "=" + value}
	resp, body = e.get("/", &u)
	wantStatus(t, resp, body, http.StatusOK)
	csrf := metaCSRF(t, body)

	resp, body = e.post("/logout", form(CSRFField, csrf), &u)
	wantStatus(t, resp, body, http.StatusSeeOther)
	name, value, attrs = cookieAttrs(resp.Header.Get("Set-Cookie"))
	if name != CookieName || value != "" || (attrs["max-age"] != "0" && !strings.Contains(attrs["expires"], "1970") && !strings.Contains(attrs["expires"], "2009")) {
		t.Errorf("logout Set-Cookie = %q, want the cookie cleared", resp.Header.Get("Set-Cookie"))
	}
	// omertad ended the session: the old cookie no longer signs in.
	resp, _ = e.get("/", &u)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("after logout: %d to %q, want a redirect to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func metaCSRF(t testing.TB, page string) string {
	t.Helper()
	const p = `<meta name="csrf-token" content="`
	i := strings.Index(page, p)
	if i < 0 {
		t.Fatal("no csrf-token meta tag in the page")
	}
	rest := page[i+len(p):]
	return rest[:strings.IndexByte(rest, '"')]
}

func TestCSRFTokenInPagesAndForms(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(1)
	for _, p := range []string{"/", "/agents/agent-000", "/catalog/sample-http", "/users", "/tokens", "/tasks"} {
		_, body := e.get(p, &admin)
		if got := metaCSRF(t, body); got != admin.csrf {
			t.Errorf("%s: meta csrf-token = %q, want the session's", p, got)
		}
		// Every POST form carries the token.
		for _, f := range strings.Split(body, "<form")[1:] {
			f = f[:strings.Index(f, "</form>")]
			if strings.Contains(f, `method="post"`) && !strings.Contains(f, `name="csrf" value="`+admin.csrf+`"`) {
				t.Errorf("%s: a POST form without the CSRF token: <form%s", p, f[:min(len(f), 200)])
			}
		}
	}
}

func TestStateChangeNeedsTheCSRFToken(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(1)
	for _, tc := range []struct {
		name  string
		token string
	}{{"missing", ""}, {"wrong", "not-the-token"}, {"another session's", func() string { _, c := e.fake.NewSession("alice"); return c }()}} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.fake.Audit())
			resp, body := e.post("/agents/agent-000", form("action", "disable", CSRFField, tc.token), &admin)
			wantStatus(t, resp, body, http.StatusForbidden)
			if len(e.fake.Audit()) != before {
				t.Error("the refused change reached omertad")
			}
		})
	}
	resp, body := e.post("/agents/agent-000", form("action", "disable", CSRFField, admin.csrf), &admin)
	wantStatus(t, resp, body, http.StatusSeeOther)
	// The header works as well as the field.
	r := req("POST", "/agents/agent-000", form("action", "enable"), &admin)
	r.Header.Set(CSRFHeader, admin.csrf)
	resp, body = e.do(r)
	wantStatus(t, resp, body, http.StatusSeeOther)
}

func TestAPIStateChangeNeedsTheCSRFHeader(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(1)
	n := e.fake.Requests()
	resp, body := e.do(req("POST", "/api/v1/agents/agent-000/disable", "", &admin))
	wantStatus(t, resp, body, http.StatusForbidden)
	if e.fake.Requests() != n {
		t.Error("a session's change without a CSRF header reached omertad")
	}
	r := req("POST", "/api/v1/agents/agent-000/disable", "", &admin)
	r.Header.Set(CSRFHeader, "wrong")
	resp, body = e.do(r)
	wantStatus(t, resp, body, http.StatusForbidden) // omertad's verdict, forwarded
	r = req("POST", "/api/v1/agents/agent-000/disable", "", &admin)
	r.Header.Set(CSRFHeader, admin.csrf)
	resp, body = e.do(r)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `"desired":"disabled"`)
}

func TestCrossSiteRequestsRefused(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(1)
	change := func(site, mode, origin string) *http.Request {
		r := req("POST", "/agents/agent-000", form("action", "disable", CSRFField, admin.csrf), &admin)
		r.Header.Set("Sec-Fetch-Site", site)
		r.Header.Set("Sec-Fetch-Mode", mode)
		if origin == "-" {
			r.Header.Del("Origin")
		} else {
			r.Header.Set("Origin", origin)
		}
		return r
	}
	refused := []struct {
		name string
		r    *http.Request
	}{
		{"cross-site form post", change("cross-site", "navigate", "https://evil.example")},
		{"cross-site post claiming our origin", change("cross-site", "navigate", "https://console.test")},
		{"same-site post", change("same-site", "navigate", "https://other.console.test")},
		{"foreign origin without fetch metadata", change("", "", "https://evil.example")},
		{"null origin", change("", "", "null")},
		{"http origin", change("", "", "http://console.test")},
		{"origin on another port", change("", "", "https://console.test:444")},
		{"unknown fetch metadata", change("bogus", "navigate", "https://console.test")},
		{"cross-site API read", func() *http.Request {
			r := req("GET", "/api/v1/agents", "", &admin)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			r.Header.Set("Sec-Fetch-Mode", "cors")
			return r
		}()},
		{"cross-site subresource", func() *http.Request {
			r := req("GET", "/", "", &admin)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			r.Header.Set("Sec-Fetch-Mode", "no-cors")
			return r
		}()},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			n := e.fake.Requests()
			resp, body := e.do(tc.r)
			wantStatus(t, resp, body, http.StatusForbidden)
			if e.fake.Requests() != n {
				t.Error("the request reached omertad")
			}
		})
	}
	t.Run("cross-site navigation lands on a page", func(t *testing.T) {
		r := req("GET", "/", "", nil)
		r.Header.Set("Sec-Fetch-Site", "cross-site")
		r.Header.Set("Sec-Fetch-Mode", "navigate")
		resp, body := e.do(r)
		wantStatus(t, resp, body, http.StatusSeeOther) // to /login: no cookie comes cross-site
	})
	t.Run("same-origin post passes", func(t *testing.T) {
		resp, body := e.do(change("same-origin", "navigate", "https://console.test"))
		wantStatus(t, resp, body, http.StatusSeeOther)
	})
	// Browsers send Origin: null on a form post from a page whose
	// Referrer-Policy is no-referrer, as the console's pages are: the
	// console's own forms must still work (found with Chromium 156).
	t.Run("same-origin form post with a null origin passes", func(t *testing.T) {
		resp, body := e.do(change("same-origin", "navigate", "null"))
		wantStatus(t, resp, body, http.StatusSeeOther)
	})
	t.Run("a client without fetch metadata or origin passes", func(t *testing.T) {
		resp, body := e.do(change("", "", "-"))
		wantStatus(t, resp, body, http.StatusSeeOther)
	})
}

func TestMalformedCookieIsNoSession(t *testing.T) {
	e := newEnv(t, Limits{})
	e.fake.AddUser("alice", "admin", testPassword)
	n := e.fake.Requests()
	for _, v := range []string{"a b", "x;y", "short", strings.Repeat("a", 200), "üüüüüüüüüüüüüüüüüüüüüü", "aaaaaaaaaaaaaaaaaaaaa$"} {
		resp, _ := e.get("/", &user{cookie: CookieName + "=" + v})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("cookie %q: %d, want a redirect to sign in", v, resp.StatusCode)
		}
	}
	// Only "is setup done?" may have been asked (once: it latches).
	for _, h := range e.fake.Hits()[n:] {
		if h != "GET /api/v1/setup" {
			t.Errorf("a malformed cookie made the console call %s", h)
		}
	}
}
