package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/ui/uitest"
)

func TestSetupThenGoneForGood(t *testing.T) {
	e := newEnv(t, Limits{})
	resp, _ := e.get("/", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Fatalf("before setup: %d to %q, want /setup", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := e.get("/setup", nil)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="setup-form"`, `name="token"`, `minlength="12"`)
	checkCSPClean(t, "setup", body)

	resp, body = e.post("/setup", form("token", "wrong", "username", "root", "password", testPassword, "password2", testPassword), nil)
	wantStatus(t, resp, body, http.StatusUnauthorized)
	wantContains(t, body, "setup token was not accepted", `value="root"`)
	wantNotContains(t, body, testPassword)

	resp, body = e.post("/setup", form("token", uitest.SetupToken, "username", "root", "password", testPassword, "password2", "different one"), nil)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantContains(t, body, "The two passwords differ")

	resp, body = e.post("/setup", form("token", uitest.SetupToken, "username", "root", "password", testPassword, "password2", testPassword), nil)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if resp.Header.Get("Location") != "/" || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), CookieName+"=") {
		t.Fatalf("setup answered %q with cookie %q", resp.Header.Get("Location"), resp.Header.Get("Set-Cookie"))
	}
	cookie := strings.SplitN(resp.Header.Get("Set-Cookie"), ";", 2)[0]
	resp, body = e.get("/", &user{cookie: cookie})
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="current-user">root<`)

	// Gone for good: 404, and omertad is not even asked again.
	n := e.fake.Requests()
	for _, m := range []string{"GET", "POST"} {
		resp, body = e.do(req(m, "/setup", form("token", uitest.SetupToken), nil))
		wantStatus(t, resp, body, http.StatusNotFound)
	}
	if e.fake.Requests() != n {
		t.Errorf("the setup page asked omertad after setup was done: %v", e.fake.Hits()[n:])
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t, Limits{})
	e.fake.AddUser("alice", "operator", testPassword)
	resp, _ := e.get("/agents?x=1", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next="+url.QueryEscape("/agents?x=1") {
		t.Fatalf("no session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := e.get("/login?next=/agents", nil)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="login-form"`, `name="next" value="/agents"`)
	checkCSPClean(t, "login", body)

	for _, tc := range []struct{ name, user, pass string }{{"wrong password", "alice", "nope nope nope"}, {"no such user", "zed", testPassword}} {
		resp, body = e.post("/login", form("username", tc.user, "password", tc.pass), nil)
		wantStatus(t, resp, body, http.StatusUnauthorized)
		wantContains(t, body, "Wrong username or password")
		if resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s: a cookie was set", tc.name)
		}
	}
	resp, body = e.post("/login", form("username", "ratelimited", "password", "x"), nil)
	wantStatus(t, resp, body, http.StatusTooManyRequests)
	wantContains(t, body, "Too many sign-in attempts")

	for next, want := range map[string]string{"/agents": "/agents", "//evil.example/x": "/", "https://evil.example": "/", "/\\evil": "/", "": "/"} {
		resp, body = e.post("/login", form("username", "alice", "password", testPassword, "next", next), nil)
		wantStatus(t, resp, body, http.StatusSeeOther)
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("next %q: redirected to %q, want %q", next, got, want)
		}
	}
}

func TestControlsFollowTheRole(t *testing.T) {
	e := newEnv(t, Limits{})
	e.fake.AddAgents(1)
	mutating := []string{`data-testid="action-disable"`, `data-testid="action-delete"`, `data-testid="action-restart"`, `data-testid="patch-form"`,
		`data-testid="agent-task-form"`, `data-testid="deploy-link"`, `data-testid="deploy-form"`, `data-testid="task-form"`, `data-testid="user-form"`,
		`data-testid="token-form"`}
	pages := []string{"/", "/catalog", "/catalog/sample-tool", "/agents", "/agents/agent-000", "/tasks", "/report", "/audit"}
	t.Run("auditor", func(t *testing.T) {
		aud := e.signIn("carol", "auditor")
		for _, p := range pages {
			resp, body := e.get(p, &aud)
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: %d", p, resp.StatusCode)
			}
			wantNotContains(t, body, mutating...)
			wantNotContains(t, body, `href="/users"`, `href="/tokens"`, `href="/catalog"`, `href="/tasks"`)
			checkCSPClean(t, "auditor "+p, body)
		}
		_, body := e.get("/", &aud)
		wantContains(t, body, `href="/audit"`, `href="/report"`, `data-testid="firstboot-card"`)
		_, body = e.get("/agents/agent-000", &aud)
		wantNotContains(t, body, `data-testid="logs-panel"`) // agent output may hold anything
		resp, _ := e.get("/users", &aud)
		wantStatus(t, resp, "", http.StatusForbidden)
	})
	t.Run("operator", func(t *testing.T) {
		op := e.signIn("olga", "operator")
		_, body := e.get("/agents/agent-000", &op)
		wantContains(t, body, `data-testid="action-disable"`, `data-testid="action-delete"`, `data-testid="logs-panel"`, `data-testid="agent-task-form"`)
		_, body = e.get("/", &op)
		wantNotContains(t, body, `href="/audit"`, `href="/users"`, `href="/tokens"`, `data-testid="recent-audit"`)
	})
	t.Run("admin", func(t *testing.T) {
		admin := e.signIn("alice", "admin")
		_, body := e.get("/", &admin)
		wantContains(t, body, `href="/audit"`, `href="/users"`, `href="/tokens"`, `data-testid="recent-audit"`)
	})
}

