package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/store"
)

// caller is one column of the role matrix: who calls, over which uid,
// with which headers.
type caller struct {
	name    string
	uid     int // 0: root
	kind    auth.Kind
	role    auth.Role // "" without valid credentials
	headers func(change bool) map[string]string
}

func (c caller) allowed(r *rule) bool {
	if c.kind == auth.KindSystem {
		return true
	}
	return c.role != "" && !r.rootOnly && auth.Allowed(c.role, r.action)
}

func sessionCaller(name string, role auth.Role, s login) caller {
	return caller{name: name, uid: consoleUID, kind: auth.KindSession, role: role, headers: func(change bool) map[string]string {
		if change {
			return s.change()
		}
		return s.read()
	}}
}

func tokenCaller(role auth.Role, secret string) caller {
	return caller{name: "token:" + string(role), uid: consoleUID, kind: auth.KindToken, role: role,
		headers: func(bool) map[string]string { return bearer(secret) }}
}

func noHeaders(bool) map[string]string { return nil }

// matrixCallers: root, nobody, a stale session, a session and a token of
// each role.
func matrixCallers(sessions map[auth.Role]login, tokens map[auth.Role]string) []caller {
	cs := []caller{
		{name: "root", uid: 0, kind: auth.KindSystem, role: auth.RoleAdmin, headers: noHeaders},
		{name: "no credentials", uid: consoleUID, headers: noHeaders},
		{name: "stale session", uid: consoleUID, headers: func(bool) map[string]string {
			return map[string]string{apitype.HeaderSession: "AAAAAAAAAAAAAAAAAAAAAA", apitype.HeaderCSRF: "x"}
		}},
		{name: "malformed token", uid: consoleUID, headers: func(bool) map[string]string { return bearer("omt_nope") }},
	}
	for _, role := range auth.Roles() {
		cs = append(cs, sessionCaller("session:"+string(role), role, sessions[role]), tokenCaller(role, tokens[role]))
	}
	return cs
}

// concrete is a path of rule r with its parameters filled in by value.
func concrete(r *rule, value func(r *rule, param string) string) string {
	segs := make([]string, len(r.segs))
	for i, s := range r.segs {
		segs[i] = s
		if name, ok := strings.CutPrefix(s, ":"); ok {
			segs[i] = value(r, name)
		}
	}
	return strings.Join(segs, "/")
}

func fixed(v string) func(*rule, string) string { return func(*rule, string) string { return v } }

// TestRoleMatrixTable: every rule of the table, the agents routes
// included whether or not this build mounts them, with every caller,
// behind the real middleware and a handler that only says it ran: public
// routes run for everyone; otherwise no valid credentials is 401, a role
// without the action 403, and a role with it reaches the handler.
func TestRoleMatrixTable(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "matrix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o711)
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"), store.WithSchemas(auth.Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := auth.New(auth.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	sys := auth.System("test")
	sessions, tokens := map[auth.Role]login{}, map[auth.Role]string{}
	for _, role := range auth.Roles() {
		name := "m" + string(role)
		if _, err := svc.CreateUser(ctx, sys, auth.NewUser{Username: name, Role: role, Password: userPass}); err != nil {
			t.Fatal(err)
		}
		sess, err := svc.Login(ctx, auth.LoginRequest{Username: name, Password: userPass})
		if err != nil {
			t.Fatal(err)
		}
		sessions[role] = login{sessionView(sess)}
		it, err := svc.CreateToken(ctx, sys, auth.NewToken{Name: "t" + string(role), Role: role})
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = it.Secret
	}

	s := &Server{deps: Deps{Store: st, Auth: svc}, log: slog.Default()}
	app := fiber.New(fiber.Config{StrictRouting: true, CaseSensitive: true, DisableStartupMessage: true, ErrorHandler: s.errorHandler})
	app.Use(s.peerCredentials, s.authenticate)
	for i := range rules {
		app.Add(rules[i].method, rules[i].path, func(c *fiber.Ctx) error { return c.SendString("ran") })
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o666)
	go app.Listener(newLimitListener(ln, 16))
	t.Cleanup(func() { app.Shutdown() })

	value := fixed("x")
	for _, c := range matrixCallers(sessions, tokens) {
		pc := peerClient{t: t, sock: sock, uid: c.uid}
		for i := range rules {
			r := &rules[i]
			a := pc.do(r.method, concrete(r, value), c.headers(mutating(r.method)), nil)
			want := http.StatusOK
			switch {
			case r.public:
			case c.role == "":
				want = http.StatusUnauthorized
			case !c.allowed(r):
				want = http.StatusForbidden
			}
			if a.status != want || (want == 200) != (string(a.body) == "ran") {
				t.Errorf("%s %s as %s = %s, want %d", r.method, r.path, c.name, a, want)
			}
			// A session that may take the action still needs its CSRF
			// token to change anything.
			if c.kind == auth.KindSession && mutating(r.method) && !r.public && want == 200 {
				if a := pc.do(r.method, concrete(r, value), c.headers(false), nil); a.status != http.StatusForbidden {
					t.Errorf("%s %s as %s without the CSRF token = %s, want 403", r.method, r.path, c.name, a)
				}
			}
		}
	}
}

