package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/store"
)

// The agent UI route against a real HTTP server on loopback standing in
// for the agent; the agents' network is uiNet, which dials that server
// for the agents it was told of.

const webEntry = `apiVersion: omertaos.dev/v1
kind: Agent
metadata: {id: web, name: Web}
spec:
  image: {ref: omerta.test/tool:1}
  command: ["/agent"]
  resources: {cpu: 250m, memory: 64Mi, pids: 64}
  network: {mode: gateway}
  ports: [{name: metrics, port: 9090}, {name: http, port: 8080}]
  restart: {policy: on-failure}
  isolation: container
`

// uiNet is the agents' network as the route sees it: the agents it knows
// are at addr; every dial is recorded.
type uiNet struct {
	addr  string
	mu    sync.Mutex
	known map[string]bool
	dials []string
}

func (n *uiNet) DialAgent(ctx context.Context, agent string, port int) (net.Conn, error) {
	n.mu.Lock()
	n.dials = append(n.dials, fmt.Sprintf("%s:%d", agent, port))
	ok := n.known[agent]
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("agent %s: %w", agent, ErrAgentUnreachable)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", n.addr)
}

// seenRequest is what the agent received.
type seenRequest struct {
	Method, Path, Query, Body string
	Header                    http.Header
}

// uiAgent is the stand-in agent: /echo answers what it received, /stream
// sends a first line and waits for release before the second, /big sends
// more than the cap.
func uiAgent(t *testing.T, release <-chan struct{}) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
			io.WriteString(w, "second\n")
		case "/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			chunk := make([]byte, 1<<20)
			for range maxAgentUIAnswer>>20 + 2 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			b, _ := io.ReadAll(r.Body)
			http.SetCookie(w, &http.Cookie{Name: "agent", Value: "x"})
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Agent-Secret", "leak")
			w.WriteHeader(http.StatusTeapot)
			json.NewEncoder(w).Encode(seenRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(b), Header: r.Header})
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

type uiEnv struct {
	*authEnv
	net     *uiNet
	svc     *agents.Service
	cat     *catalog.Service
	c       *apiclient.Client
	release chan struct{}
}

func newUIEnv(t *testing.T) *uiEnv {
	t.Helper()
	needRoot(t)
	e := &uiEnv{release: make(chan struct{})}
	agent := uiAgent(t, e.release)
	e.net = &uiNet{addr: agent.Listener.Addr().String(), known: map[string]bool{}}
	e.authEnv = newAuthEnv(t, func(_ *auth.Options, d *Deps) {
		e.svc, e.cat = uiAgents(t, d.Store)
		d.Agents = AgentsDeps{Catalog: e.cat, Service: e.svc, Events: e.svc.Bus(), Logs: e.svc}
		d.Policy = wiredPolicy(t, d.Store)
		d.AgentUI = e.net
		d.Limits.Body = 4 << 10
	})
	e.c = apiclient.New(e.sock, apiclient.WithTimeout(10*time.Second))
	t.Cleanup(e.c.Close)
	return e
}

