package auth

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoginUniformFailures(t *testing.T) {
	e := newEnv(t)
	e.user("dave", RoleOperator)
	if err := e.svc.SetDisabled(ctx, e.admin, "dave", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateUser(ctx, e.admin, NewUser{Username: "erin", Role: RoleAuditor}); err != nil {
		t.Fatal(err) // no password: a reset link
	}
	e.user("frank", RoleAuditor)
	for _, tc := range []struct {
		name, user, pw, reason string
		dummy                  bool
	}{
		{"unknown user", "mallory", "some long password", "unknown user", true},
		{"malformed user", "mal\x00lory", "some long password", "unknown user", true},
		{"empty user", "", "some long password", "unknown user", true},
		{"wrong password", "frank", "not franks password", "wrong password", false},
		{"empty password", "frank", "", "wrong password", false},
		{"huge password", "frank", strings.Repeat("p", 100000), "wrong password", false},
		{"disabled user, right password", "dave", "tangerine orbit quietly operator", "user disabled", false},
		{"no password set", "erin", "some long password", "no password set", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.svc.hash.dummies.Load()
			_, err := e.svc.Login(ctx, LoginRequest{Username: tc.user, Password: tc.pw, Address: "192.0.2.50"})
			if err != ErrBadCredentials {
				t.Fatalf("Login = %v, want exactly ErrBadCredentials", err)
			}
			if err.Error() != "not authenticated: invalid username or password" {
				t.Fatalf("message %q", err)
			}
			if took := e.svc.hash.dummies.Load() - before; took != map[bool]int64{true: 1, false: 0}[tc.dummy] {
				t.Fatalf("dummy verifications: %d, want dummy path %v", took, tc.dummy)
			}
			rec := e.lastAudit("auth.login")
			var d map[string]any
			json.Unmarshal(rec.Detail, &d)
			if d["outcome"] != "refused" || d["reason"] != tc.reason || d["address"] != "192.0.2.50" {
				t.Fatalf("audit record %s %s", rec.Actor, rec.Detail)
			}
			if strings.Contains(string(rec.Detail), tc.pw) && tc.pw != "" {
				t.Fatal("the audit record holds the password")
			}
		})
	}
}

func TestLoginAudited(t *testing.T) {
	e := newEnv(t)
	e.user("grace", RoleAuditor)
	rec := e.lastAudit("auth.login")
	var d map[string]any
	json.Unmarshal(rec.Detail, &d)
	if rec.Actor != "grace" || d["outcome"] != "success" || d["role"] != "auditor" || d["address"] != "192.0.2.10" {
		t.Fatalf("audit record %s %s", rec.Actor, rec.Detail)
	}
}

func TestLoginCaseInsensitiveUsername(t *testing.T) {
	e := newEnv(t)
	if _, err := e.svc.Login(ctx, LoginRequest{Username: "Root-Admin", Password: "first admin password 1"}); err != nil {
		t.Fatal(err)
	}
}

// TestLoginTimingUnknownUser measures, loosely, that an unknown user costs
// what a wrong password costs: both compute one argon2id at the production
// parameters. The dummy-path counter in TestLoginUniformFailures is the
// exact check; this one guards against an early return added later.
func TestLoginTimingUnknownUser(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes at the production parameters")
	}
	e := newEnv(t, func(o *Options) { o.params = &DefaultParams; o.AccountLimit = Limit{Burst: 100, Window: time.Minute} })
	e.user("heidi", RoleOperator)
	// Interleaved, and the fastest of each kept: load from other processes
	// only ever adds time, and it lands on both kinds alike.
	try := func(user string) time.Duration {
		start := time.Now()
		_, err := e.svc.Login(ctx, LoginRequest{Username: user, Password: "not the password at all", Address: "192.0.2." + user[:1]})
		if !errors.Is(err, ErrBadCredentials) {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	known, unknown := time.Hour, time.Hour
	for range 7 {
		known = min(known, try("heidi"))
		unknown = min(unknown, try("ivan-unknown"))
	}
	t.Logf("wrong password %s, unknown user %s", known, unknown)
	if unknown < known/2 || unknown > known*2 {
		t.Fatalf("unknown user took %s, wrong password %s: not within 2x", unknown, known)
	}
}

// Login rehashes a password stored with weaker parameters.
func TestLoginRehashesOutdated(t *testing.T) {
	e := newEnv(t)
	weak := Params{Memory: 32, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	h, _ := newHasher(weak, 1, 1)
	old, _ := h.hash(ctx, "first admin password 1")
	e.exec("UPDATE auth_users SET password_hash = ? WHERE username = 'root-admin'", old)
	e.login("root-admin", "first admin password 1")
	var now string
	e.st.Read().QueryRowContext(ctx, "SELECT password_hash FROM auth_users WHERE username = 'root-admin'").Scan(&now)
	if !strings.HasPrefix(now, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash after login %q, want the service's parameters", now)
	}
	e.login("root-admin", "first admin password 1")
}

func TestLoginNoPasswordInDatabase(t *testing.T) {
	e := newEnv(t)
	rows, err := e.st.Read().QueryContext(ctx, "SELECT password_hash FROM auth_users")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var hashes []string
	for rows.Next() {
		var h string
		rows.Scan(&h)
		hashes = append(hashes, h)
	}
	if len(hashes) != 1 || !strings.HasPrefix(hashes[0], "$argon2id$") || slices.Contains(hashes, "first admin password 1") {
		t.Fatalf("stored %q", hashes)
	}
}
