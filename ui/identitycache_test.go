package ui

import (
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/ui/uitest"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newClockEnv(t *testing.T, clock *testClock) *env {
	t.Helper()
	fake := uitest.Start(t)
	client := fake.Client()
	t.Cleanup(client.Close)
	s, err := New(Options{Backend: ClientBackend{C: client}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, fake: fake}
}

func whoamis(hits []string) int {
	return len(slices.DeleteFunc(slices.Clone(hits), func(h string) bool { return h != "GET /api/v1/whoami" }))
}

// TestIdentityCacheBound: a page that changes nothing trusts omertad's
// whoami for identityTTL and asks again after it; a change always asks.
// A disabled user gets nothing within the TTL: the page's own call is
// refused (401), the person is sent to sign in, and the identity is
// forgotten at once.
func TestIdentityCacheBound(t *testing.T) {
	if identityTTL > 2*time.Second {
		t.Fatalf("identityTTL %v: the bound documented is 2 s", identityTTL)
	}
	clock := &testClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	e := newClockEnv(t, clock)
	admin := e.signIn("alice", "admin")
	bob := e.signIn("bob", "operator")
	e.fake.AddAgents(2)
	page := func(u *user) (*http.Response, int) {
		t.Helper()
		n := len(e.fake.Hits())
		resp, _ := e.get("/agents", u)
		return resp, whoamis(e.fake.Hits()[n:])
	}
	if resp, w := page(&bob); resp.StatusCode != http.StatusOK || w != 1 {
		t.Fatalf("first page: %d, %d whoami calls; want 200 and one", resp.StatusCode, w)
	}
	clock.add(identityTTL - time.Millisecond)
	if resp, w := page(&bob); resp.StatusCode != http.StatusOK || w != 0 {
		t.Errorf("within the TTL: %d, %d whoami calls; want 200 and none", resp.StatusCode, w)
	}
	clock.add(time.Millisecond)
	if _, w := page(&bob); w != 1 {
		t.Errorf("at the TTL: %d whoami calls, want one", w)
	}
	n := len(e.fake.Hits())
	e.post("/agents/agent-000", form(CSRFField, bob.csrf, "action", "disable"), &bob)
	if w := whoamis(e.fake.Hits()[n:]); w != 1 {
		t.Errorf("a change made with %d whoami calls, want one", w)
	}

	// Bob is disabled while his identity is kept.
	sid, csrf := strings.TrimPrefix(admin.cookie, CookieName+"="), admin.csrf
	c := e.fake.Client().As(apiclient.Credentials{Session: sid, CSRF: csrf})
	if _, err := c.DisableUser(t.Context(), "bob"); err != nil {
		t.Fatal(err)
	}
	resp, w := page(&bob)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") || w != 0 {
		t.Errorf("disabled within the TTL: %d to %q, %d whoami calls; want sent to sign in by the page's own call", resp.StatusCode, resp.Header.Get("Location"), w)
	}
	if resp, w := page(&bob); resp.StatusCode != http.StatusSeeOther || w != 1 {
		t.Errorf("after the 401: %d, %d whoami calls; want the identity forgotten and asked for again", resp.StatusCode, w)
	}
}

// TestIdentityCacheFull: past its bound the cache forgets, expired
// entries first.
func TestIdentityCacheFull(t *testing.T) {
	clock := &testClock{t: time.Unix(0, 0)}
	ic := newIdentityCache(clock.now)
	ic.max = 4
	for _, sid := range []string{"a", "b", "c"} {
		ic.put(sid, apitype.Whoami{User: sid})
	}
	clock.add(identityTTL)
	ic.put("d", apitype.Whoami{User: "d"})
	ic.put("e", apitype.Whoami{User: "e"}) // full: a, b and c have expired
	if len(ic.entries) != 2 {
		t.Errorf("%d entries, want d and e", len(ic.entries))
	}
	for _, sid := range []string{"f", "g", "h"} {
		ic.put(sid, apitype.Whoami{User: sid})
	}
	if len(ic.entries) > ic.max {
		t.Errorf("%d entries past the bound %d", len(ic.entries), ic.max)
	}
	if w, ok := ic.get("h"); !ok || w.User != "h" {
		t.Errorf("the newest entry is gone: %+v %v", w, ok)
	}
	ic.forget("h")
	if _, ok := ic.get("h"); ok {
		t.Error("a forgotten session is still known")
	}
}