// uiAgents is the agents service on a fake runtime with the agents'
// network up, and the web entry in its catalog.
func uiAgents(t *testing.T, st *store.Store) (*agents.Service, *catalog.Service) {
	t.Helper()
	dir := t.TempDir()
	rt := agents.NewFakeRuntime(filepath.Join(dir, "logs"), nil)
	rt.AddImage(runtime.Image{Name: testImage, Digest: testDigest, Manifest: testDigest})
	svc, err := agents.New(st, rt, agents.WithStateDir(filepath.Join(dir, "agents")), agents.WithStopGrace(0),
		agents.WithInterval(20*time.Millisecond), agents.WithNetwork(func() error { return nil }),
		agents.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	catDir := filepath.Join(dir, "catalog")
	os.Mkdir(catDir, 0o755)
	os.WriteFile(filepath.Join(catDir, "web.yaml"), []byte(webEntry), 0o644)
	return svc, catalog.NewService(st, catDir)
}

// deploy deploys the web entry as id in tenant with network mode.
func (e *uiEnv) deploy(t *testing.T, id, tenant, mode string) {
	t.Helper()
	it, err := e.cat.Get(t.Context(), "web")
	if err != nil {
		t.Fatal(err)
	}
	m := *it.Manifest
	m.Spec.Network.Mode = mode
	if _, err := e.svc.Deploy(t.Context(), agents.DeployRequest{Manifest: &m, ID: id, Tenant: tenant, Actor: "user:test"}); err != nil {
		t.Fatalf("deploying %s: %v", id, err)
	}
	e.net.mu.Lock()
	e.net.known[id] = true
	e.net.mu.Unlock()
}

func (e *uiEnv) uiOpens(t *testing.T) []apitype.AuditRecord {
	t.Helper()
	recs, err := e.c.Audit(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []apitype.AuditRecord
	for _, r := range recs {
		if r.Action == "agents.ui.open" {
			out = append(out, r)
		}
	}
	return out
}

// The path below /ui/ and the query reach the agent's declared UI port
// (its port named http); the caller's credentials and the console's
// contract headers do not; X-Forwarded-Prefix does; the agent's status
// comes back, its cookies and other headers do not.
func TestAgentUIPassesRequestNotCredentials(t *testing.T) {
	e := newUIEnv(t)
	admin := e.setup()
	e.deploy(t, "web", "", "gateway")
	h := admin.change()
	h["Cookie"] = "__Host-omerta_session=" + admin.SessionID
	h[apitype.HeaderClientAddr] = "192.0.2.7"
	h["X-Forwarded-For"] = "198.51.100.1"
	h["X-Custom"] = "kept"
	h["Content-Type"] = "application/x-www-form-urlencoded"
	a := e.other.do("POST", "/api/v1/agents/web/ui/form/send?a=1&b=two%20words", h, "text=hello")
	if a.status != http.StatusTeapot {
		t.Fatalf("POST through the UI = %s, want the agent's 418", a)
	}
	var got seenRequest
	a.decode(t, &got)
	if got.Method != "POST" || got.Path != "/form/send" || got.Query != "a=1&b=two%20words" || got.Body != "text=hello" {
		t.Errorf("the agent got %s %s?%s %q", got.Method, got.Path, got.Query, got.Body)
	}
	for _, k := range []string{"Authorization", "Cookie", apitype.HeaderSession, apitype.HeaderCSRF, apitype.HeaderClientAddr, "X-Forwarded-For"} {
		if v := got.Header.Get(k); v != "" {
			t.Errorf("the agent got %s: %q", k, v)
		}
	}
	if p := got.Header.Get(HeaderForwardedPrefix); p != "/agents/web/ui" {
		t.Errorf("X-Forwarded-Prefix = %q", p)
	}
	if got.Header.Get("X-Custom") != "kept" || got.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("the agent's headers = %v", got.Header)
	}
	if a.header.Get(HeaderAgentUI) != "answer" {
		t.Errorf("the agent's answer is not marked as such: %v", a.header)
	}
	if a.header.Get("Set-Cookie") != "" || a.header.Get("X-Agent-Secret") != "" {
		t.Errorf("the agent's own headers came back: %v", a.header)
	}
	e.net.mu.Lock()
	dials := strings.Join(e.net.dials, ",")
	e.net.mu.Unlock()
	if dials != "web:8080" {
		t.Errorf("dials = %s, want web:8080 (the port named http)", dials)
	}
	// A bearer token is not passed either.
	tok := e.token(admin, "ci", auth.RoleOperator)
	e.other.do("GET", "/api/v1/agents/web/ui/", bearer(tok), nil).decode(t, &got)
	if got.Header.Get("Authorization") != "" || got.Path != "/" {
		t.Errorf("with a token the agent got %s and Authorization %q", got.Path, got.Header.Get("Authorization"))
	}
}

// The answer reaches the caller while the agent is still sending it, and
// is cut at the cap.
func TestAgentUIStreamsBoundedAnswer(t *testing.T) {
	e := newUIEnv(t)
	admin := e.setup()
	e.deploy(t, "web", "", "gateway")
	conn, err := dialAs(consoleUID, consoleGID, e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET /api/v1/agents/web/ui/stream HTTP/1.1\r\nHost: omertad\r\n%s: %s\r\n\r\n", apitype.HeaderSession, admin.SessionID)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	close(e.release) // only now may the agent finish
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), "second") {
		t.Errorf("rest = %q", rest)
	}

	resp = rawRequest(t, e.sock, "GET /api/v1/agents/web/ui/big", admin.read(), "")
	n, _ := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || n != maxAgentUIAnswer {
		t.Errorf("big answer = %d, %d bytes, want %d", resp.StatusCode, n, maxAgentUIAnswer)
	}
}

