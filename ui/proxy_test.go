package ui

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/ui/uitest"
)

// walkParams fill each pattern's parameters with something that exists in
// the fake.
func walkPath(pattern string) string {
	r := strings.NewReplacer("{name}", "bob", "{kind}", "agent", "{uuid}", "GPU-aaaa")
	p := r.Replace(pattern)
	switch {
	case strings.HasPrefix(p, "/api/v1/tokens/"):
		p = strings.Replace(p, "{id}", "1", 1)
	case strings.HasPrefix(p, "/api/v1/tasks/"):
		p = strings.Replace(p, "{id}", "task-0001", 1)
	case strings.HasPrefix(p, "/api/v1/catalog/"):
		p = strings.Replace(p, "{id}", "sample-tool", 1)
	default:
		p = strings.Replace(p, "{id}", "agent-000", 1)
	}
	return p
}

var walkBodies = map[string]string{
	"POST /api/v1/users":              `{"username":"dave","role":"auditor"}`,
	"PUT /api/v1/users/{name}/role":   `{"role":"admin"}`,
	"POST /api/v1/tokens":             `{"name":"ci","role":"auditor"}`,
	"POST /api/v1/catalog":            `{"name":"x.yaml","document":"x"}`,
	"POST /api/v1/agents":             `{"entry":"sample-tool","id":"walked"}`,
	"PATCH /api/v1/agents/{id}":       `{"config":{"a":1}}`,
	"POST /api/v1/agents/{id}/tasks":  `{"input":{"x":1}}`,
	"POST /api/v1/users/{name}/reset": ``,

	"PUT /api/v1/policies/{kind}/{name}":           `{"document":"x"}`,
	"POST /api/v1/policies/{kind}/{name}/rollback": `{"version":1}`,
	"PUT /api/v1/tenants/{name}":                   `{"document":"x"}`,
	"PUT /api/v1/users/{name}/tenants":             `{"restricted":false}`,
}

// TestEveryAllowedRouteReachesOmertad walks the allow-list: each route is
// forwarded with its method and path, nothing more or less.
func TestEveryAllowedRouteReachesOmertad(t *testing.T) {
	bothModes(t, testEveryAllowedRouteReachesOmertad)
}

