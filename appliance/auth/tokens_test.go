package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSecretFormat(t *testing.T) {
	if SecretLen != len(TokenPrefix)+secretBodyLen || SecretLen != len(ResetPrefix)+secretBodyLen {
		t.Fatalf("SecretLen %d, want %d", SecretLen, len(TokenPrefix)+secretBodyLen)
	}
	re := regexp.MustCompile(`^omt_[a-z2-7]{39}$`)
	seen := map[string]bool{}
	for range 100 {
		s := newSecret(TokenPrefix)
		if !re.MatchString(s) || len(s) != SecretLen {
			t.Fatalf("token %q does not match %s", s, re)
		}
		if err := parseSecret(TokenPrefix, s); err != nil {
			t.Fatalf("parseSecret(%q) = %v", s, err)
		}
		if seen[s] {
			t.Fatal("a token repeated")
		}
		seen[s] = true
	}
	good := newSecret(TokenPrefix)
	flip := []byte(good)
	flip[10] = map[bool]byte{true: 'b', false: 'a'}[flip[10] == 'a']
	for name, s := range map[string]string{
		"empty":        "",
		"other prefix": ResetPrefix + good[4:],
		"no prefix":    good[4:],
		"upper case":   strings.ToUpper(good),
		"short":        good[:len(good)-1],
		"long":         good + "a",
		"bad alphabet": good[:len(good)-1] + "1",
		"checksum":     string(flip),
		// base32 skips line breaks: this decoded to 19 bytes and the
		// checksum read panicked (found by FuzzParseSecret).
		"line break": good[:20] + "\r" + good[21:],
		"newline":    good[:20] + "\n" + good[21:],
	} {
		if err := parseSecret(TokenPrefix, s); err == nil {
			t.Errorf("%s: parseSecret(%q) accepted", name, s)
		}
	}
}

func TestTokenLifecycle(t *testing.T) {
	e := newEnv(t)
	issued, err := e.svc.CreateToken(ctx, e.admin, NewToken{Name: "ci deploy", Role: RoleOperator})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(issued.Secret, TokenPrefix) || issued.Token.Name != "ci deploy" || issued.Token.CreatedBy != "root-admin" {
		t.Fatalf("issued %+v", issued)
	}
	if n := e.count("SELECT count(*) FROM auth_tokens WHERE secret_hash = ?", sha256Hex(issued.Secret)); n != 1 {
		t.Fatal("the token is not stored under its hash")
	}
	if strings.Contains(string(e.lastAudit("auth.token.create").Detail), issued.Secret) {
		t.Fatal("the audit record holds the secret")
	}
	p, err := e.svc.AuthenticateToken(ctx, issued.Secret)
	if err != nil || p.Kind != KindToken || p.Role != RoleOperator || p.User != "token:ci deploy" || p.TokenID != issued.Token.ID {
		t.Fatalf("AuthenticateToken = %+v, %v", p, err)
	}
	list, err := e.svc.ListTokens(ctx, e.admin)
	if err != nil || len(list) != 1 || list[0].LastUsedAt.IsZero() {
		t.Fatalf("ListTokens = %+v, %v; want one, used", list, err)
	}
	// A scoped token is its role, not its creator's.
	if Allowed(p.Role, ActionUsersWrite) {
		t.Fatal("an operator token may write users")
	}
	if _, err := e.svc.CreateUser(ctx, p, NewUser{Username: "x1", Role: RoleAdmin, Password: "tangerine orbit quietly"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("operator token CreateUser = %v, want ErrForbidden", err)
	}
	if err := e.svc.RevokeToken(ctx, e.admin, issued.Token.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.AuthenticateToken(ctx, issued.Secret)
	wantErr(t, err, ErrUnauthenticated)
	wantErr(t, e.svc.RevokeToken(ctx, e.admin, issued.Token.ID), ErrConflict)
	wantErr(t, e.svc.RevokeToken(ctx, e.admin, 9999), ErrNotFound)
	// Names are never reused.
	_, err = e.svc.CreateToken(ctx, e.admin, NewToken{Name: "ci deploy", Role: RoleAuditor})
	wantErr(t, err, ErrConflict)
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t)
	issued, err := e.svc.CreateToken(ctx, e.admin, NewToken{Name: "short", Role: RoleAuditor, ExpiresAt: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(59 * time.Minute)
	if _, err := e.svc.AuthenticateToken(ctx, issued.Secret); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	_, err = e.svc.AuthenticateToken(ctx, issued.Secret)
	wantErr(t, err, ErrUnauthenticated)
	_, err = e.svc.CreateToken(ctx, e.admin, NewToken{Name: "past", Role: RoleAuditor, ExpiresAt: e.clock.Now()})
	wantInvalid(t, err, "expires_at")
}

func TestCreateTokenRefusals(t *testing.T) {
	e := newEnv(t)
	op := e.user("kim", RoleOperator)
	_, err := e.svc.CreateToken(ctx, op, NewToken{Name: "mine", Role: RoleAdmin})
	wantErr(t, err, ErrForbidden)
	rec := e.lastAudit("auth.token.create")
	if rec.Actor != "kim" || !strings.Contains(string(rec.Detail), `"outcome":"refused"`) {
		t.Fatalf("refusal not audited: %s %s", rec.Actor, rec.Detail)
	}
	_, err = e.svc.ListTokens(ctx, op)
	wantErr(t, err, ErrForbidden)
	wantErr(t, e.svc.RevokeToken(ctx, op, 1), ErrForbidden)
	_, err = e.svc.CreateToken(ctx, e.admin, NewToken{Name: "bad\nname", Role: RoleAdmin})
	wantInvalid(t, err, "name")
	_, err = e.svc.CreateToken(ctx, e.admin, NewToken{Name: "ok", Role: "root"})
	wantInvalid(t, err, "role")
	for _, s := range []string{"", "omt_", "Bearer omt_x", newSecret(ResetPrefix), newSecret(TokenPrefix)} {
		_, err := e.svc.AuthenticateToken(ctx, s)
		wantErr(t, err, ErrUnauthenticated)
	}
}

func TestActiveTokensBounded(t *testing.T) {
	e := newEnv(t)
	e.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
INSERT INTO auth_tokens(name, role, secret_hash, created_by, created_at) SELECT 'bulk' || i, 'auditor', 'h' || i, 'test', '2026-01-01T00:00:00Z' FROM n`, MaxActiveTokens)
	_, err := e.svc.CreateToken(ctx, e.admin, NewToken{Name: "one more", Role: RoleAuditor})
	wantErr(t, err, ErrConflict)
	e.exec("UPDATE auth_tokens SET revoked_at = '2026-01-02T00:00:00Z' WHERE name = 'bulk1'")
	if _, err := e.svc.CreateToken(ctx, e.admin, NewToken{Name: "one more", Role: RoleAuditor}); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseSecret(f *testing.F) {
	f.Add(newSecret(TokenPrefix))
	f.Add(newSecret(ResetPrefix))
	f.Add("omt_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if parseSecret(TokenPrefix, s) != nil {
			return
		}
		if !regexp.MustCompile(`^omt_[a-z2-7]{39}$`).MatchString(s) {
			t.Fatalf("accepted %q", s)
		}
		b, _ := secretEncoding.DecodeString(s[4:])
		if secretEncoding.EncodeToString(b) != s[4:] {
			t.Fatalf("accepted a non-canonical spelling %q", s)
		}
	})
}
