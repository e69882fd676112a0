// Package uitest is a fake omertad for the console's tests: a real HTTP
// server on a unix socket that speaks the console contract
// (CONSOLE_CONTRACT.md) with state in memory, so that the console is
// tested through the real API client, headers and all. It decides like
// omertad does: sessions, tokens, roles per route, CSRF on changes, deny
// by default. It is not omertad: the real one is tested in appliance/api.
package uitest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// SetupToken is the fake's one-time setup token.
const SetupToken = "omerta-setup-TESTTOKEN"

// permissions mirrors appliance/auth's table (the fake cannot link auth:
// it holds the store, which the console's tree may not link).
var permissions = map[string][]string{
	"agents.read": {"admin", "operator", "auditor"}, "agents.write": {"admin", "operator"}, "agents.logs": {"admin", "operator"},
	"tasks.read": {"admin", "operator"}, "tasks.write": {"admin", "operator"}, "catalog.read": {"admin", "operator"},
	"catalog.write": {"admin", "operator"}, "secrets.read": {"admin"}, "secrets.write": {"admin", "operator"},
	"users.read": {"admin"}, "users.write": {"admin"}, "policy.read": {"admin", "operator", "auditor"}, "policy.write": {"admin"}, "tokens.read": {"admin"}, "tokens.write": {"admin"},
	"audit.read": {"admin", "auditor"}, "reports.read": {"admin", "operator", "auditor"},
	"probe.read": {"admin", "operator", "auditor"}, "drift.read": {"admin", "operator", "auditor"},
	"events.read": {"admin", "operator", "auditor"}, "self": {"admin", "operator", "auditor"},
}

// Actions is what role may do, sorted.
func Actions(role string) []string {
	var out []string
	for a, rs := range permissions {
		if slices.Contains(rs, role) {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

type user struct {
	apitype.User
	password string
}

type session struct {
	id, csrf, user string
}

type token struct {
	apitype.Token
	secret string
}

type subscriber struct {
	ch     chan apitype.Event
	types  []string
	agent  string
	task   string
	logsOf string // a log follower: agent id
	logs   chan string
}

// Fake is the fake omertad.
type Fake struct {
	Socket string

	srv *http.Server
	mux *http.ServeMux

	mu        sync.Mutex
	setupDone bool
	users     map[string]*user
	sessions  map[string]*session
	tokens    map[int64]*token
	nextToken int64
	resets    map[string]string // reset token -> user
	audit     []apitype.AuditRecord
	catalog   map[string]apitype.CatalogEntryView
	agents    map[string]*apitype.Agent
	tasks     map[string]*apitype.Task
	logs      map[string]string
	subs      map[*subscriber]bool
	deploys   deployCount
	pol       fakePolicy
	hits      []string
	headers   []http.Header
	seq       uint64

	gpus *apitype.GPUList
	// models is what GET /api/v1/models answers (SetModels).
	models apitype.ModelList

	// booted is when this omertad "probed" and checked its chain: like the
	// real one's, those times do not move between calls.
	booted time.Time

	requests atomic.Int64
	// Delay, when set, is slept before each answer (timeouts, load).
	Delay atomic.Int64
}

// Start runs a fake omertad until the test ends.
func Start(t testing.TB) *Fake {
	t.Helper()
	// A unix socket path must fit in 108 bytes; t.TempDir() under a long
	// test name may not.
	dir, err := os.MkdirTemp("", "uitest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := New(filepath.Join(dir, "omertad.sock"))
	ln, err := net.Listen("unix", f.Socket)
	if err != nil {
		t.Fatal(err)
	}
	go f.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		f.closeSubs()
		f.srv.Shutdown(ctx)
	})
	return f
}

// New builds a fake serving on socket (the caller listens; see Start).
func New(socket string) *Fake {
	f := &Fake{Socket: socket, users: map[string]*user{}, sessions: map[string]*session{}, tokens: map[int64]*token{},
		resets: map[string]string{}, catalog: map[string]apitype.CatalogEntryView{}, agents: map[string]*apitype.Agent{},
		tasks: map[string]*apitype.Task{}, logs: map[string]string{}, subs: map[*subscriber]bool{}, pol: newFakePolicy(),
		booted: time.Now().UTC().Truncate(time.Second)}
	f.seedCatalog()
	f.mux = http.NewServeMux()
	f.routes()
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	return f
}

// Client is an API client of the fake.
func (f *Fake) Client() *apiclient.Client {
	return apiclient.New(f.Socket, apiclient.WithTimeout(5*time.Second))
}

// Requests is how many requests reached the fake.
func (f *Fake) Requests() int64 { return f.requests.Load() }

// Hits are the requests that reached the fake, "METHOD /path?query".
func (f *Fake) Hits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.hits)
}

// LastHeaders are the headers of the last request that reached the fake.
func (f *Fake) LastHeaders() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.headers) == 0 {
		return nil
	}
	return f.headers[len(f.headers)-1].Clone()
}