func testEveryAllowedRouteReachesOmertad(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{}, raw)
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(1)
	e.fake.AddToken("walk", "auditor")
	e.fake.AddUser("bob", "operator", testPassword)
	if _, body := e.post("/api/v1/agents/agent-000/tasks", "", nil); body == "" {
		t.Fatal("no answer")
	}
	r := req("POST", "/api/v1/agents/agent-000/tasks", `{"input":{}}`, &admin)
	r.Header.Set(CSRFHeader, admin.csrf)
	if resp, body := e.do(r); resp.StatusCode != http.StatusCreated {
		t.Fatalf("making a task: %d %s", resp.StatusCode, body)
	}
	for _, rt := range allowList {
		if rt.pattern == "/api/v1/events" {
			continue // a stream: TestEventStreamForwarded
		}
		key := rt.method + " " + rt.pattern
		t.Run(key, func(t *testing.T) {
			path := walkPath(rt.pattern)
			r := req(rt.method, path, walkBodies[key], &admin)
			if rt.method != "GET" {
				r.Header.Set(CSRFHeader, admin.csrf)
			}
			resp, body := e.do(r)
			hits := e.fake.Hits()
			got, _, _ := strings.Cut(hits[len(hits)-1], "?")
			if got != rt.method+" "+path {
				t.Fatalf("omertad got %q, want %q (console answered %d %s)", got, rt.method+" "+path, resp.StatusCode, body)
			}
			if resp.StatusCode >= 500 {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestRoutesOffTheListNeverReachOmertad(t *testing.T) {
	bothModes(t, testRoutesOffTheListNeverReachOmertad)
}

func testRoutesOffTheListNeverReachOmertad(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{}, raw)
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(1)
	for _, tc := range []struct{ method, path string }{
		{"POST", "/api/v1/images/import"},
		{"POST", "/api/v1/login"},
		{"POST", "/api/v1/setup"},
		{"POST", "/api/v1/logout"},
		{"POST", "/api/v1/reset"},
		{"POST", "/api/v1/password"},
		{"GET", "/api/v1/metrics"},
		{"GET", "/api/v1/agents/"},
		{"GET", "/api/v1//agents"},
		{"GET", "/api/v1/AGENTS"},
		{"GET", "/api/v1/agents/agent-000/logs/x"},
		{"GET", "/api/v1/agents/..%2Fusers"},
		{"GET", "/api/v1/agents/a%2Fb"},
		{"GET", "/api/v1/agents/%2e%2e"},
		{"GET", "/api/v1/agents/" + strings.Repeat("a", 200)},
		{"DELETE", "/api/v1/users/alice"},
		{"PUT", "/api/v1/agents/agent-000"},
		{"POST", "/api/v1/agents/agent-000/delete"},
		{"GET", "/api/v1/"},
		{"TRACE", "/api/v1/agents"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			n := e.fake.Requests()
			r := req(tc.method, tc.path, "", &admin)
			r.Header.Set(CSRFHeader, admin.csrf)
			resp, body := e.do(r)
			if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%d %s, want 404", resp.StatusCode, body)
			}
			if e.fake.Requests() != n {
				t.Errorf("reached omertad: %v", e.fake.Hits()[n:])
			}
		})
	}
}

func TestForwardCarriesTheIdentityNotTheClientsHeaders(t *testing.T) {
	bothModes(t, testForwardCarriesTheIdentityNotTheClientsHeaders)
}

func testForwardCarriesTheIdentityNotTheClientsHeaders(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{}, raw)
	admin := e.signIn("alice", "admin")
	other, _ := e.fake.NewSession("alice")
	r := req("GET", "/api/v1/whoami", "", &admin)
	r.Header.Set(apitype.HeaderSession, other)
	r.Header.Set(apitype.HeaderClientAddr, "6.6.6.6")
	r.Header.Set(apitype.HeaderCSRF, "forged")
	r.Header.Set("X-Forwarded-For", "7.7.7.7")
	resp, body := e.do(r)
	wantStatus(t, resp, body, http.StatusOK)
	h := e.fake.LastHeaders()
	if got := h.Get(apitype.HeaderSession); got != strings.TrimPrefix(admin.cookie, CookieName+"=") {
		t.Errorf("omertad got session %q, want the cookie's", got)
	}
	if got := h.Get(apitype.HeaderClientAddr); got == "6.6.6.6" || got == "7.7.7.7" || got == "" {
		t.Errorf("omertad got client address %q, want the connection's", got)
	}
	if got := h.Get(apitype.HeaderCSRF); got != "" {
		t.Errorf("a read carried CSRF %q", got)
	}
	if h.Get("X-Forwarded-For") != "" || h.Get("Cookie") != "" {
		t.Error("the browser's own headers were passed on")
	}
	var w apitype.Whoami
	if err := json.Unmarshal([]byte(body), &w); err != nil || w.User != "alice" || w.Kind != apitype.KindSession {
		t.Errorf("whoami = %s", body)
	}
}

func TestBearerTokenPassedThrough(t *testing.T) { bothModes(t, testBearerTokenPassedThrough) }

func testBearerTokenPassedThrough(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{}, raw)
	e.fake.AddUser("alice", "admin", testPassword)
	secret := e.fake.AddToken("ci", "auditor")
	r := req("GET", "/api/v1/whoami", "", nil)
	r.Header.Set("Authorization", "Bearer "+secret)
	resp, body := e.do(r)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `"kind":"token"`, `"role":"auditor"`)
	if e.fake.LastHeaders().Get(apitype.HeaderSession) != "" {
		t.Error("a token call carried a session")
	}
	// A token needs no CSRF header (no browser sends it by itself), and
	// omertad decides what its role may do.
	r = req("POST", "/api/v1/agents", `{"entry":"sample-tool"}`, nil)
	r.Header.Set("Authorization", "Bearer "+secret)
	resp, body = e.do(r)
	wantStatus(t, resp, body, http.StatusForbidden)
	wantContains(t, body, "may not agents.write")
}

func TestForwardPassesRefusalsOn(t *testing.T) { bothModes(t, testForwardPassesRefusalsOn) }