func TestDeployFormFromTheSchema(t *testing.T) {
	e := newEnv(t, Limits{})
	op := e.signIn("olga", "operator")
	resp, body := e.get("/catalog/sample-http", &op)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body,
		`name="cfg.title" type="text" value="OMERTAOS sample agent" required maxlength="80"`,
		`name="cfg.workers" type="number" value="2" required min="1" max="8" step="1"`,
		`name="cfg.ratio" type="number" value="" min="0" max="1" step="any"`,
		`name="cfg.api_key" type="password" autocomplete="new-password"`,
		`type="checkbox" id="f-cfg.debug" name="cfg.debug"`,
		`<option value="&#34;fast&#34;">fast</option>`,
		`name="cfg.slug" type="text" value="" pattern="[\s\S]*(?:^[a-z]&#43;$)[\s\S]*"`,
		`<textarea id="f-cfg.extra" name="cfg.extra"`)

	// The browser's checks are a convenience: the console reads the form
	// against the schema again, and omertad validates it once more.
	resp, body = e.post("/catalog/sample-http", form(CSRFField, op.csrf, "cfg.title", "t", "cfg.workers", "many"), &op)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantContains(t, body, `data-testid="problem-workers">workers is not a whole number`)
	resp, body = e.post("/catalog/sample-http", form(CSRFField, op.csrf, "cfg.title", "t", "cfg.workers", "99"), &op)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantContains(t, body, `data-testid="problem-workers">workers must be at most 8`, "omertad refused")
	if len(e.fake.Audit()) != 0 {
		t.Fatal("a refused deploy was recorded")
	}
	resp, body = e.post("/catalog/sample-http", form(CSRFField, op.csrf, "cfg.title", "Mine", "cfg.workers", "3", "cfg.debug", "on",
		"cfg.mode", `"safe"`, "cfg.api_key", "s3cret-value", "cfg.extra", `{"a": [1, 2]}`, "agent_id", "web-1"), &op)
	wantStatus(t, resp, body, http.StatusSeeOther)
	if got := resp.Header.Get("Location"); got != "/agents/web-1?done=deployed" {
		t.Fatalf("deploy redirected to %q", got)
	}
	resp, body = e.get("/agents/web-1", &op)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, "<dt>title</dt><dd><code>Mine</code>", "<dt>workers</dt><dd><code>3</code>", "<dt>debug</dt><dd><code>true</code>",
		"<dt>mode</dt><dd><code>safe</code>", `<code>{&#34;a&#34;:[1,2]}</code>`, "Secrets set (never shown): <code>/api_key</code>")
	wantNotContains(t, body, "s3cret-value")
	checkCSPClean(t, "agent", body)
}

