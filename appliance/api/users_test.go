package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
)

// TestUserLifecycle: an admin creates a user without a password, who sets
// one with the reset link and logs in; a role change and disabling end the
// user's sessions; the last admin cannot be disabled.
func TestUserLifecycle(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	admin := e.setup()
	a := e.other.do("POST", "/api/v1/users", admin.change(), apitype.UserCreate{Username: "Carol", Role: "auditor"})
	var cu apitype.UserCreated
	if a.decode(t, &cu); a.status != http.StatusCreated || cu.User.Username != "carol" || cu.User.PasswordSet || cu.Reset == nil || cu.Reset.Token == "" {
		t.Fatalf("create without a password = %s", a)
	}
	if a := e.other.do("POST", "/api/v1/reset", nil, apitype.ResetRequest{Token: cu.Reset.Token, Password: userPass}); a.status != http.StatusNoContent {
		t.Fatalf("completing the reset = %s", a)
	}
	if a := e.other.do("POST", "/api/v1/reset", nil, apitype.ResetRequest{Token: cu.Reset.Token, Password: userPass}); a.status != http.StatusForbidden ||
		errorOf(a) != auth.ErrResetToken.Error() {
		t.Fatalf("using the reset link twice = %s, want 403", a)
	}
	carol := e.login("carol", userPass)
	if a := e.other.do("GET", "/api/v1/users", carol.read(), nil); a.status != http.StatusForbidden {
		t.Fatalf("auditor listing users = %s, want 403", a)
	}
	var list apitype.UserList
	a = e.other.do("GET", "/api/v1/users", admin.read(), nil)
	if a.decode(t, &list); len(list.Users) != 2 {
		t.Fatalf("users = %s", a)
	}
	a = e.other.do("PUT", "/api/v1/users/carol/role", admin.change(), apitype.RoleChange{Role: "operator"})
	var u apitype.User
	if a.decode(t, &u); a.status != 200 || u.Role != "operator" {
		t.Fatalf("role change = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/whoami", carol.read(), nil); a.status != http.StatusUnauthorized {
		t.Fatalf("session after a role change = %s, want 401", a)
	}
	carol = e.login("carol", userPass)
	a = e.other.do("POST", "/api/v1/users/carol/disable", admin.change(), nil)
	if a.decode(t, &u); a.status != 200 || !u.Disabled {
		t.Fatalf("disable = %s", a)
	}
	if a := e.other.do("GET", "/api/v1/whoami", carol.read(), nil); a.status != http.StatusUnauthorized {
		t.Fatalf("session after disable = %s, want 401", a)
	}
	if a := e.other.do("POST", "/api/v1/users/admin/disable", admin.change(), nil); a.status != http.StatusConflict {
		t.Fatalf("disabling the last admin = %s, want 409", a)
	}
	a = e.other.do("POST", "/api/v1/users/carol/enable", admin.change(), nil)
	if a.decode(t, &u); a.status != 200 || u.Disabled {
		t.Fatalf("enable = %s", a)
	}
	var link apitype.ResetLink
	a = e.other.do("POST", "/api/v1/users/carol/reset", admin.change(), nil)
	if a.decode(t, &link); a.status != http.StatusCreated || link.Token == "" || link.User != "carol" {
		t.Fatalf("reset link = %s", a)
	}
	for _, c := range []struct {
		method, path string
		body         any
		code         int
	}{
		{"GET", "/api/v1/users/nobody", nil, 404},
		{"GET", "/api/v1/users/Not%20A%20Name", nil, 400},
		{"POST", "/api/v1/users", apitype.UserCreate{Username: "carol", Role: "auditor"}, 409},
		{"POST", "/api/v1/users", apitype.UserCreate{Username: "dave", Role: "root"}, 400},
		{"POST", "/api/v1/users", `{"username":"dave","role":"auditor","extra":1}`, 400},
		{"POST", "/api/v1/users", `{"username":"dave"} {}`, 400},
		{"PUT", "/api/v1/users/carol/role", apitype.RoleChange{Role: "superuser"}, 400},
	} {
		if a := e.other.do(c.method, c.path, admin.change(), c.body); a.status != c.code {
			t.Errorf("%s %s %v = %s, want %d", c.method, c.path, c.body, a, c.code)
		}
	}
	rec, ok := e.lastAudit("auth.user.disable", "carol")
	if d := auditDetail(t, rec); !ok || rec.Actor != "admin" || d["address"] != "local:uid=64000" || d["outcome"] != "success" {
		t.Errorf("disable's audit record = %+v %v", rec, d)
	}
	rec, ok = e.lastAudit("auth.user.disable", "admin")
	if d := auditDetail(t, rec); !ok || d["outcome"] != "refused" {
		t.Errorf("refused disable's audit record = %+v %v", rec, d)
	}
}

// TestTokenSecretShownOnce: the secret is in the creation's answer and in
// no list; revoking twice is 409, a bad id 400.
func TestTokenSecretShownOnce(t *testing.T) {
	needRoot(t)
	e := newAuthEnv(t)
	admin := e.setup()
	a := e.other.do("POST", "/api/v1/tokens", admin.change(), apitype.TokenCreate{Name: "backup", Role: "auditor"})
	var it apitype.TokenIssued
	if a.decode(t, &it); a.status != 201 || it.Secret == "" || it.Token.Role != "auditor" || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create token = %s %v", a, a.header)
	}
	l := e.other.do("GET", "/api/v1/tokens", admin.read(), nil)
	var list apitype.TokenList
	if l.decode(t, &list); len(list.Tokens) != 1 || list.Tokens[0].Name != "backup" || bytesContains(l.body, it.Secret) {
		t.Fatalf("token list = %s", l)
	}
	path := "/api/v1/tokens/" + strconvI(it.Token.ID)
	if a := e.other.do("DELETE", path, admin.change(), nil); a.status != 204 {
		t.Fatalf("revoke = %s", a)
	}
	if a := e.other.do("DELETE", path, admin.change(), nil); a.status != 409 {
		t.Fatalf("revoke again = %s, want 409", a)
	}
	for _, id := range []string{"0", "-1", "x", "99999999999999999999"} {
		if a := e.other.do("DELETE", "/api/v1/tokens/"+id, admin.change(), nil); a.status != 400 {
			t.Errorf("revoke %q = %s, want 400", id, a)
		}
	}
	if a := e.other.do("DELETE", "/api/v1/tokens/77", admin.change(), nil); a.status != 404 {
		t.Errorf("revoke an unknown id = %s, want 404", a)
	}
}