func testForwardPassesRefusalsOn(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{}, raw)
	admin := e.signIn("alice", "admin")
	post := func(path, body string) (*http.Response, string) {
		r := req("POST", path, body, &admin)
		r.Header.Set(CSRFHeader, admin.csrf)
		return e.do(r)
	}
	resp, body := post("/api/v1/agents", `{"entry":"sample-http","config":{"workers":99,"title":"x"}}`)
	wantStatus(t, resp, body, http.StatusBadRequest)
	var inv apitype.Invalid
	if err := json.Unmarshal([]byte(body), &inv); err != nil || len(inv.Problems) != 1 || inv.Problems[0].Path != "config.workers" {
		t.Errorf("problems not passed on: %s", body)
	}
	resp, body = post("/api/v1/agents", `{"entry":"sample-tool","bogus":1}`)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantContains(t, body, "unknown field")
	r := req("POST", "/api/v1/agents", `{"entry":"sample-tool"}`, &admin)
	r.Header.Set(CSRFHeader, admin.csrf)
	r.Header.Set("Content-Type", "text/plain")
	resp, body = e.do(r)
	wantStatus(t, resp, body, http.StatusUnsupportedMediaType)
	resp, body = e.get("/api/v1/agents/nope", &admin)
	wantStatus(t, resp, body, http.StatusNotFound)
	wantContains(t, body, `no agent`)
	resp, body = e.get("/api/v1/users", nil)
	wantStatus(t, resp, body, http.StatusUnauthorized)
}

func TestAuditorGetsForbiddenFromTheAPI(t *testing.T) {
	bothModes(t, testAuditorGetsForbiddenFromTheAPI)
}

func testAuditorGetsForbiddenFromTheAPI(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{}, raw)
	aud := e.signIn("carol", "auditor")
	e.fake.AddAgents(1)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/api/v1/agents", `{"entry":"sample-tool"}`},
		{"POST", "/api/v1/agents/agent-000/disable", ""},
		{"DELETE", "/api/v1/agents/agent-000", ""},
		{"POST", "/api/v1/users", `{"username":"x","role":"admin"}`},
		{"GET", "/api/v1/users", ""},
		{"GET", "/api/v1/agents/agent-000/logs", ""},
	} {
		r := req(tc.method, tc.path, tc.body, &aud)
		r.Header.Set(CSRFHeader, aud.csrf)
		resp, body := e.do(r)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("auditor %s %s = %d %s, want 403", tc.method, tc.path, resp.StatusCode, body)
		}
	}
}

// readEvent reads lines up to the end of the next server-sent event that
// is not a comment.
func readEvent(t testing.TB, r *bufio.Reader) (event, data string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		case line == "" && event != "":
			return event, data
		}
	}
}

func TestEventStreamForwarded(t *testing.T) { bothModes(t, testEventStreamForwarded) }

func testEventStreamForwarded(t *testing.T, raw bool) {
	old := streamHeartbeat
	streamHeartbeat = 100 * time.Millisecond
	t.Cleanup(func() { streamHeartbeat = old })
	e := newEnvMode(t, Limits{}, raw)
	admin := e.signIn("alice", "admin")
	addr, client := e.serveTLS()
	ctx, cancel := context.WithCancel(context.Background())
	r, _ := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/api/v1/events?types=agent.state", nil)
	r.Header.Set("Cookie", admin.cookie)
	resp, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
		t.Errorf("stream CSP = %q", got)
	}
	waitFor(t, func() bool { return e.fake.Streams() == 1 }, "omertad's stream to open")
	e.fake.Publish(apitype.Event{Type: apitype.EventTelemetry, Agent: "x", Data: json.RawMessage(`{}`)}) // filtered out by omertad
	e.fake.Publish(apitype.Event{Type: apitype.EventAgentState, Agent: "agent-007", Data: json.RawMessage(`{"state":"running"}`)})
	br := bufio.NewReader(resp.Body)
	ev, data := readEvent(t, br)
	if ev != apitype.EventAgentState || !strings.Contains(data, `"agent":"agent-007"`) {
		t.Errorf("event %q %s", ev, data)
	}
	// The browser goes away: the console notices at its next write and
	// closes omertad's stream too.
	cancel()
	resp.Body.Close()
	client.CloseIdleConnections()
	waitFor(t, func() bool { return e.fake.Streams() == 0 }, "omertad's stream to close after the browser left")
}

