package auth

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestCreateGetListUsers(t *testing.T) {
	e := newEnv(t)
	c, err := e.svc.CreateUser(ctx, e.admin, NewUser{Username: "Leo", Role: RoleOperator, Password: "tangerine orbit quietly"})
	if err != nil {
		t.Fatal(err)
	}
	if c.User.Username != "leo" || c.User.Role != RoleOperator || !c.User.PasswordSet || c.User.CreatedBy != "root-admin" || c.Reset != nil {
		t.Fatalf("created %+v", c)
	}
	u, err := e.svc.GetUser(ctx, e.admin, "LEO")
	if err != nil || u.ID != c.User.ID {
		t.Fatalf("GetUser = %+v, %v", u, err)
	}
	list, err := e.svc.ListUsers(ctx, e.admin)
	if err != nil || len(list) != 2 || list[0].Username != "leo" || list[1].Username != "root-admin" {
		t.Fatalf("ListUsers = %+v, %v", list, err)
	}
	rec := e.lastAudit("auth.user.create")
	var d map[string]any
	json.Unmarshal(rec.Detail, &d)
	if rec.Actor != "root-admin" || rec.Target != "leo" || d["outcome"] != "success" || d["role"] != "admin" || d["address"] != "192.0.2.10" {
		t.Fatalf("audit %s %s %s", rec.Actor, rec.Target, rec.Detail)
	}
	if strings.Contains(string(rec.Detail), "tangerine") {
		t.Fatal("the audit record holds the password")
	}
	_, err = e.svc.GetUser(ctx, e.admin, "nobody")
	wantErr(t, err, ErrNotFound)
}

func TestCreateUserRefusals(t *testing.T) {
	e := newEnv(t)
	op := e.user("mia", RoleOperator)
	au := e.user("ned", RoleAuditor)
	for _, tc := range []struct {
		name  string
		by    Principal
		nu    NewUser
		err   error
		field string
	}{
		{"operator", op, NewUser{Username: "x", Role: RoleAuditor, Password: "tangerine orbit quietly"}, ErrForbidden, ""},
		{"auditor", au, NewUser{Username: "x", Role: RoleAuditor}, ErrForbidden, ""},
		{"anonymous", Principal{}, NewUser{Username: "x", Role: RoleAuditor}, ErrForbidden, ""},
		{"exists", e.admin, NewUser{Username: "MIA", Role: RoleAuditor}, ErrConflict, ""},
		{"bad name", e.admin, NewUser{Username: "a b", Role: RoleAuditor}, ErrInvalid, "username"},
		{"bad role", e.admin, NewUser{Username: "okname", Role: "superuser"}, ErrInvalid, "role"},
		{"weak password", e.admin, NewUser{Username: "okname", Role: RoleAuditor, Password: "password1234"}, ErrInvalid, "password"},
		{"short password", e.admin, NewUser{Username: "okname", Role: RoleAuditor, Password: "short"}, ErrInvalid, "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			audits := len(e.audit())
			_, err := e.svc.CreateUser(ctx, tc.by, tc.nu)
			wantErr(t, err, tc.err)
			if tc.field != "" {
				wantInvalid(t, err, tc.field)
			}
			recs := e.audit()
			if len(recs) != audits+1 || recs[len(recs)-1].Action != "auth.user.create" || !strings.Contains(string(recs[len(recs)-1].Detail), `"outcome":"refused"`) {
				t.Fatal("the refusal was not audited")
			}
		})
	}
	if n := e.count("SELECT count(*) FROM auth_users WHERE username IN ('x', 'okname')"); n != 0 {
		t.Fatal("a refused user was created")
	}
}

func TestUserReadPermissions(t *testing.T) {
	e := newEnv(t)
	op := e.user("olga", RoleOperator)
	if _, err := e.svc.GetUser(ctx, op, "olga"); err != nil {
		t.Fatalf("reading one's own account: %v", err)
	}
	_, err := e.svc.GetUser(ctx, op, "root-admin")
	wantErr(t, err, ErrForbidden)
	_, err = e.svc.ListUsers(ctx, op)
	wantErr(t, err, ErrForbidden)
	tok, _ := e.svc.CreateToken(ctx, e.admin, NewToken{Name: "olga", Role: RoleOperator})
	tp, _ := e.svc.AuthenticateToken(ctx, tok.Secret)
	tp.User = "olga" // even a token that claimed the name is not the account
	_, err = e.svc.GetUser(ctx, tp, "olga")
	wantErr(t, err, ErrForbidden)
}

func TestLastAdminProtected(t *testing.T) {
	e := newEnv(t)
	wantErr(t, e.svc.SetDisabled(ctx, e.admin, "root-admin", true), ErrConflict)
	wantErr(t, e.svc.SetRole(ctx, e.admin, "root-admin", RoleOperator), ErrConflict)
	e.user("pat", RoleAdmin)
	if err := e.svc.SetRole(ctx, e.admin, "pat", RoleAuditor); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.svc.SetDisabled(ctx, e.admin, "root-admin", true), ErrConflict)
	if err := e.svc.SetRole(ctx, e.admin, "pat", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetDisabled(ctx, e.admin, "root-admin", true); err != nil {
		t.Fatalf("disabling an admin while another is enabled: %v", err)
	}
}