// rawRequest sends a request as the console's uid on its own connection,
// ignoring a failed write (omertad may refuse before reading the body),
// and returns the answer with its body unread.
func rawRequest(t *testing.T, sock, line string, h map[string]string, body string) *http.Response {
	t.Helper()
	conn, err := dialAs(consoleUID, consoleGID, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s HTTP/1.1\r\nHost: omertad\r\nContent-Length: %d\r\n", line, len(body))
	for k, v := range h {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n" + body)
	conn.Write([]byte(b.String()))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return resp
}

// A request body over the API's limit never reaches the agent.
func TestAgentUIBodyCap(t *testing.T) {
	e := newUIEnv(t)
	admin := e.setup()
	e.deploy(t, "web", "", "gateway")
	resp := rawRequest(t, e.sock, "POST /api/v1/agents/web/ui/upload", admin.change(), strings.Repeat("x", 8<<10))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("an 8 KiB body = %d, want 413", resp.StatusCode)
	}
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	if len(e.net.dials) != 0 {
		t.Errorf("the agent was dialled: %v", e.net.dials)
	}
}

// Who may: an auditor may read an agent but not use its UI; a
// restricted operator gets 404 for another tenant's agent; an agent
// without a network is refused with the field that says so; upgrades are
// refused; an agent not on the network is 503.
func TestAgentUIRefusals(t *testing.T) {
	e := newUIEnv(t)
	admin := e.setup()
	aud := e.user(admin, "audrey", auth.RoleAuditor)
	op := e.user(admin, "olga", auth.RoleOperator)
	if _, err := e.c.PutTenant(t.Context(), "acme", acmeTenant); err != nil {
		t.Fatal(err)
	}
	e.deploy(t, "web", "", "gateway")
	e.deploy(t, "mine", "acme", "gateway")
	e.deploy(t, "quiet", "", "none")
	if a := e.other.do("PUT", "/api/v1/users/olga/tenants", admin.change(), apitype.TenantScopeSet{Restricted: true, Tenants: []string{"acme"}}); a.status != http.StatusOK {
		t.Fatalf("restricting olga = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/agents/web", aud.read(), nil); a.status != http.StatusOK {
		t.Errorf("auditor reading the agent = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/agents/web/ui/", aud.read(), nil); a.status != http.StatusForbidden {
		t.Errorf("auditor opening the UI = %s, want 403", a)
	}
	if a := e.other.do("GET", "/api/v1/agents/web/ui/", op.read(), nil); a.status != http.StatusNotFound || strings.Contains(a.String(), "tenant") {
		t.Errorf("olga opening another tenant's UI = %s, want a plain 404", a)
	}
	if a := e.other.do("GET", "/api/v1/agents/mine/ui/x", op.read(), nil); a.status != http.StatusTeapot {
		t.Errorf("olga opening her tenant's UI = %s", a)
	}
	a := e.other.do("GET", "/api/v1/agents/quiet/ui/", admin.read(), nil)
	if a.header.Get(HeaderAgentUI) != "" {
		t.Error("omertad's own refusal is marked as the agent's answer")
	}
	if a.status != http.StatusConflict || !strings.Contains(a.String(), "spec.network.mode") || !strings.Contains(a.String(), `\"none\"`) {
		t.Errorf("UI of an agent in mode none = %s, want 409 naming spec.network.mode", a)
	}
	h := admin.read()
	h["Connection"], h["Upgrade"] = "Upgrade", "websocket"
	if a := e.other.do("GET", "/api/v1/agents/web/ui/ws", h, nil); a.status != http.StatusNotImplemented {
		t.Errorf("a WebSocket upgrade = %s, want 501", a)
	}
	e.net.mu.Lock()
	delete(e.net.known, "web")
	e.net.mu.Unlock()
	if a := e.other.do("GET", "/api/v1/agents/web/ui/", admin.read(), nil); a.status != http.StatusServiceUnavailable {
		t.Errorf("an agent off the network = %s, want 503", a)
	}
	if a := e.other.do("GET", "/api/v1/agents/nosuch/ui/", admin.read(), nil); a.status != http.StatusNotFound {
		t.Errorf("no such agent = %s, want 404", a)
	}
}

// One record per session and agent: a page's many requests are one open;
// another session, or another agent, is another.
func TestAgentUIAuditsOncePerSession(t *testing.T) {
	e := newUIEnv(t)
	admin := e.setup()
	op := e.user(admin, "olga", auth.RoleOperator)
	e.deploy(t, "web", "", "gateway")
	e.deploy(t, "other", "", "gateway")
	for range 3 {
		e.other.do("GET", "/api/v1/agents/web/ui/", admin.read(), nil)
	}
	e.other.do("GET", "/api/v1/agents/web/ui/", op.read(), nil)
	e.other.do("GET", "/api/v1/agents/other/ui/", op.read(), nil)
	recs := e.uiOpens(t)
	var got []string
	for _, r := range recs {
		got = append(got, r.Actor+" "+r.Target)
	}
	want := "user:admin web,user:olga web,user:olga other"
	if strings.Join(got, ",") != want {
		t.Errorf("agents.ui.open records = %v, want %s", got, want)
	}
	if len(recs) > 0 && !strings.Contains(string(recs[0].Detail), `"port":8080`) {
		t.Errorf("detail = %s", recs[0].Detail)
	}
	// The same session after the window records again.
	o := newOpenSet(time.Minute, 2)
	now := time.Now()
	if !o.first("a", now) || o.first("a", now.Add(time.Second)) || !o.first("a", now.Add(2*time.Minute)) {
		t.Error("openSet's window")
	}
	if !o.first("b", now) || !o.first("c", now) || len(o.seen) > 2 {
		t.Errorf("openSet holds %d, bound 2", len(o.seen))
	}
}

func TestUIPort(t *testing.T) {
	it, err := manifest.Parse([]byte(webEntry))
	if err != nil {
		t.Fatal(err)
	}
	if p := UIPort(it); p != 8080 {
		t.Errorf("UIPort = %d, want the port named http", p)
	}
	it.Spec.Ports[0].Name = "ui"
	if p := UIPort(it); p != 9090 {
		t.Errorf("UIPort = %d, want the port named ui", p)
	}
	it.Spec.Ports[0].Name, it.Spec.Ports[1].Name = "a", "b"
	if p := UIPort(it); p != 9090 {
		t.Errorf("UIPort = %d, want the first", p)
	}
	it.Spec.Ports = nil
	if p := UIPort(it); p != 0 {
		t.Errorf("UIPort without ports = %d", p)
	}
}

// The UI rows' "*" matches as fiber's does: the rest of the path, empty
// or of many segments, or none at all (".../ui").
func TestAgentUIRuleAgreesWithFiber(t *testing.T) {
	sock := ruleServer(t)
	for _, p := range []string{"/api/v1/agents/x/ui", "/api/v1/agents/x/ui/", "/api/v1/agents/x/ui/a", "/api/v1/agents/x/ui/a/b/",
		"/api/v1/agents/x/ui//", "/api/v1/agents/x/ui/%2e%2e/", "/api/v1/agents//ui/a", "/api/v1/agents/x/UI/a", "/api/v1/agents/x/uix/a"} {
		for _, m := range matchMethods {
			if got, want := matchedKey(m, p), fiberRule(t, sock, m, p); got != want {
				t.Errorf("%s %s: matchRule found %q, fiber ran %q", m, p, got, want)
			}
		}
	}
	if matchedKey("GET", "/api/v1/agents/x/ui/a/b") != "GET /api/v1/agents/:id/ui/*" {
		t.Error("a deep UI path matches no rule")
	}
}