func TestLogStreamForwarded(t *testing.T) { bothModes(t, testLogStreamForwarded) }

func testLogStreamForwarded(t *testing.T, raw bool) {
	old := streamHeartbeat
	streamHeartbeat = 100 * time.Millisecond
	t.Cleanup(func() { streamHeartbeat = old })
	e := newEnvMode(t, Limits{}, raw)
	op := e.signIn("olga", "operator")
	e.fake.AddAgents(1)
	e.fake.AppendLog("agent-000", "line one\n")
	addr, client := e.serveTLS()
	r, _ := http.NewRequest("GET", "https://"+addr+"/api/v1/agents/agent-000/logs?follow=true&tail=10", nil)
	r.Header.Set("Cookie", op.cookie)
	resp, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	ev, data := readEvent(t, br)
	if ev != apitype.EventLog || data != `"line one\n"` {
		t.Errorf("first event %q %s", ev, data)
	}
	waitFor(t, func() bool { return e.fake.Streams() == 1 }, "the log stream")
	e.fake.AppendLog("agent-000", "line <two>\n")
	ev, data = readEvent(t, br)
	if ev != apitype.EventLog || data != `"line \u003ctwo\u003e\n"` && data != `"line <two>\n"` {
		t.Errorf("second event %q %s", ev, data)
	}
}

func TestStreamSlotsBounded(t *testing.T) { bothModes(t, testStreamSlotsBounded) }

func testStreamSlotsBounded(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{Streams: 1}, raw)
	admin := e.signIn("alice", "admin")
	addr, client := e.serveTLS()
	open := func() *http.Response {
		r, _ := http.NewRequest("GET", "https://"+addr+"/api/v1/events", nil)
		r.Header.Set("Cookie", admin.cookie)
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := open()
	defer first.Body.Close()
	waitFor(t, func() bool { return e.fake.Streams() == 1 }, "the first stream")
	second := open()
	defer second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" {
		t.Errorf("second stream: %d, want 503 with Retry-After", second.StatusCode)
	}
	waitFor(t, func() bool { return e.fake.Streams() == 1 }, "the refused stream to close at omertad")
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ = uitest.SetupToken

// TestNoCredentialsNoForward: omertad takes a root peer without
// credentials for root; the console never sends a stranger's request on
// without credentials (except the public routes), so a console started as
// root by mistake lends nobody root's powers.
func TestNoCredentialsNoForward(t *testing.T) { bothModes(t, testNoCredentialsNoForward) }

func testNoCredentialsNoForward(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{}, raw)
	e.fake.AddUser("alice", "admin", testPassword)
	for _, rt := range allowList {
		if rt.public {
			continue
		}
		n := e.fake.Requests()
		resp, body := e.do(req(rt.method, walkPath(rt.pattern), walkBodies[rt.method+" "+rt.pattern], nil))
		if resp.StatusCode != http.StatusUnauthorized || e.fake.Requests() != n {
			t.Errorf("%s %s without credentials: %d %s, reached omertad: %v", rt.method, rt.pattern, resp.StatusCode, body, e.fake.Requests() != n)
		}
	}
	resp, body := e.get("/api/v1/setup", nil)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `"done":true`)
}

// TestHangupFreesStreamSlot: a browser that leaves a live page gives its
// stream slot back at once, and the console ends its call to omertad, so
// omertad's slot goes too; neither waits for a heartbeat (both are an hour
// away here). Until then a person who opened and left a few live pages
// found the next page's stream refused.
func TestHangupFreesStreamSlot(t *testing.T) { bothModes(t, testHangupFreesStreamSlot) }

