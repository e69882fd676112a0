package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/ui/uitest"
)

// The agent's answer is served under the sandboxing policy, not the
// console's; the browser's cookie and any credential of its own never
// reach omertad's agent route (the session goes as X-Omerta-Session);
// the path and query are passed as written.
func TestAgentUIForwardsUnderSandbox(t *testing.T) {
	e := newEnvMode(t, Limits{}, true)
	e.fake.AddUIAgent("web", "gateway")
	op := e.signIn("olga", "operator")
	r := req(http.MethodGet, "/agents/web/ui/a%20b/c?x=1&y=two%20words", "", &op)
	r.Header.Set("Authorization", "Bearer omt_stolen")
	r.Header.Set("X-Omerta-Session", "forged")
	r.Header.Set("Accept-Language", "fr")
	resp, body := e.do(r)
	wantStatus(t, resp, body, http.StatusOK)
	if got := resp.Header.Get("Content-Security-Policy"); got != AgentUIPolicy {
		t.Errorf("CSP = %q, want the agent UI's sandbox", got)
	}
	if !strings.HasPrefix(AgentUIPolicy, "sandbox ") || strings.Contains(AgentUIPolicy, "allow-scripts") {
		t.Errorf("the agent UI's policy must sandbox without scripts: %s", AgentUIPolicy)
	}
	if resp.Header.Get("Set-Cookie") != "" || resp.Header.Get("X-Omerta-Agent-Ui") != "" {
		t.Errorf("the agent's cookie or omertad's marker reached the browser: %v", resp.Header)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Referrer-Policy") != "same-origin" {
		t.Errorf("security headers = %v", resp.Header)
	}
	var got uitest.AgentUIRequest
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got.Method != "GET" || got.Path != "/a b/c" || got.Query != "x=1&y=two%20words" {
		t.Errorf("omertad got %s %s ? %s", got.Method, got.Path, got.Query)
	}
	if got.Header.Get("Cookie") != "" || got.Header.Get("Authorization") != "" {
		t.Errorf("credentials of the browser went to omertad: %v", got.Header)
	}
	if s := got.Header.Get(apitype.HeaderSession); s == "forged" || !strings.Contains(op.cookie, s) || s == "" {
		t.Errorf("session sent = %q, want the cookie's", s)
	}
	if got.Header.Get("Accept-Language") != "fr" {
		t.Errorf("Accept-Language not passed: %v", got.Header)
	}

	// The console's own pages keep the console's policy.
	resp, body = e.get("/agents/web", &op)
	wantStatus(t, resp, body, http.StatusOK)
	if resp.Header.Get("Content-Security-Policy") != ContentSecurityPolicy {
		t.Errorf("agent page CSP = %q", resp.Header.Get("Content-Security-Policy"))
	}
	wantContains(t, body, `href="/agents/web/ui/"`, `data-testid="agent-ui-link"`)
}

// Without a session the UI is the login page's; a redirect of the agent
// stays in its UI; /ui without its slash goes to /ui/.
func TestAgentUISessionAndRedirects(t *testing.T) {
	e := newEnvMode(t, Limits{}, true)
	e.fake.AddUIAgent("web", "gateway")
	e.fake.AddUser("admin", "admin", testPassword) // setup is done
	resp, body := e.get("/agents/web/ui/", nil)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "/login") {
		t.Errorf("without a session: Location %q", loc)
	}
	op := e.signIn("olga", "operator")
	resp, body = e.get("/agents/web/ui", &op)
	wantStatus(t, resp, body, http.StatusFound)
	if loc := resp.Header.Get("Location"); loc != "/agents/web/ui/" {
		t.Errorf("/ui: Location %q", loc)
	}
	resp, body = e.get("/agents/web/ui/redirect", &op)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/agents/web/ui/done" {
		t.Errorf("the agent's redirect: Location %q", loc)
	}
	for loc, want := range map[string]string{"/x": "/p/x", "/p/y": "/p/y", "z": "z", "https://evil.test/": "/p/", "//evil.test/": "/p/", "/\\evil": "/p/"} {
		if got := agentUILocation("/p", loc); got != want {
			t.Errorf("agentUILocation(%q) = %q, want %q", loc, got, want)
		}
	}
}