func TestSetRoleAndDisableAudited(t *testing.T) {
	e := newEnv(t)
	e.user("quinn", RoleOperator)
	if err := e.svc.SetRole(ctx, e.admin, "quinn", RoleAuditor); err != nil {
		t.Fatal(err)
	}
	rec := e.lastAudit("auth.user.role")
	if !strings.Contains(string(rec.Detail), `"from":"operator"`) || !strings.Contains(string(rec.Detail), `"sessions_ended":1`) {
		t.Fatalf("role audit %s", rec.Detail)
	}
	if err := e.svc.SetDisabled(ctx, e.admin, "quinn", true); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.svc.GetUser(ctx, e.admin, "quinn"); !u.Disabled || u.Role != RoleAuditor {
		t.Fatalf("user %+v", u)
	}
	e.lastAudit("auth.user.disable")
	wantErr(t, e.svc.SetDisabled(ctx, e.admin, "nobody", true), ErrNotFound)
	wantInvalid(t, e.svc.SetRole(ctx, e.admin, "quinn", "god"), "role")
}

func TestResetLink(t *testing.T) {
	e := newEnv(t)
	c, err := e.svc.CreateUser(ctx, e.admin, NewUser{Username: "rita", Role: RoleAuditor})
	if err != nil || c.Reset == nil || c.User.PasswordSet {
		t.Fatalf("CreateUser without password = %+v, %v; want a reset link", c, err)
	}
	if !strings.HasPrefix(c.Reset.Token, ResetPrefix) || !c.Reset.ExpiresAt.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("reset link %+v", c.Reset)
	}
	if n := e.count("SELECT count(*) FROM auth_resets WHERE token_hash = ?", sha256Hex(c.Reset.Token)); n != 1 {
		t.Fatal("the reset link is not stored under its hash")
	}
	_, err = e.svc.Login(ctx, LoginRequest{Username: "rita", Password: ""})
	wantErr(t, err, ErrBadCredentials)

	// A weak password is refused and the link still works.
	wantInvalid(t, e.svc.CompleteReset(ctx, ResetRequest{Token: c.Reset.Token, Password: "iloveyou2024"}), "password")
	if err := e.svc.CompleteReset(ctx, ResetRequest{Token: c.Reset.Token, Password: "her own long phrase here"}); err != nil {
		t.Fatal(err)
	}
	e.login("rita", "her own long phrase here")
	// Once only.
	wantErr(t, e.svc.CompleteReset(ctx, ResetRequest{Token: c.Reset.Token, Password: "another long phrase"}), ErrResetToken)
	e.login("rita", "her own long phrase here")

	// A new link replaces the old; both expire.
	l1, _ := e.svc.IssueReset(ctx, e.admin, "rita")
	l2, _ := e.svc.IssueReset(ctx, e.admin, "rita")
	wantErr(t, e.svc.CompleteReset(ctx, ResetRequest{Token: l1.Token, Password: "another long phrase"}), ErrResetToken)
	e.clock.Advance(time.Hour)
	wantErr(t, e.svc.CompleteReset(ctx, ResetRequest{Token: l2.Token, Password: "another long phrase"}), ErrResetToken)
	e.login("rita", "her own long phrase here")

	for _, bad := range []string{"", "omr_", newSecret(TokenPrefix), newSecret(ResetPrefix)} {
		wantErr(t, e.svc.CompleteReset(ctx, ResetRequest{Token: bad, Password: "another long phrase"}), ErrResetToken)
	}
	op := e.user("sam", RoleOperator)
	_, err = e.svc.IssueReset(ctx, op, "rita")
	wantErr(t, err, ErrForbidden)
}

func TestResetLinkOfDisabledUser(t *testing.T) {
	e := newEnv(t)
	e.user("tom", RoleOperator)
	link, err := e.svc.IssueReset(ctx, e.admin, "tom")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetDisabled(ctx, e.admin, "tom", true); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.svc.CompleteReset(ctx, ResetRequest{Token: link.Token, Password: "another long phrase"}), ErrResetToken)
	_, err = e.svc.IssueReset(ctx, e.admin, "tom")
	wantErr(t, err, ErrConflict)
}

func TestResetRateLimited(t *testing.T) {
	e := newEnv(t)
	for range 20 {
		wantErr(t, e.svc.CompleteReset(ctx, ResetRequest{Token: newSecret(ResetPrefix), Password: "x", Address: "192.0.2.66"}), ErrResetToken)
	}
	wantErr(t, e.svc.CompleteReset(ctx, ResetRequest{Token: newSecret(ResetPrefix), Password: "x", Address: "192.0.2.66"}), ErrRateLimited)
}

func TestChangePassword(t *testing.T) {
	e := newEnv(t)
	p := e.user("uma", RoleOperator)
	other := e.newSession("uma", "tangerine orbit quietly operator", "")
	wantInvalid(t, e.svc.ChangePassword(ctx, p, "wrong current one", "a fresh long phrase"), "current_password")
	wantInvalid(t, e.svc.ChangePassword(ctx, p, "tangerine orbit quietly operator", "uma-is-my-name-ok"), "password")
	if err := e.svc.ChangePassword(ctx, p, "tangerine orbit quietly operator", "a fresh long phrase"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, other.ID); err == nil {
		t.Fatal("the other session survived a password change")
	}
	if n := e.count("SELECT count(*) FROM auth_sessions WHERE id_hash = ?", p.sessHash); n != 1 {
		t.Fatal("the session that changed the password ended")
	}
	e.login("uma", "a fresh long phrase")
	wantErr(t, e.svc.ChangePassword(ctx, System("uid:0"), "x", "y"), ErrForbidden)
}
