package ui

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/ui/uitest"
)

const testPassword = "correct horse battery staple"

// env is a console in front of a fake omertad.
type env struct {
	t    testing.TB
	s    *Server
	fake *uitest.Fake
}

func newEnv(t testing.TB, lim Limits) *env { return newEnvMode(t, lim, false) }

// newEnvMode is newEnv with the shared client's raw forwarding (see
// Forwarder) when raw, as the console runs; without raw, the client's
// Forward is hidden, so that the console decodes and encodes each answer
// (its path for a backend that cannot forward raw).
func newEnvMode(t testing.TB, lim Limits, raw bool) *env {
	t.Helper()
	fake := uitest.Start(t)
	client := fake.Client()
	t.Cleanup(client.Close)
	var be Backend = ClientBackend{C: client}
	if !raw {
		be = typedBackend{be}
	}
	s, err := New(Options{Backend: be, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, fake: fake}
}

// user is a signed-in person: the cookie and the CSRF token.
type user struct {
	cookie string
	csrf   string
}

func (e *env) signIn(name, role string) user {
	e.fake.AddUser(name, role, testPassword)
	id, csrf := e.fake.NewSession(name)
	return user{cookie: CookieName + "=" + id, csrf: csrf}
}

// req builds a request as a same-origin browser would send it.
func req(method, target string, body string, u *user) *http.Request {
	r, _ := http.NewRequest(method, "https://console.test"+target, strings.NewReader(body))
	r.Host = "console.test"
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if strings.HasPrefix(body, "{") || strings.HasPrefix(body, "[") {
			r.Header.Set("Content-Type", "application/json")
		}
	}
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if method != http.MethodGet {
		r.Header.Set("Origin", "https://console.test")
	}
	if u != nil {
		r.Header.Set("Cookie", u.cookie)
	}
	return r
}

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

// do sends r through the app in memory.
func (e *env) do(r *http.Request) (*http.Response, string) {
	e.t.Helper()
	resp, err := e.s.App().Test(r, -1)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (e *env) get(target string, u *user) (*http.Response, string) {
	return e.do(req(http.MethodGet, target, "", u))
}

func (e *env) post(target, body string, u *user) (*http.Response, string) {
	return e.do(req(http.MethodPost, target, body, u))
}

func wantStatus(t testing.TB, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		if len(body) > 2000 {
			body = body[:2000] + "…"
		}
		t.Fatalf("%s %s = %d, want %d; body:\n%s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, body)
	}
}

func wantContains(t testing.TB, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %q", s)
		}
	}
}

func wantNotContains(t testing.TB, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(body, s) {
			t.Errorf("body has %q", s)
		}
	}
}

// serveTLS serves the console over TLS on loopback and returns its
// address and a client that trusts its development certificate.
func (e *env) serveTLS() (string, *http.Client) {
	e.t.Helper()
	dir := e.t.TempDir()
	leaf, certPath, keyPath, err := EnsureDevCert(dir, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	conf, _, err := TLSConfig(certPath, keyPath)
	if err != nil {
		e.t.Fatal(err)
	}
	e.s.tls = conf
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go e.s.Serve(ln)
	e.t.Cleanup(func() { e.s.app.ShutdownWithTimeout(2 * time.Second) })
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	e.t.Cleanup(c.CloseIdleConnections)
	return ln.Addr().String(), c
}

var (
	inlineScript = regexp.MustCompile(`(?i)<script(\s[^>]*)?>`)
	inlineStyle  = regexp.MustCompile(`(?i)\sstyle\s*=`)
	inlineEvent  = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleTag     = regexp.MustCompile(`(?i)<style[\s>]`)
	urlAttr      = regexp.MustCompile(`(?i)\s(src|href|action|formaction|poster|data)\s*=\s*"([^"]*)"`)
	jsURL        = regexp.MustCompile(`(?i)javascript:`)
)

// checkCSPClean fails for anything in a page that the Content-Security-
// Policy would block or that loads from elsewhere.
func checkCSPClean(t testing.TB, name, page string) {
	t.Helper()
	for _, m := range inlineScript.FindAllStringSubmatch(page, -1) {
		if !strings.Contains(strings.ToLower(m[1]), "src=") {
			t.Errorf("%s: inline <script>: %q", name, m[0])
		}
	}
	if m := inlineStyle.FindString(page); m != "" {
		t.Errorf("%s: style attribute: %q", name, m)
	}
	if m := inlineEvent.FindString(page); m != "" {
		t.Errorf("%s: event handler attribute: %q", name, m)
	}
	if styleTag.MatchString(page) {
		t.Errorf("%s: <style> element", name)
	}
	if jsURL.MatchString(page) {
		t.Errorf("%s: javascript: URL", name)
	}
	for _, m := range urlAttr.FindAllStringSubmatch(page, -1) {
		u := m[2]
		if !(strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//")) && !strings.HasPrefix(u, "#") && !strings.HasPrefix(u, "?") {
			t.Errorf("%s: %s=%q is not on this origin", name, m[1], u)
		}
	}
}

// brokenClient is a client of a socket nobody listens on.
func brokenClient(t testing.TB) *apiclient.Client {
	c := apiclient.New(t.TempDir()+"/none.sock", apiclient.WithTimeout(time.Second))
	t.Cleanup(c.Close)
	return c
}

// typedBackend hides the client's Forward.
type typedBackend struct{ b Backend }

func (t typedBackend) For(id Identity) API { return typedAPI{t.b.For(id)} }

// typedAPI is every call of API and nothing else: no Forward.
type typedAPI struct{ API }

// bothModes runs f with the typed forwarding and with the raw one.
func bothModes(t *testing.T, f func(t *testing.T, raw bool)) {
	t.Run("typed", func(t *testing.T) { f(t, false) })
	t.Run("raw", func(t *testing.T) { f(t, true) })
}