// matrixBodies are valid requests for the mutating routes of the wired
// server, so that an allowed caller gets past decoding to the action.
func matrixBodies(who string) map[string]any {
	return map[string]any{
		"POST /api/v1/setup":           apitype.SetupRequest{Token: setupToken, Username: "other", Password: adminPass},
		"POST /api/v1/login":           apitype.LoginRequest{Username: "loginuser", Password: userPass},
		"POST /api/v1/reset":           apitype.ResetRequest{Token: "omr_notalink", Password: userPass},
		"POST /api/v1/password":        apitype.PasswordChange{CurrentPassword: "not the current one", NewPassword: "a brand new passphrase"},
		"POST /api/v1/users":           apitype.UserCreate{Username: "new-" + who, Role: "auditor"},
		"PUT /api/v1/users/:name/role": apitype.RoleChange{Role: "operator"},
		"POST /api/v1/tokens":          apitype.TokenCreate{Name: "new-" + who, Role: "auditor"},
		"POST /api/v1/catalog": apitype.CatalogImport{Name: "imp.yaml",
			Document: strings.Replace(toolEntry, "id: tool", "id: imp-"+who, 1)},
		"POST /api/v1/images/import":    apitype.ImageImport{Path: "/nonexistent/archive.tar"},
		"POST /api/v1/agents":           apitype.AgentDeploy{Entry: "tool", ID: "dep-" + who},
		"PATCH /api/v1/agents/:id":      apitype.AgentPatch{Config: map[string]any{"mode": "slow"}},
		"POST /api/v1/agents/:id/tasks": apitype.TaskCreate{Input: json.RawMessage(`{}`)},
	}
}

// matrixExceptions are the statuses an allowed caller may get from a
// route for reasons of its own, not of the table's.
var matrixExceptions = map[string]func(c caller, status int) bool{
	// Logout and a password change need a console session.
	"POST /api/v1/logout":   func(c caller, s int) bool { return c.kind != auth.KindSession && s == 401 },
	"POST /api/v1/password": func(c caller, s int) bool { return c.kind != auth.KindSession && s == 403 },
	// Not a reset link: the sentinel's 403 for everyone.
	"POST /api/v1/reset": func(_ caller, s int) bool { return s == 403 },
}