// A change needs no CSRF token (the agent's forms cannot know it) but
// must come from a page of the same agent's UI; the console then sends
// the session's token, as omertad wants.
func TestAgentUIChangesComeFromItsOwnPages(t *testing.T) {
	e := newEnvMode(t, Limits{}, true)
	e.fake.AddUIAgent("web", "gateway")
	e.fake.AddUIAgent("other", "gateway")
	op := e.signIn("olga", "operator")
	post := func(referer string) (*http.Response, string) {
		r := req(http.MethodPost, "/agents/web/ui/form", "text=hi", &op)
		if referer != "" {
			r.Header.Set("Referer", referer)
		}
		return e.do(r)
	}
	resp, body := post("https://console.test/agents/web/ui/")
	wantStatus(t, resp, body, http.StatusOK)
	var got uitest.AgentUIRequest
	json.Unmarshal([]byte(body), &got)
	if got.Method != "POST" || got.Body != "text=hi" || got.Header.Get(apitype.HeaderCSRF) != op.csrf {
		t.Errorf("omertad got %s %q with CSRF %q", got.Method, got.Body, got.Header.Get(apitype.HeaderCSRF))
	}
	for _, ref := range []string{"", "https://console.test/agents/other/ui/", "https://console.test/agents/web", "https://evil.test/agents/web/ui/",
		"http://console.test/agents/web/ui/"} {
		resp, body := post(ref)
		wantStatus(t, resp, body, http.StatusForbidden)
	}
	// Another site's post is refused before (sameOrigin).
	r := req(http.MethodPost, "/agents/web/ui/form", "text=hi", &op)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.Header.Set("Referer", "https://console.test/agents/web/ui/")
	resp, body = e.do(r)
	wantStatus(t, resp, body, http.StatusForbidden)
}

// omertad's refusals are the console's pages, with the reason: an agent
// without a network (whose page says so instead of linking), a role that
// may not, an agent that does not exist.
func TestAgentUIRefusals(t *testing.T) {
	e := newEnvMode(t, Limits{}, true)
	e.fake.AddUIAgent("quiet", "none")
	op := e.signIn("olga", "operator")
	resp, body := e.get("/agents/quiet/ui/", &op)
	wantStatus(t, resp, body, http.StatusConflict)
	wantContains(t, body, "spec.network.mode")
	if resp.Header.Get("Content-Security-Policy") != ContentSecurityPolicy {
		t.Error("a refusal page is the console's and keeps its policy")
	}
	resp, body = e.get("/agents/quiet", &op)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="agent-ui-note"`, "spec.network.mode is none")
	wantNotContains(t, body, `href="/agents/quiet/ui/"`)
	aud := e.signIn("audrey", "auditor")
	resp, body = e.get("/agents/quiet/ui/", &aud)
	wantStatus(t, resp, body, http.StatusForbidden)
	resp, body = e.get("/agents/nosuch/ui/", &op)
	wantStatus(t, resp, body, http.StatusNotFound)
	resp, body = e.do(req("OPTIONS", "/agents/quiet/ui/", "", &op))
	wantStatus(t, resp, body, http.StatusMethodNotAllowed)
}

// FuzzAgentUILocation: whatever the agent answers in Location, the
// browser is sent inside the console, and inside the agent's UI unless
// the agent wrote a relative reference.
func FuzzAgentUILocation(f *testing.F) {
	for _, s := range []string{"/x", "/agents/web/ui/y", "z", "https://evil.test/", "//evil", "/\\evil", " //evil", "\t/evil", "javascript:alert(1)", "%2F%2Fevil"} {
		f.Add(s)
	}
	const prefix = "/agents/web/ui"
	f.Fuzz(func(t *testing.T, loc string) {
		got := agentUILocation(prefix, loc)
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(got, "//") || !plainURLText(got) {
			t.Fatalf("agentUILocation(%q) = %q: not a reference inside the console", loc, got)
		}
		if strings.HasPrefix(got, "/") && got != prefix && !strings.HasPrefix(got, prefix+"/") {
			t.Fatalf("agentUILocation(%q) = %q: outside the agent's UI", loc, got)
		}
	})
}