// Audit is the fake's audit log.
func (f *Fake) Audit() []apitype.AuditRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.audit)
}

// Streams is how many event and log streams are open.
func (f *Fake) Streams() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.mu.Lock()
	f.hits = append(f.hits, r.Method+" "+r.URL.RequestURI())
	f.headers = append(f.headers, r.Header.Clone())
	if len(f.headers) > 64 {
		f.headers = f.headers[1:]
	}
	f.mu.Unlock()
	if d := f.Delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	w.Header().Set("Cache-Control", "no-store")
	f.mux.ServeHTTP(w, r)
}

// --- identities ----------------------------------------------------------

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// AddUser creates a user directly (not through the API).
func (f *Fake) AddUser(name, role, password string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setupDone = true
	f.users[name] = &user{User: apitype.User{ID: int64(len(f.users) + 1), Username: name, Role: role, PasswordSet: password != "",
		CreatedAt: time.Now().UTC(), CreatedBy: "test"}, password: password}
}

// NewSession signs a user in directly: its session ID and CSRF token.
func (f *Fake) NewSession(name string) (id, csrf string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.newSessionLocked(name)
}

func (f *Fake) newSessionLocked(name string) (string, string) {
	s := &session{id: randomID(16), csrf: randomID(32), user: name}
	f.sessions[s.id] = s
	return s.id, s.csrf
}

// AddToken issues an API token directly; it returns the secret.
func (f *Fake) AddToken(name, role string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addTokenLocked(name, role, "test", nil).secret
}

func (f *Fake) addTokenLocked(name, role, by string, exp *time.Time) *token {
	f.nextToken++
	t := &token{Token: apitype.Token{ID: f.nextToken, Name: name, Role: role, CreatedBy: by, CreatedAt: time.Now().UTC()}, secret: "omt_" + randomID(24)}
	if exp != nil {
		t.ExpiresAt = *exp
	}
	f.tokens[t.ID] = t
	return t
}

type principal struct {
	kind, user, role, csrf string
}

func (p principal) actor() string {
	switch p.kind {
	case apitype.KindSession:
		return "user:" + p.user
	case apitype.KindToken:
		return "token:" + p.user
	}
	return "anonymous"
}

func (f *Fake) principal(r *http.Request) (principal, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sid, authz := r.Header.Get(apitype.HeaderSession), r.Header.Get(apitype.HeaderAuthorization)
	if sid != "" && authz != "" {
		return principal{}, false
	}
	if sid != "" {
		s, ok := f.sessions[sid]
		if !ok {
			return principal{}, false
		}
		u := f.users[s.user]
		if u == nil || u.Disabled {
			return principal{}, false
		}
		return principal{kind: apitype.KindSession, user: u.Username, role: u.Role, csrf: s.csrf}, true
	}
	if tok, ok := strings.CutPrefix(authz, "Bearer "); ok {
		for _, t := range f.tokens {
			if t.secret == tok && t.RevokedAt.IsZero() {
				return principal{kind: apitype.KindToken, user: t.Name, role: t.Role}, true
			}
		}
	}
	return principal{}, false
}

// --- answers ---------------------------------------------------------------

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apitype.Error{Error: msg})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

// handler is a route's work once the caller is known and allowed.
type handler func(w http.ResponseWriter, r *http.Request, p principal)

// route mounts h for pattern with the action its role must allow; an
// empty action is a public route.
func (f *Fake) route(pattern, action string, h handler) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, ok := f.principal(r)
		if action == "" {
			h(w, r, p)
			return
		}
		if !ok {
			fail(w, http.StatusUnauthorized, "a caller other than root must present a session or an API token")
			return
		}
		if r.Method != http.MethodGet && p.kind == apitype.KindSession && r.Header.Get(apitype.HeaderCSRF) != p.csrf {
			fail(w, http.StatusForbidden, "CSRF token missing or wrong")
			return
		}
		if !slices.Contains(permissions[action], p.role) {
			fail(w, http.StatusForbidden, fmt.Sprintf("role %q may not %s", p.role, action))
			return
		}
		h(w, r, p)
	})
}

func (f *Fake) record(r *http.Request, p principal, action, target string) {
	f.seq++
	d, _ := json.Marshal(map[string]any{"role": p.role, "address": r.Header.Get(apitype.HeaderClientAddr), "outcome": "ok"})
	f.audit = append(f.audit, apitype.AuditRecord{Seq: int64(len(f.audit) + 1), At: time.Now().UTC(), Actor: p.actor(), Action: action, Target: target, Detail: d})
}

func (f *Fake) routes() {
	f.authRoutes()
	f.adminRoutes()
	f.evidenceRoutes()
	f.agentRoutes()
	f.summaryRoutes()
	f.policyRoutes()
	f.gpuRoutes()
	f.modelRoutes()
	f.dashboardRoutes()
	f.streamRoutes()
	f.agentUIRoutes() // routes_agentui.go
}