func TestAgentActionsAndTasks(t *testing.T) {
	e := newEnv(t, Limits{})
	op := e.signIn("olga", "operator")
	e.fake.AddAgents(1)
	resp, body := e.post("/agents/agent-000", form(CSRFField, op.csrf, "action", "disable"), &op)
	wantStatus(t, resp, body, http.StatusSeeOther)
	_, body = e.get(resp.Header.Get("Location"), &op)
	wantContains(t, body, "The agent is disabled", `data-testid="action-enable"`, `data-state="stopped"`)
	resp, body = e.post("/agents/agent-000", form(CSRFField, op.csrf, "action", "explode"), &op)
	wantStatus(t, resp, body, http.StatusBadRequest)

	resp, body = e.post("/agents/agent-000/tasks", form(CSRFField, op.csrf, "input", `{"text": "hi"}`), &op)
	wantStatus(t, resp, body, http.StatusSeeOther)
	loc := resp.Header.Get("Location")
	resp, body = e.get(loc, &op)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="task-result"`, `data-state="SUCCEEDED"`, "&#34;echo&#34;")
	checkCSPClean(t, "task", body)
	resp, body = e.post("/tasks", form(CSRFField, op.csrf, "agent", "agent-000", "input", `{nope`), &op)
	wantStatus(t, resp, body, http.StatusBadRequest)
	wantContains(t, body, "not valid JSON")

	resp, body = e.post("/agents/agent-000", form(CSRFField, op.csrf, "action", "delete"), &op)
	wantStatus(t, resp, body, http.StatusSeeOther)
	actions := map[string]bool{}
	for _, r := range e.fake.Audit() {
		actions[r.Action] = true
		if !strings.Contains(string(r.Detail), `"address":"0.0.0.0"`) {
			t.Errorf("audit %s without the browser's address: %s", r.Action, r.Detail)
		}
	}
	for _, a := range []string{"agent.disable", "task.create", "agent.delete"} {
		if !actions[a] {
			t.Errorf("omertad did not record %s", a)
		}
	}
}

func TestUsersAndTokens(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	resp, body := e.post("/users", form(CSRFField, admin.csrf, "username", "bob", "role", "auditor"), &admin)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="reset-link"`, "https://console.test/reset?token=omr_")
	checkCSPClean(t, "users", body)
	i := strings.Index(body, "/reset?token=")
	token := body[i+len("/reset?token=") : i+strings.IndexByte(body[i:], '"')]
	resp, body = e.get("/reset?token="+token, nil)
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = e.post("/reset", form("token", token, "password", testPassword, "password2", testPassword), nil)
	wantStatus(t, resp, body, http.StatusSeeOther)
	resp, body = e.post("/reset", form("token", token, "password", testPassword, "password2", testPassword), nil)
	wantStatus(t, resp, body, http.StatusUnauthorized)
	wantContains(t, body, "does not work any more")
	resp, _ = e.post("/login", form("username", "bob", "password", testPassword), nil)
	wantStatus(t, resp, "", http.StatusSeeOther)

	resp, body = e.post("/users/bob", form(CSRFField, admin.csrf, "action", "role", "role", "operator"), &admin)
	wantStatus(t, resp, body, http.StatusSeeOther)
	resp, body = e.post("/users/bob", form(CSRFField, admin.csrf, "action", "disable"), &admin)
	wantStatus(t, resp, body, http.StatusSeeOther)
	_, body = e.get("/users", &admin)
	wantContains(t, body, `data-user="bob"`, `badge bad">disabled`, `data-testid="user-enable"`)

	resp, body = e.post("/tokens", form(CSRFField, admin.csrf, "name", "ci", "role", "auditor", "days", "30"), &admin)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `value="omt_`, `data-testid="token-secret"`, "shown once")
	resp, body = e.post("/tokens", form(CSRFField, admin.csrf, "name", "x", "role", "auditor", "days", "0"), &admin)
	wantStatus(t, resp, body, http.StatusBadRequest)
	resp, body = e.post("/tokens/1/revoke", form(CSRFField, admin.csrf), &admin)
	wantStatus(t, resp, body, http.StatusSeeOther)
	_, body = e.get("/tokens", &admin)
	wantContains(t, body, `badge bad">revoked`)
	wantNotContains(t, body, "omt_")
}

