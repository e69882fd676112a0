package ui

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// dashboardHits is the calls of hits to omertad's dashboard routes (the
// one call, or one of the calls section by section).
func dashboardHits(hits []string) []string {
	return slices.DeleteFunc(slices.Clone(hits), func(h string) bool { return h == "GET /api/v1/whoami" })
}

// frozenDashboard is a backend whose omertad answers GET /api/v1/dashboard
// with the bytes it last took from the fake (freeze), counting the calls;
// everything else goes to the fake. The fake's own answer differs on every
// call (its deploy window starts at the moment asked), omertad's changes
// with the data and the minute; this one changes when the test says.
type frozenDashboard struct {
	Backend
	mu    sync.Mutex
	body  []byte
	calls int
}

func (f *frozenDashboard) For(id Identity) API { return &frozenAPI{API: f.Backend.For(id), f: f} }

// freeze takes the fake's answer to u as the answer from now on.
func (f *frozenDashboard) freeze(t testing.TB, u user) {
	t.Helper()
	a := f.Backend.For(Identity{Session: strings.TrimPrefix(u.cookie, CookieName+"=")}).(Forwarder)
	resp, err := a.Forward(t.Context(), http.MethodGet, "/api/v1/dashboard", nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the fake's dashboard: %d %v", resp.StatusCode, err)
	}
	f.mu.Lock()
	f.body = b
	f.mu.Unlock()
}

type frozenAPI struct {
	API
	f *frozenDashboard
}

func (a *frozenAPI) Forward(ctx context.Context, method, pq string, h http.Header, body []byte, stream bool) (*http.Response, error) {
	if pq != "/api/v1/dashboard" {
		return a.API.(Forwarder).Forward(ctx, method, pq, h, body, stream)
	}
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	a.f.calls++
	return &http.Response{StatusCode: http.StatusOK, ContentLength: int64(len(a.f.body)), Body: io.NopCloser(bytes.NewReader(a.f.body))}, nil
}

// TestDashboardMemo: every dashboard asks omertad with its own session; a
// page is rendered again only when omertad's answer or the identity
// differs from the kept page's, and any change of a figure shows on the
// very next page.
func TestDashboardMemo(t *testing.T) {
	e := newEnvMode(t, Limits{}, true)
	fd := &frozenDashboard{Backend: e.s.be}
	e.s.be = fd
	e.fake.ServeDashboard(true)
	e.fake.AddAgents(3)
	e.fake.SetDeploys(10, 9)
	alice, amy := e.signIn("alice", "admin"), e.signIn("amy", "admin")
	fd.freeze(t, alice)
	page := func(u *user, want ...string) string {
		t.Helper()
		n := fd.calls
		resp, body := e.get("/", u)
		wantStatus(t, resp, body, http.StatusOK)
		if fd.calls != n+1 {
			t.Errorf("omertad's dashboard asked %d times, want once", fd.calls-n)
		}
		wantContains(t, body, want...)
		return body
	}
	renders := func(want int) {
		t.Helper()
		e.s.dash.mu.Lock()
		defer e.s.dash.mu.Unlock()
		if e.s.dash.renders != want {
			t.Errorf("%d pages rendered, want %d", e.s.dash.renders, want)
		}
	}
	first := page(&alice, `<strong id="agents-total">3</strong>`, `<strong id="deploy-rate">90.0 %</strong>`, alice.csrf)
	renders(1)
	if again := page(&alice); again != first {
		t.Error("the same answer for the same identity made another page")
	}
	renders(1)
	// Another session: its own page, with its own CSRF token.
	other := page(&amy, amy.csrf)
	wantNotContains(t, other, alice.csrf)
	renders(2)

	// A change in omertad shows on the next page of each.
	e.fake.AddAgents(4)
	fd.freeze(t, alice)
	page(&alice, `<strong id="agents-total">4</strong>`)
	page(&amy, `<strong id="agents-total">4</strong>`)
	renders(4)
	e.fake.SetDeploys(10, 10)
	fd.freeze(t, alice)
	page(&alice, `<strong id="deploy-rate">100.0 %</strong>`)
	renders(5)
	checkCSPClean(t, "kept dashboard", first)
}