func testHangupFreesStreamSlot(t *testing.T, raw bool) {
	old, oldFake := streamHeartbeat, uitest.Heartbeat
	streamHeartbeat, uitest.Heartbeat = time.Hour, time.Hour
	t.Cleanup(func() { streamHeartbeat, uitest.Heartbeat = old, oldFake })
	e := newEnvMode(t, Limits{Streams: 1}, raw)
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(1)
	addr, _ := e.serveTLS()
	for _, path := range []string{"/api/v1/events?types=agent.state", "/api/v1/agents/agent-000/logs?follow=true"} {
		for i := range 3 {
			if status := openAndDrop(t, addr, path, admin.cookie); status != http.StatusOK {
				t.Fatalf("%s, stream %d after %d dropped: HTTP %d; the dropped stream still holds the slot", path, i+1, i, status)
			}
			deadline := time.Now().Add(2 * time.Second)
			for len(e.s.streams) != 0 || e.fake.Streams() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s: 2 s after the browser hung up: %d console slots held, %d streams open at omertad", path, len(e.s.streams), e.fake.Streams())
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}

// openAndDrop asks the console for a stream over TLS, reads the status
// line and the stream's first line, and hangs up as a browser leaving the
// page does.
func openAndDrop(t *testing.T, addr, path, cookie string) int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // a test's own certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\nSec-Fetch-Site: same-origin\r\nCookie: " + cookie + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %s: %v", path, err)
	}
	if resp.StatusCode == http.StatusOK {
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			t.Fatalf("reading the stream of %s: %v", path, err)
		}
		if !resp.Close {
			t.Errorf("%s: a stream's answer without Connection: close", path)
		}
	}
	return resp.StatusCode
}

func TestRouteTimeouts(t *testing.T) {
	l := Limits{Call: time.Second, Slow: time.Minute}
	for _, tc := range []struct {
		method, pattern, query string
		want                   time.Duration
	}{
		{"GET", "/api/v1/agents", "", time.Second},
		{"GET", "/api/v1/agents/{id}/tasks", "wait=5m", time.Second}, // no wait on a list
		{"POST", "/api/v1/agents", "", time.Minute},
		{"PATCH", "/api/v1/agents/{id}", "", time.Minute},
		{"DELETE", "/api/v1/agents/{id}", "", time.Minute},
		{"POST", "/api/v1/agents/{id}/restart", "", time.Minute},
		{"POST", "/api/v1/agents/{id}/tasks", "", time.Minute},
		{"POST", "/api/v1/agents/{id}/tasks", "wait=30s", time.Minute + 30*time.Second},
		{"POST", "/api/v1/agents/{id}/tasks", "wait=100h", time.Minute + apitype.MaxTaskWait},
		{"POST", "/api/v1/agents/{id}/tasks", "wait=-5s", time.Minute},
		{"POST", "/api/v1/agents/{id}/tasks", "wait=soon", time.Minute},
	} {
		var rt *route
		for i := range allowList {
			if allowList[i].method == tc.method && allowList[i].pattern == tc.pattern {
				rt = &allowList[i]
			}
		}
		if rt == nil {
			t.Fatalf("%s %s not on the allow-list", tc.method, tc.pattern)
		}
		q, _ := url.ParseQuery(tc.query)
		if got := rt.timeout(l, q); got != tc.want {
			t.Errorf("%s %s?%s: waits %v, want %v", tc.method, tc.pattern, tc.query, got, tc.want)
		}
	}
	if got := (Limits{}).Longest(); got != DefaultLimits.Slow+apitype.MaxTaskWait {
		t.Errorf("Longest() = %v", got)
	}
}

// A deploy that takes longer than a page's call is waited for; a read
// that takes as long is answered 504, not 502: omertad is not down.
func TestSlowChangesAreWaitedFor(t *testing.T) { bothModes(t, testSlowChangesAreWaitedFor) }

func testSlowChangesAreWaitedFor(t *testing.T, raw bool) {
	e := newEnvMode(t, Limits{Call: 50 * time.Millisecond, Slow: 4 * time.Second}, raw)
	admin := e.signIn("alice", "admin")
	e.fake.Delay.Store(int64(400 * time.Millisecond))
	resp, body := e.get("/api/v1/agents", &admin)
	wantStatus(t, resp, body, http.StatusGatewayTimeout)
	wantContains(t, body, "may still happen")
	r := req("POST", "/api/v1/agents", `{"entry":"sample-tool","id":"slow"}`, &admin)
	r.Header.Set(CSRFHeader, admin.csrf)
	resp, body = e.do(r)
	wantStatus(t, resp, body, http.StatusCreated)
}