func TestReportAndAudit(t *testing.T) {
	e := newEnv(t, Limits{})
	aud := e.signIn("carol", "auditor")
	resp, body := e.get("/report", &aud)
	wantStatus(t, resp, body, http.StatusOK)
	wantContains(t, body, `data-testid="report-verification">verified`, "omerta-test", `data-testid="lynis-audit" data-state="done">hardening index 71`, `href="/report.json"`, `href="/report.html"`,
		"&lt;b&gt;K-2&lt;/b&gt;", "kernel &lt;script&gt;x&lt;/script&gt;")
	checkCSPClean(t, "report", body)
	resp, body = e.get("/report.json", &aud)
	wantStatus(t, resp, body, http.StatusOK)
	var got, want any
	json.Unmarshal([]byte(body), &got)
	json.Unmarshal([]byte(uitest.ReportJSON), &want)
	if !reflect.DeepEqual(got, want) || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("report.json is not the report, as an attachment: %s", body)
	}
	resp, _ = e.get("/report.html", &aud)
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("report.html: CSP %q, disposition %q", resp.Header.Get("Content-Security-Policy"), resp.Header.Get("Content-Disposition"))
	}

	admin := e.signIn("alice", "admin")
	for range 60 {
		e.post("/tokens", form(CSRFField, admin.csrf, "name", "t", "role", "auditor"), &admin)
	}
	resp, body = e.get("/audit", &aud)
	wantStatus(t, resp, body, http.StatusOK)
	if n := strings.Count(body, `data-testid="audit-row"`); n != auditPage {
		t.Errorf("%d rows, want %d", n, auditPage)
	}
	wantContains(t, body, `data-testid="audit-table"`, "<td>60</td>", `href="/audit?after=0"`)
	wantNotContains(t, body, "<td>10</td>")
	_, body = e.get("/audit?after=0", &aud)
	wantContains(t, body, "<td>1</td>", "<td>50</td>")
	resp, _ = e.get("/audit?after=-5", &aud)
	wantStatus(t, resp, "", http.StatusBadRequest)
}

func TestEveryPageIsCSPClean(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(7)
	e.post("/agents/agent-000/tasks", form(CSRFField, admin.csrf, "input", "{}"), &admin)
	pages := []string{"/", "/catalog", "/catalog?q=http&category=Services", "/catalog?q=nothing-matches", "/catalog/sample-http", "/catalog/sample-tool",
		"/catalog/broken", "/catalog/nope", "/agents", "/agents/agent-000", "/agents/agent-001", "/agents/nope", "/tasks", "/tasks?agent=agent-000&task=task-0001",
		"/tasks?task=nope", "/report", "/audit", "/users", "/tokens", "/nothing", "/login", "/reset?token=x", "/reset"}
	for _, p := range pages {
		resp, body := e.get(p, &admin)
		if resp.StatusCode >= 500 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		checkCSPClean(t, p, body)
	}
	for _, name := range []string{"app.css", "app.js", "live.js", "favicon.svg"} {
		resp, body := e.get("/static/"+name, nil)
		wantStatus(t, resp, body, http.StatusOK)
		if strings.Contains(strings.ReplaceAll(body, "http://www.w3.org/2000/svg", ""), "http") {
			t.Errorf("%s refers to another origin", name)
		}
	}
}

