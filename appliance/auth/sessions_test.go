package auth

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func (e *env) auth(id string) error {
	_, err := e.svc.Authenticate(ctx, id)
	return err
}

func (e *env) newSession(user, pw, prev string) Session {
	e.t.Helper()
	s, err := e.svc.Login(ctx, LoginRequest{Username: user, Password: pw, Address: "192.0.2.9", PreviousSessionID: prev})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

const adminPW = "first admin password 1"

func TestSessionIdleTimeout(t *testing.T) {
	e := newEnv(t)
	s := e.newSession("root-admin", adminPW, "")
	if s.IdleTimeout != 30*time.Minute || !s.ExpiresAt.Equal(s.CreatedAt.Add(12*time.Hour)) {
		t.Fatalf("session %+v: want 30m idle, 12h absolute", s)
	}
	for range 3 {
		e.clock.Advance(29 * time.Minute) // used just in time, three times
		if err := e.auth(s.ID); err != nil {
			t.Fatalf("after 29 idle minutes: %v", err)
		}
	}
	e.clock.Advance(30 * time.Minute)
	wantErr(t, e.auth(s.ID), ErrUnauthenticated)
	if n := e.count("SELECT count(*) FROM auth_sessions WHERE id_hash = ?", sha256Hex(s.ID)); n != 0 {
		t.Fatal("the expired session is still stored")
	}
}

func TestSessionAbsoluteTimeout(t *testing.T) {
	e := newEnv(t)
	s := e.newSession("root-admin", adminPW, "")
	for elapsed := time.Duration(0); elapsed < 12*time.Hour-20*time.Minute; elapsed += 20 * time.Minute {
		e.clock.Advance(20 * time.Minute)
		if err := e.auth(s.ID); err != nil {
			t.Fatalf("at %s of use: %v", elapsed+20*time.Minute, err)
		}
	}
	e.clock.Advance(20 * time.Minute) // 12h exactly, though never idle
	wantErr(t, e.auth(s.ID), ErrUnauthenticated)
}

// Last-seen is written at most once per TouchInterval, not per request.
func TestSessionTouchIsThrottled(t *testing.T) {
	e := newEnv(t)
	s := e.newSession("root-admin", adminPW, "")
	lastSeen := func() string {
		var v string
		e.st.Read().QueryRowContext(ctx, "SELECT last_seen_at FROM auth_sessions WHERE id_hash = ?", sha256Hex(s.ID)).Scan(&v)
		return v
	}
	first := lastSeen()
	e.clock.Advance(59 * time.Second)
	for range 10 {
		if err := e.auth(s.ID); err != nil {
			t.Fatal(err)
		}
	}
	if lastSeen() != first {
		t.Fatal("last-seen written within the touch interval")
	}
	e.clock.Advance(time.Second)
	e.auth(s.ID)
	if lastSeen() == first {
		t.Fatal("last-seen not written after the touch interval")
	}
}

func TestSessionRotatedAtLogin(t *testing.T) {
	e := newEnv(t)
	a := e.newSession("root-admin", adminPW, "")
	b := e.newSession("root-admin", adminPW, a.ID)
	if a.ID == b.ID || a.CSRFToken == b.CSRFToken {
		t.Fatal("a login reused the session ID or CSRF token")
	}
	wantErr(t, e.auth(a.ID), ErrUnauthenticated)
	if err := e.auth(b.ID); err != nil {
		t.Fatal(err)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(a.ID); err != nil || len(raw) != 16 {
		t.Fatalf("session ID %q is not 128 bits of base64url", a.ID)
	}
}

func TestSessionStoredHashed(t *testing.T) {
	e := newEnv(t)
	s := e.newSession("root-admin", adminPW, "")
	if n := e.count("SELECT count(*) FROM auth_sessions WHERE id_hash = ?", sha256Hex(s.ID)); n != 1 {
		t.Fatal("no session row under the ID's hash")
	}
	if n := e.count("SELECT count(*) FROM auth_sessions WHERE instr(id_hash, ?) > 0 OR instr(address, ?) > 0", s.ID, s.ID); n != 0 {
		t.Fatal("the session ID is stored in the clear")
	}
}

func TestSessionsEndOnDisableAndRoleChange(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		change func(user string) error
	}{
		{"disable", func(u string) error { return e.svc.SetDisabled(ctx, e.admin, u, true) }},
		{"role change", func(u string) error { return e.svc.SetRole(ctx, e.admin, u, RoleAuditor) }},
		{"reset", func(u string) error {
			link, err := e.svc.IssueReset(ctx, e.admin, u)
			if err != nil {
				return err
			}
			return e.svc.CompleteReset(ctx, ResetRequest{Token: link.Token, Password: "a brand new secret phrase"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := strings.ReplaceAll(tc.name, " ", "-") + "-user"
			p1 := e.user(user, RoleOperator)
			s2 := e.newSession(user, "tangerine orbit quietly operator", "")
			other := e.newSession("root-admin", adminPW, "")
			if err := tc.change(user); err != nil {
				t.Fatal(err)
			}
			wantErr(t, e.auth(s2.ID), ErrUnauthenticated)
			if n := e.count("SELECT count(*) FROM auth_sessions WHERE user_id = ?", p1.UserID); n != 0 {
				t.Fatalf("%d sessions of the user remain", n)
			}
			if err := e.auth(other.ID); err != nil {
				t.Fatalf("another user's session ended too: %v", err)
			}
		})
	}
	// Enabling again does not bring a session back.
	if err := e.svc.SetDisabled(ctx, e.admin, "disable-user", false); err != nil {
		t.Fatal(err)
	}
	if n := e.count("SELECT count(*) FROM auth_sessions s JOIN auth_users u ON u.id = s.user_id WHERE u.username = 'disable-user'"); n != 0 {
		t.Fatal("a session came back")
	}
}

// A role change takes effect on the very next request even if a session
// row were left behind: the role is read from the user, not the session.
func TestAuthenticateReadsCurrentRoleAndState(t *testing.T) {
	e := newEnv(t)
	e.user("judy", RoleOperator)
	s := e.newSession("judy", "tangerine orbit quietly operator", "")
	e.exec("UPDATE auth_users SET role = 'auditor' WHERE username = 'judy'")
	p, err := e.svc.Authenticate(ctx, s.ID)
	if err != nil || p.Role != RoleAuditor {
		t.Fatalf("Authenticate = %+v, %v; want role auditor", p, err)
	}
	e.exec("UPDATE auth_users SET disabled = 1 WHERE username = 'judy'")
	wantErr(t, e.auth(s.ID), ErrUnauthenticated)
}

func TestSessionsPerUserBounded(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SessionsPerUser = 3 })
	var ids []string
	for range 5 {
		e.clock.Advance(time.Second)
		ids = append(ids, e.newSession("root-admin", adminPW, "").ID)
	}
	if n := e.count("SELECT count(*) FROM auth_sessions"); n != 3 {
		t.Fatalf("%d sessions stored, bound 3", n)
	}
	for i, id := range ids {
		if err := e.auth(id); (err == nil) != (i >= 2) {
			t.Errorf("session %d: %v (the newest 3 should live)", i, err)
		}
	}
}

func TestAuthenticateMalformed(t *testing.T) {
	e := newEnv(t)
	good := e.newSession("root-admin", adminPW, "").ID
	for _, id := range []string{"", "x", good + "A", good[:21], strings.ToUpper(good[:1]) + "!" + good[2:], strings.Repeat("A", 10000),
		good[:21] + "B", // a different ID of the right shape
	} {
		wantErr(t, e.auth(id), ErrUnauthenticated)
	}
}

func TestCheckCSRF(t *testing.T) {
	e := newEnv(t)
	s := e.newSession("root-admin", adminPW, "")
	p, err := e.svc.Authenticate(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.CSRFToken() != s.CSRFToken {
		t.Fatal("Authenticate does not return the session's CSRF token")
	}
	if err := CheckCSRF(p, s.CSRFToken); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", s.CSRFToken[:len(s.CSRFToken)-1], s.CSRFToken + "x", strings.ToUpper(s.CSRFToken)} {
		if bad == s.CSRFToken {
			continue
		}
		wantErr(t, CheckCSRF(p, bad), ErrCSRF)
		wantErr(t, CheckCSRF(p, bad), ErrForbidden)
	}
	// A session principal without a token (a zero value) never passes.
	wantErr(t, CheckCSRF(Principal{Kind: KindSession}, ""), ErrCSRF)
	// Tokens and the system are not ambient credentials.
	if CheckCSRF(Principal{Kind: KindToken}, "") != nil || CheckCSRF(System("uid:0"), "") != nil {
		t.Fatal("CheckCSRF refused a non-session principal")
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	s := e.newSession("root-admin", adminPW, "")
	p, _ := e.svc.Authenticate(ctx, s.ID)
	p.Address = "192.0.2.77"
	if err := e.svc.Logout(ctx, p); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.auth(s.ID), ErrUnauthenticated)
	if rec := e.lastAudit("auth.logout"); rec.Actor != "root-admin" || !strings.Contains(string(rec.Detail), "192.0.2.77") {
		t.Fatalf("logout audit %s %s", rec.Actor, rec.Detail)
	}
	wantErr(t, e.svc.Logout(ctx, Principal{Kind: KindToken, Role: RoleAdmin}), ErrUnauthenticated)
}

func TestPurgeExpired(t *testing.T) {
	e := newEnv(t)
	e.newSession("root-admin", adminPW, "")
	if _, err := e.svc.IssueReset(ctx, e.admin, "root-admin"); err != nil {
		t.Fatal(err)
	}
	before := e.count("SELECT count(*) FROM auth_sessions")
	if n, err := e.svc.PurgeExpired(ctx); err != nil || n != 0 {
		t.Fatalf("PurgeExpired = %d, %v with nothing expired", n, err)
	}
	e.clock.Advance(13 * time.Hour)
	n, err := e.svc.PurgeExpired(ctx)
	if err != nil || n != int64(before)+1 {
		t.Fatalf("PurgeExpired = %d, %v; want %d sessions and 1 reset link", n, err, before)
	}
}

func FuzzParseSessionID(f *testing.F) {
	f.Add(randomText(sessionIDBytes))
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAB")
	f.Add("AAAAAAAAAAAAAAAAAAAAA=")
	f.Fuzz(func(t *testing.T, id string) {
		b, err := parseSessionID(id)
		if err != nil {
			return
		}
		if len(b) != sessionIDBytes || base64.RawURLEncoding.EncodeToString(b) != id {
			t.Fatalf("accepted %q, which is not the one spelling of 16 bytes", id)
		}
	})
}

// The session read is prepared once, and answers the same unprepared (the
// fallback when preparing fails).
func TestSessionReadPrepared(t *testing.T) {
	e := newEnv(t)
	s := e.newSession("root-admin", adminPW, "")
	if err := e.auth(s.ID); err != nil {
		t.Fatal(err)
	}
	if e.svc.sessionStmt == nil {
		t.Fatal("the session read was not prepared")
	}
	prepared, err := e.svc.Authenticate(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.sessionStmt = nil
	plain, err := e.svc.Authenticate(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if prepared != plain {
		t.Errorf("prepared %+v, unprepared %+v", prepared, plain)
	}
	wantErr(t, e.auth(strings.Repeat("A", len(s.ID))), ErrUnauthenticated)
}
