package uitest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

const minPassword = 12

func (f *Fake) sessionAnswer(name string) apitype.Session {
	id, csrf := f.newSessionLocked(name)
	u := f.users[name]
	return apitype.Session{SessionID: id, CSRFToken: csrf, User: name, Role: u.Role, ExpiresAt: time.Now().Add(12 * time.Hour).UTC(), IdleTimeoutS: 1800}
}

func (f *Fake) authRoutes() {
	f.route("GET /api/v1/setup", "", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		writeJSON(w, http.StatusOK, apitype.SetupState{Done: f.setupDone})
	})
	f.route("POST /api/v1/setup", "", func(w http.ResponseWriter, r *http.Request, _ principal) {
		var req apitype.SetupRequest
		if !decode(w, r, &req) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case f.setupDone:
			fail(w, http.StatusConflict, "setup is done")
		case req.Token != SetupToken:
			fail(w, http.StatusUnauthorized, "the setup token does not match, was used or expired")
		case len(req.Password) < minPassword:
			fail(w, http.StatusBadRequest, "password: must be at least 12 characters")
		default:
			f.setupDone = true
			f.users[req.Username] = &user{User: apitype.User{ID: 1, Username: req.Username, Role: "admin", PasswordSet: true, CreatedAt: time.Now().UTC(), CreatedBy: "setup"}, password: req.Password}
			f.record(r, principal{kind: apitype.KindSession, user: req.Username, role: "admin"}, "auth.setup", req.Username)
			writeJSON(w, http.StatusOK, f.sessionAnswer(req.Username))
		}
	})
	f.route("POST /api/v1/login", "", func(w http.ResponseWriter, r *http.Request, _ principal) {
		var req apitype.LoginRequest
		if !decode(w, r, &req) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if req.Username == "ratelimited" {
			w.Header().Set("Retry-After", "42")
			fail(w, http.StatusTooManyRequests, "too many login attempts; try again in 42s")
			return
		}
		u := f.users[req.Username]
		if u == nil || u.Disabled || u.password == "" || u.password != req.Password {
			fail(w, http.StatusUnauthorized, "wrong username or password")
			return
		}
		writeJSON(w, http.StatusOK, f.sessionAnswer(req.Username))
	})
	f.route("POST /api/v1/logout", "self", func(w http.ResponseWriter, r *http.Request, p principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.sessions, r.Header.Get(apitype.HeaderSession))
		f.record(r, p, "auth.logout", p.user)
		w.WriteHeader(http.StatusNoContent)
	})
	f.route("GET /api/v1/whoami", "self", func(w http.ResponseWriter, r *http.Request, p principal) {
		writeJSON(w, http.StatusOK, apitype.Whoami{Kind: p.kind, User: p.user, Role: p.role, Actions: Actions(p.role), CSRFToken: p.csrf})
	})
	f.route("POST /api/v1/reset", "", func(w http.ResponseWriter, r *http.Request, _ principal) {
		var req apitype.ResetRequest
		if !decode(w, r, &req) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		name, ok := f.resets[req.Token]
		if !ok {
			fail(w, http.StatusUnauthorized, "the reset link does not work")
			return
		}
		if len(req.Password) < minPassword {
			fail(w, http.StatusBadRequest, "password: must be at least 12 characters")
			return
		}
		delete(f.resets, req.Token)
		f.users[name].password, f.users[name].PasswordSet = req.Password, true
		w.WriteHeader(http.StatusNoContent)
	})
	f.route("GET /api/v1/version", "self", func(w http.ResponseWriter, r *http.Request, _ principal) {
		writeJSON(w, http.StatusOK, apitype.Version{Version: "test", Commit: "fake", GoVersion: "go"})
	})
	f.route("GET /api/v1/openapi.json", "", func(w http.ResponseWriter, r *http.Request, _ principal) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"openapi":"3.1.0","info":{"title":"fake omertad","version":"test"},"paths":{}}`))
	})
}

func (f *Fake) adminRoutes() {
	f.route("GET /api/v1/users", "users.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := apitype.UserList{Users: []apitype.User{}}
		for _, u := range f.users {
			out.Users = append(out.Users, u.User)
		}
		sortUsers(out.Users)
		writeJSON(w, http.StatusOK, out)
	})
	f.route("GET /api/v1/users/{name}", "users.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if u := f.users[r.PathValue("name")]; u != nil {
			writeJSON(w, http.StatusOK, u.User)
			return
		}
		fail(w, http.StatusNotFound, "no such user")
	})
	f.route("POST /api/v1/users", "users.write", func(w http.ResponseWriter, r *http.Request, p principal) {
		var req apitype.UserCreate
		if !decode(w, r, &req) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.users[req.Username]; ok || req.Username == "" {
			fail(w, http.StatusConflict, "user exists")
			return
		}
		if req.Role != "admin" && req.Role != "operator" && req.Role != "auditor" {
			fail(w, http.StatusBadRequest, "role: must be one of admin, operator, auditor")
			return
		}
		u := &user{User: apitype.User{ID: int64(len(f.users) + 1), Username: req.Username, Role: req.Role, PasswordSet: req.Password != "",
			CreatedAt: time.Now().UTC(), CreatedBy: p.actor()}, password: req.Password}
		f.users[req.Username] = u
		out := apitype.UserCreated{User: u.User}
		if req.Password == "" {
			tok := "omr_" + randomID(24)
			f.resets[tok] = req.Username
			out.Reset = &apitype.ResetLink{Token: tok, User: req.Username, ExpiresAt: time.Now().Add(time.Hour).UTC()}
		}
		f.record(r, p, "auth.user.create", req.Username)
		writeJSON(w, http.StatusCreated, out)
	})
	userVerb := func(verb string) handler {
		return func(w http.ResponseWriter, r *http.Request, p principal) {
			f.mu.Lock()
			defer f.mu.Unlock()
			u := f.users[r.PathValue("name")]
			if u == nil {
				fail(w, http.StatusNotFound, "no such user")
				return
			}
			switch verb {
			case "disable", "enable":
				u.Disabled = verb == "disable"
			case "reset":
				tok := "omr_" + randomID(24)
				f.resets[tok] = u.Username
				f.record(r, p, "auth.user.reset", u.Username)
				writeJSON(w, http.StatusOK, apitype.ResetLink{Token: tok, User: u.Username, ExpiresAt: time.Now().Add(time.Hour).UTC()})
				return
			case "role":
				var req apitype.RoleChange
				if !decode(w, r, &req) {
					return
				}
				u.Role = req.Role
			}
			f.record(r, p, "auth.user."+verb, u.Username)
			writeJSON(w, http.StatusOK, u.User)
		}
	}
	f.route("POST /api/v1/users/{name}/disable", "users.write", userVerb("disable"))
	f.route("POST /api/v1/users/{name}/enable", "users.write", userVerb("enable"))
	f.route("POST /api/v1/users/{name}/reset", "users.write", userVerb("reset"))
	f.route("PUT /api/v1/users/{name}/role", "users.write", userVerb("role"))
	f.route("GET /api/v1/tokens", "tokens.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := apitype.TokenList{Tokens: []apitype.Token{}}
		for _, t := range f.tokens {
			out.Tokens = append(out.Tokens, t.Token)
		}
		writeJSON(w, http.StatusOK, out)
	})
	f.route("POST /api/v1/tokens", "tokens.write", func(w http.ResponseWriter, r *http.Request, p principal) {
		var req apitype.TokenCreate
		if !decode(w, r, &req) {
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		t := f.addTokenLocked(req.Name, req.Role, p.actor(), req.ExpiresAt)
		f.record(r, p, "auth.token.create", req.Name)
		writeJSON(w, http.StatusCreated, apitype.TokenIssued{Token: t.Token, Secret: t.secret})
	})
	f.route("DELETE /api/v1/tokens/{id}", "tokens.write", func(w http.ResponseWriter, r *http.Request, p principal) {
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		f.mu.Lock()
		defer f.mu.Unlock()
		t := f.tokens[id]
		if t == nil {
			fail(w, http.StatusNotFound, "no such token")
			return
		}
		t.RevokedAt = time.Now().UTC()
		f.record(r, p, "auth.token.revoke", t.Name)
		w.WriteHeader(http.StatusNoContent)
	})
}

func sortUsers(us []apitype.User) {
	for i := 1; i < len(us); i++ {
		for j := i; j > 0 && us[j].Username < us[j-1].Username; j-- {
			us[j], us[j-1] = us[j-1], us[j]
		}
	}
}

func (f *Fake) evidenceRoutes() {
	f.route("GET /api/v1/audit", "audit.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit <= 0 {
			limit = apitype.AuditLimitDefault
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []apitype.AuditRecord{}
		for _, rec := range f.audit {
			if rec.Seq > after && len(out) < limit {
				out = append(out, rec)
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	f.route("GET /api/v1/audit/status", "audit.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		// Like omertad's: the chain as it was at start (empty here).
		writeJSON(w, http.StatusOK, apitype.AuditStatus{State: apitype.ChainEmpty, CheckedAt: f.booted})
	})
	f.route("GET /api/v1/probe", "probe.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		res := json.RawMessage(`{"schema_version":"1","host":{"cpu":{"model":"Test CPU 9000","cores":8,"threads":16},"memory":{"total_bytes":68719476736}},` +
			`"gpu":{"summary":"1 × NVIDIA H200","devices":[{}]}}`)
		writeJSON(w, http.StatusOK, apitype.ProbeView{ProbeID: 3, At: f.booted, BaselineID: 1,
			Verdict: apitype.Verdict{Profile: "pro", Status: "warn", Checks: []apitype.Check{
				{ID: "gpu.count", Status: "pass", Reason: "ok"}, {ID: "memory.total", Status: "warn", Reason: "below the recommended", Measured: "64 GiB", Required: "128 GiB"}}},
			Result: res})
	})
	f.route("GET /api/v1/probe/drift", "drift.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		writeJSON(w, http.StatusOK, apitype.DriftView{Events: []apitype.DriftEvent{{ID: 1, At: f.booted, Kind: "kernel", Subject: "cmdline", Message: "the kernel command line changed"}}})
	})
	f.route("GET /api/v1/report", "reports.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		writeJSON(w, http.StatusOK, fakeReport())
	})
	f.route("GET /api/v1/report.html", "reports.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><title>report</title><style>body{}</style><p>first-boot report</p>`))
	})
}