// TestDashboardMemoSessionEnds: a kept page is never an answer to a
// session omertad no longer accepts, even while its identity is kept.
func TestDashboardMemoSessionEnds(t *testing.T) {
	e := newEnvMode(t, Limits{}, true)
	e.fake.ServeDashboard(true)
	admin, bob := e.signIn("alice", "admin"), e.signIn("bob", "operator")
	resp, body := e.get("/", &bob)
	wantStatus(t, resp, body, http.StatusOK)
	sid := strings.TrimPrefix(admin.cookie, CookieName+"=")
	if _, err := e.fake.Client().As(apiclient.Credentials{Session: sid, CSRF: admin.csrf}).DisableUser(t.Context(), "bob"); err != nil {
		t.Fatal(err)
	}
	resp, body = e.get("/", &bob) // whoami is kept for identityTTL: the dashboard call is refused
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("a disabled user's dashboard: %d to %q, want sent to sign in; body:\n%.500s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

// TestDashboardMemoOlderOmertad: an omertad without GET /dashboard (404)
// is asked section by section, once, and nothing is kept.
func TestDashboardMemoOlderOmertad(t *testing.T) {
	e := newEnvMode(t, Limits{}, true)
	e.fake.AddAgents(2)
	admin := e.signIn("alice", "admin")
	n := len(e.fake.Hits())
	resp, body := e.get("/", &admin)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `<strong id="agents-total">2</strong>`)
	hits := dashboardHits(e.fake.Hits()[n:])
	if k := len(slices.DeleteFunc(slices.Clone(hits), func(h string) bool { return h != "GET /api/v1/dashboard" })); k != 1 {
		t.Errorf("the dashboard route asked %d times (%v), want once", k, hits)
	}
	if len(hits) < 3 {
		t.Errorf("calls %v, want the sections asked one by one", hits)
	}
	if e.s.dash.renders != 0 {
		t.Errorf("%d pages kept from the calls one by one, want none", e.s.dash.renders)
	}
}

// TestDashboardMemoSameAsTyped: the page made from the raw answer is the
// page made from the typed call, byte for byte.
func TestDashboardMemoSameAsTyped(t *testing.T) {
	e := newEnvMode(t, Limits{}, true)
	e.fake.ServeDashboard(true)
	e.fake.AddAgents(5)
	for _, role := range []string{"admin", "operator", "auditor"} {
		u := e.signIn("u-"+role, role)
		_, kept := e.get("/", &u)
		w, err := e.s.be.For(Identity{Session: strings.TrimPrefix(u.cookie, CookieName+"=")}).Identity(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		a := typedAPI{e.s.be.For(Identity{Session: strings.TrimPrefix(u.cookie, CookieName+"=")})}
		dash, err := a.Dashboard(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		typed, err := e.s.renderBytes("dashboard", dashboardView(&w, dashboardFrom(&w, dash)))
		if err != nil {
			t.Fatal(err)
		}
		if string(typed) != kept {
			t.Errorf("%s: the kept page differs from the typed call's", role)
		}
	}
}

// TestDashboardMemoBound: past its bound the memo forgets every page.
func TestDashboardMemoBound(t *testing.T) {
	m := newDashboardMemo()
	m.max = 3
	for _, k := range []string{"a", "b", "c", "d"} {
		m.keep(k, &dashPage{})
		if len(m.pages) > m.max {
			t.Fatalf("%d pages past the bound %d", len(m.pages), m.max)
		}
	}
	if pg, _ := m.lookup("d"); pg == nil {
		t.Error("the newest page is gone")
	}
	m.keep("d", &dashPage{body: []byte("x")}) // a page replaced does not clear the others
	if len(m.pages) != 1 {
		t.Errorf("%d pages, want d alone", len(m.pages))
	}
}

// TestIdentityKey: identities that differ in anything a page shows have
// different keys.
func TestIdentityKey(t *testing.T) {
	base := apitype.Whoami{Kind: "session", User: "alice", Role: "admin", Actions: []string{"a", "b"}, CSRFToken: "t"}
	variants := []apitype.Whoami{base}
	for _, f := range []func(*apitype.Whoami){
		func(w *apitype.Whoami) { w.User = "alicf" },
		func(w *apitype.Whoami) { w.Role = "auditor" },
		func(w *apitype.Whoami) { w.CSRFToken = "u" },
		func(w *apitype.Whoami) { w.Actions = []string{"a"} },
		func(w *apitype.Whoami) { w.Actions = []string{"ab"} },
		func(w *apitype.Whoami) { w.Kind = "token" },
		func(w *apitype.Whoami) { w.User, w.Role = "alice\x00admin", "" },
		func(w *apitype.Whoami) { w.Peer = &apitype.Peer{} },
	} {
		v := base
		v.Actions = slices.Clone(base.Actions)
		f(&v)
		variants = append(variants, v)
	}
	seen := map[string]int{}
	for i := range variants {
		k := identityKey(&variants[i])
		if j, ok := seen[k]; ok {
			t.Errorf("variants %d and %d share a key", j, i)
		}
		seen[k] = i
	}
}

// BenchmarkDashboardKept is a dashboard for an admin with 200 agents when
// omertad's answer is the one the kept page was made from: the call to
// omertad and a comparison, no decoding, no template.
func BenchmarkDashboardKept(b *testing.B) {
	e := newEnvMode(b, Limits{}, true)
	fd := &frozenDashboard{Backend: e.s.be}
	e.s.be = fd
	e.fake.ServeDashboard(true)
	e.fake.AddAgents(200)
	admin := e.signIn("alice", "admin")
	fd.freeze(b, admin)
	benchRequest(b, e.s.App().Handler(), "/", admin)
	b.ReportMetric(float64(e.s.dash.renders)/float64(b.N), "renders/op")
}