func TestStaticAssetsCachedByContent(t *testing.T) {
	e := newEnv(t, Limits{})
	resp, _ := e.get("/static/app.js", nil)
	etag := resp.Header.Get("ETag")
	if etag == "" || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("app.js: ETag %q, Cache-Control %q, Content-Type %q", etag, resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Type"))
	}
	r := req("GET", "/static/app.js", "", nil)
	r.Header.Set("If-None-Match", etag)
	resp, _ = e.do(r)
	wantStatus(t, resp, "", http.StatusNotModified)
	for _, p := range []string{"/static/../templates/layout.html", "/static/nope.js", "/static/%2e%2e/templates/layout.html"} {
		resp, body := e.get(p, nil)
		if resp.StatusCode == http.StatusOK || strings.Contains(body, `{{`) {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}

func TestOmertadDownIsExplained(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	e.s.be = ClientBackend{C: brokenClient(t)}
	resp, body := e.get("/", &admin)
	wantStatus(t, resp, body, http.StatusBadGateway)
	wantContains(t, body, "omertad did not answer", "systemctl status omertad")
	resp, body = e.get("/api/v1/agents", &admin)
	wantStatus(t, resp, body, http.StatusBadGateway)
}

// formOf returns the <form> start tag around the element with data-testid
// id, or "" when the page has none.
func formOf(body, id string) string {
	i := strings.Index(body, `data-testid="`+id+`"`)
	if i < 0 {
		return ""
	}
	start := strings.LastIndex(body[:i], "<form")
	if start < 0 {
		return ""
	}
	end := strings.Index(body[start:], ">")
	return body[start : start+end+1]
}

// TestAgentActionsFollowDesired: the agent page renders every action and
// hides those that do not fit the desired state, so that live.js can show
// Enable and hide Disable when the agent is disabled elsewhere, without a
// reload. Before, only the actions of the state at load time were
// rendered and a disabled agent's page kept offering Disable.
func TestAgentActionsFollowDesired(t *testing.T) {
	e := newEnv(t, Limits{})
	op := e.signIn("olga", "operator")
	e.fake.AddAgents(1)
	check := func(when string, hidden map[string]bool) {
		t.Helper()
		_, body := e.get("/agents/agent-000", &op)
		for id, want := range hidden {
			tag := formOf(body, id)
			if tag == "" {
				t.Errorf("%s: no form for %s: every action is rendered, the unfitting ones hidden", when, id)
				continue
			}
			if got := strings.Contains(tag, " hidden"); got != want {
				t.Errorf("%s: %s hidden = %v, want %v (%s)", when, id, got, want, tag)
			}
			if !strings.Contains(tag, "data-when-desired=") && !strings.Contains(tag, "data-unless-desired=") {
				t.Errorf("%s: %s does not say which desired state it fits: live.js cannot follow it (%s)", when, id, tag)
			}
		}
	}
	check("enabled", map[string]bool{"action-enable": true, "action-restart": false, "action-disable": false})
	resp, body := e.post("/agents/agent-000", form(CSRFField, op.csrf, "action", "disable"), &op)
	wantStatus(t, resp, body, http.StatusSeeOther)
	check("disabled", map[string]bool{"action-enable": false, "action-restart": true, "action-disable": true})
}

// TestWatchedTaskInTheList: the tasks page reads the list and the watched
// task side by side; the list's row of the watched task shows the state
// of whichever read is further along, so a finished task's result is
// never shown beside a RUNNING row.
func TestWatchedTaskInTheList(t *testing.T) {
	list := func(states ...string) []apitype.Task {
		var out []apitype.Task
		for i, s := range states {
			out = append(out, apitype.Task{ID: "task-" + strconv.Itoa(i), State: s})
		}
		return out
	}
	watched := func(id, state string) part[apitype.Task] {
		return part[apitype.Task]{V: apitype.Task{ID: id, State: state}}
	}
	for _, tc := range []struct {
		name    string
		list    []apitype.Task
		watched part[apitype.Task]
		want    []string
	}{
		{"list read while running", list("RUNNING", "SUCCEEDED"), watched("task-0", "SUCCEEDED"), []string{"SUCCEEDED", "SUCCEEDED"}},
		{"list read while pending", list("PENDING"), watched("task-0", "RUNNING"), []string{"RUNNING"}},
		{"task read first", list("FAILED"), watched("task-0", "RUNNING"), []string{"FAILED"}},
		{"another task", list("RUNNING"), watched("task-9", "SUCCEEDED"), []string{"RUNNING"}},
		{"watched failed to load", list("RUNNING"), part[apitype.Task]{Err: "omertad did not answer"}, []string{"RUNNING"}},
		{"no list", nil, watched("task-0", "SUCCEEDED"), nil},
	} {
		got := withWatched(tc.list, tc.watched)
		var states []string
		for _, t := range got {
			states = append(states, t.State)
		}
		if !reflect.DeepEqual(states, tc.want) {
			t.Errorf("%s: states %v, want %v", tc.name, states, tc.want)
		}
	}
}

// TestDashboardAuditOneCall: once the console has seen the audit log's
// head, the dashboard's latest records cost one call to omertad, and they
// are still the newest ones, new records among them.
func TestDashboardAuditOneCall(t *testing.T) {
	e := newEnv(t, Limits{})
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(1)
	act := func() {
		for _, verb := range []string{"disable", "enable"} {
			resp, body := e.post("/agents/agent-000", form(CSRFField, admin.csrf, "action", verb), &admin)
			wantStatus(t, resp, body, http.StatusSeeOther)
		}
	}
	for range 6 {
		act()
	}
	e.get("/", &admin) // finds the head
	for round := range 2 {
		n := len(e.fake.Hits())
		_, body := e.get("/", &admin)
		calls := 0
		for _, h := range e.fake.Hits()[n:] {
			if strings.HasPrefix(h, "GET /api/v1/audit") {
				calls++
			}
		}
		if calls != 1 {
			t.Errorf("round %d: %d calls for the audit section, want 1: %v", round, calls, e.fake.Hits()[n:])
		}
		recs := e.fake.Audit()
		for i, r := range recs {
			row := "<tr><td>" + strconv.FormatInt(r.Seq, 10) + "</td>"
			if shown := strings.Contains(body, row); shown != (i >= len(recs)-dashboardAudit) {
				t.Errorf("round %d: record %d of %d shown: %v", round, r.Seq, len(recs), shown)
			}
		}
		act() // new records for the next round
	}
}