// TestRoleMatrixServer: every route the wired API registers, with every
// caller: never a 5xx; 401 without valid credentials and 403 for a role
// without the action; a role with it gets past authorization. Every JSON
// answer is valid against the OpenAPI document's schema for its status.
func TestRoleMatrixServer(t *testing.T) {
	needRoot(t)
	e := wiredEnv(t)
	admin := e.setup()
	sessions := map[auth.Role]login{auth.RoleAdmin: admin}
	tokens := map[auth.Role]string{}
	for _, role := range auth.Roles() {
		if role != auth.RoleAdmin {
			sessions[role] = e.user(admin, "m"+string(role), role)
		}
		tokens[role] = e.token(admin, "m"+string(role), role)
	}
	e.user(admin, "loginuser", auth.RoleAuditor)
	e.user(admin, "victim", auth.RoleAuditor)
	spare := e.tokenID(admin, "spare", auth.RoleAuditor)
	task := e.matrixAgent()
	check := openAPIChecker(t, e.root.do("GET", "/api/v1/openapi.json", nil, nil).body)
	value := func(r *rule, param string) string {
		switch {
		case param == "name":
			return "victim"
		case strings.HasPrefix(r.path, "/api/v1/tokens/"):
			// The first caller allowed revokes the spare token; the
			// next ones get 409.
			return strconvI(spare)
		case strings.HasPrefix(r.path, "/api/v1/tasks/"):
			return task
		}
		return "tool" // an agent and a catalog entry
	}
	for _, c := range matrixCallers(sessions, tokens) {
		pc := peerClient{t: t, sock: e.sock, uid: c.uid}
		who := strings.ReplaceAll(c.name, ":", "-")
		who = strings.ReplaceAll(who, " ", "-")
		for _, r := range matrixOrder(e.srv) {
			h := c.headers(mutating(r.method))
			if r.public {
				delete(h, apitype.HeaderSession) // a login would end it
			}
			a := pc.do(r.method, concrete(r, value), h, matrixBodies(who)[r.key()])
			checkMatrix(t, r, c, a)
			check(r, a)
		}
	}
}

// matrixOrder is the registered routes with the deletes and logout last:
// they end what the others use.
func matrixOrder(srv *Server) []*rule {
	var first, deletes, last []*rule
	for _, k := range registeredKeys(srv.app) {
		method, path, _ := strings.Cut(k, " ")
		r := matchPattern(method, path)
		switch {
		case r.key() == "POST /api/v1/logout":
			last = append(last, r)
		case r.method == "DELETE":
			deletes = append(deletes, r)
		default:
			first = append(first, r)
		}
	}
	return append(append(first, deletes...), last...)
}

// matrixAgent deploys the tool agent as root, waits for it to run, and
// runs a task on it, whose id it returns.
func (e *authEnv) matrixAgent() string {
	e.t.Helper()
	if a := e.root.do("POST", "/api/v1/agents", nil, apitype.AgentDeploy{Entry: "tool"}); a.status != http.StatusCreated {
		e.t.Fatalf("deploy = %s", a)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var ag apitype.Agent
		e.root.do("GET", "/api/v1/agents/tool", nil, nil).decode(e.t, &ag)
		if ag.Status.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the tool agent is %q after 10s", ag.Status.State)
		}
	}
	a := e.root.do("POST", "/api/v1/agents/tool/tasks?wait=5s", nil, apitype.TaskCreate{Input: json.RawMessage(`{}`)})
	var task apitype.Task
	if a.decode(e.t, &task); a.status != http.StatusCreated || task.ID == "" {
		e.t.Fatalf("task = %s", a)
	}
	return task.ID
}

func checkMatrix(t *testing.T, r *rule, c caller, a answer) {
	t.Helper()
	where := r.key() + " as " + c.name
	if a.status >= 500 {
		t.Errorf("%s = %s: a 5xx", where, a)
		return
	}
	switch {
	case !r.public && c.role == "":
		if a.status != http.StatusUnauthorized {
			t.Errorf("%s = %s, want 401", where, a)
		}
	case !r.public && !c.allowed(r):
		if a.status != http.StatusForbidden {
			t.Errorf("%s = %s, want 403", where, a)
		}
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden:
		if ok := matrixExceptions[r.key()]; ok == nil || !ok(c, a.status) {
			t.Errorf("%s = %s: refused although allowed", where, a)
		}
	}
}