// ReportJSON is the fake's first-boot report, byte for byte.
const ReportJSON = `{"header":{"schema_version":"1","image":{"version":"0.1.0","digest":"sha256:abc"},"hostname":"omerta-test","profile":"pro",` +
	`"started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:03:00Z","summary":{"pass":2,"fail":0},"probe":{"status":"pass"},` +
	`"lynis_audit":{"status":"deferred","reason":""}},"addenda":[{"seq":1,"kind":"lynis","status":"done","lynis":{"version":"3.1.4","index":71,"warnings":[]}}],"records":[{"seq":1,"id":"SSH-1","title":"SSH off","expected":"off","actual":"off","result":"pass"},` +
	`{"seq":2,"id":"<b>K-2</b>","title":"kernel <script>x</script>","expected":"1","actual":"1","result":"pass"}],` +
	`"signature":{"algorithm":"ed25519","key_fingerprint":"SHA256:KEY"}}`

func fakeReport() apitype.ReportView {
	return apitype.ReportView{Report: json.RawMessage(ReportJSON),
		Verification: apitype.ReportVerification{Status: apitype.ReportVerified, Trusted: true, KeySource: "device", Fingerprint: "SHA256:KEY",
			Checks: []apitype.ReportCheck{{Name: "signature", OK: true, Detail: "valid"}}},
		Summary: &apitype.ReportSummary{Hostname: "omerta-test", Profile: "pro", ImageVersion: "0.1.0", FinishedAt: time.Date(2026, 1, 1, 0, 3, 0, 0, time.UTC),
			ProbeStatus: "pass", Records: 2, Outcomes: map[string]int{"pass": 2}}}
}