// TestAuthMirrors keeps apitype's copies of auth's types in step: the
// converted value encodes as the original does, and the mirror knows
// every member of the original's JSON.
func TestAuthMirrors(t *testing.T) {
	mirror := func(name string, orig, conv, into any) {
		ob, _ := json.Marshal(orig)
		cb, _ := json.Marshal(conv)
		if !bytes.Equal(ob, cb) {
			t.Errorf("%s: converted JSON differs:\n orig %s\n conv %s", name, ob, cb)
		}
		dec := json.NewDecoder(bytes.NewReader(ob))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Errorf("%s: apitype lacks a member of auth's JSON: %v", name, err)
		}
	}
	u := auth.User{ID: 3, Username: "carol", Role: auth.RoleAuditor, Disabled: true, PasswordSet: true, CreatedAt: at, CreatedBy: "admin",
		UpdatedAt: at.Add(time.Hour), PasswordChangedAt: at.Add(2 * time.Hour), LastLoginAt: at.Add(3 * time.Hour)}
	mirror("user", u, userView(u), &apitype.User{})
	mirror("new user", auth.User{ID: 1, Username: "x", Role: auth.RoleAdmin}, userView(auth.User{ID: 1, Username: "x", Role: auth.RoleAdmin}), &apitype.User{})
	tk := auth.Token{ID: 9, Name: "ci", Role: auth.RoleOperator, CreatedBy: "admin", CreatedAt: at, ExpiresAt: at.Add(time.Hour), LastUsedAt: at, RevokedAt: at}
	mirror("token", tk, tokenView(tk), &apitype.Token{})
	rl := auth.ResetLink{Token: "omr_x", User: "carol", ExpiresAt: at}
	mirror("reset link", rl, resetView(rl), &apitype.ResetLink{})
}
