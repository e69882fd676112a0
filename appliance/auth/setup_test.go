package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/firstboot"
)

// bare is a service over a fresh store, before setup.
func bare(t *testing.T, redeem func(string, time.Time) error) *env {
	t.Helper()
	clock := newClock()
	st := openStore(t, clock)
	p := cheapParams
	svc, err := New(Options{Store: st, Now: clock.Now, params: &p, RedeemSetupToken: redeem})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, svc: svc, clock: clock}
}

// issueToken has first boot's code issue a real setup token under root.
func issueToken(t *testing.T, root string, now func() time.Time) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(firstboot.StateDir)), 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := firstboot.ReissueToken(ctx, firstboot.ReissueOptions{Root: root, Actor: "test", TTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r.Token
}

const setupPW = "the first admin's phrase"

func TestSetupWithFirstbootToken(t *testing.T) {
	root := t.TempDir()
	e := bare(t, FirstbootRedeemer(root))
	tok := issueToken(t, root, e.clock.Now)
	if done, err := e.svc.SetupDone(ctx); err != nil || done {
		t.Fatalf("SetupDone on a fresh database = %v, %v", done, err)
	}
	req := SetupRequest{Token: tok, Username: "Ada", Password: setupPW, Address: "192.0.2.5"}

	bad := req
	bad.Token = "abcdefghijklmnopqrstuvwxyz234567"
	_, err := e.svc.Setup(ctx, bad)
	wantErr(t, err, ErrSetupToken)
	if !errors.Is(err, firstboot.ErrTokenInvalid) {
		t.Fatalf("err = %v, want it to wrap firstboot's reason", err)
	}
	if rec := e.lastAudit("auth.setup"); rec.Actor != "setup" {
		t.Fatalf("refused setup audited as %s %s", rec.Actor, rec.Detail)
	}

	weak := req
	weak.Password = "password2024"
	_, err = e.svc.Setup(ctx, weak)
	wantInvalid(t, err, "password")

	// The user cannot be created: the token must stay unused.
	e.exec("CREATE TRIGGER no_users BEFORE INSERT ON auth_users BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
	if _, err := e.svc.Setup(ctx, req); err == nil {
		t.Fatal("Setup succeeded although the user could not be stored")
	}
	e.exec("DROP TRIGGER no_users")
	if n := e.count("SELECT count(*) FROM auth_users"); n != 0 {
		t.Fatalf("%d users after failed setups", n)
	}

	u, err := e.svc.Setup(ctx, req)
	if err != nil {
		t.Fatalf("Setup with the token after failures: %v (was it burnt?)", err)
	}
	if u.Username != "ada" || u.Role != RoleAdmin || u.CreatedBy != "setup" {
		t.Fatalf("first admin %+v", u)
	}
	if rec := e.lastAudit("auth.setup"); rec.Actor != "ada" || rec.Target != "ada" {
		t.Fatalf("setup audited as %s %s", rec.Actor, rec.Target)
	}
	wantErr(t, firstboot.Redeem(root, tok, e.clock.Now()), firstboot.ErrTokenUsed)
	e.login("ada", setupPW)

	// Never again, even with a new token, which stays unused.
	tok2 := issueToken(t, root, e.clock.Now)
	_, err = e.svc.Setup(ctx, SetupRequest{Token: tok2, Username: "eve", Password: setupPW})
	wantErr(t, err, ErrSetupDone)
	if done, _ := e.svc.SetupDone(ctx); !done {
		t.Fatal("SetupDone is false after setup")
	}
	if err := firstboot.Redeem(root, tok2, e.clock.Now()); err != nil {
		t.Fatalf("a refused setup burnt the new token: %v", err)
	}
}

// Setup stays done when the first admin is gone from the admin role.
func TestSetupDoneSurvivesAdminChanges(t *testing.T) {
	e := newEnv(t)
	e.user("second", RoleAdmin)
	e.exec("UPDATE auth_users SET role = 'auditor'") // no admin at all
	if done, _ := e.svc.SetupDone(ctx); !done {
		t.Fatal("setup reopened")
	}
	e.svc.redeem = acceptToken("again")
	_, err := e.svc.Setup(ctx, SetupRequest{Token: "again", Username: "intruder", Password: setupPW})
	wantErr(t, err, ErrSetupDone)
}

func TestSetupRedeemFailureLeavesNoAdmin(t *testing.T) {
	for name, redeemErr := range map[string]error{
		"token refused": fmt.Errorf("%w: expired", ErrSetupToken),
		"disk error":    errors.New("setup token: read-only file system"),
	} {
		t.Run(name, func(t *testing.T) {
			e := bare(t, func(string, time.Time) error { return redeemErr })
			_, err := e.svc.Setup(ctx, SetupRequest{Token: "x", Username: "ada", Password: setupPW})
			if !errors.Is(err, redeemErr) {
				t.Fatalf("err = %v, want %v", err, redeemErr)
			}
			if n := e.count("SELECT count(*) FROM auth_users") + e.count("SELECT count(*) FROM auth_setup"); n != 0 {
				t.Fatal("an admin was created although the token was not redeemed")
			}
		})
	}
}

func TestSetupConcurrent(t *testing.T) {
	root := t.TempDir()
	e := bare(t, FirstbootRedeemer(root))
	tok := issueToken(t, root, e.clock.Now)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = e.svc.Setup(ctx, SetupRequest{Token: tok, Username: fmt.Sprint("admin", i), Password: setupPW, Address: fmt.Sprint("192.0.2.", i)})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrSetupDone), errors.Is(err, ErrSetupToken):
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 || e.count("SELECT count(*) FROM auth_users") != 1 {
		t.Fatalf("%d setups succeeded, %d users; want exactly one", ok, e.count("SELECT count(*) FROM auth_users"))
	}
}

func TestSetupWithoutRedeemer(t *testing.T) {
	e := bare(t, nil)
	_, err := e.svc.Setup(ctx, SetupRequest{Token: "x", Username: "ada", Password: setupPW})
	wantErr(t, err, ErrSetupToken)
}

func TestSetupRateLimited(t *testing.T) {
	e := bare(t, acceptToken("right"))
	for range 20 {
		_, err := e.svc.Setup(ctx, SetupRequest{Token: "wrong", Username: "ada", Password: setupPW, Address: "192.0.2.8"})
		wantErr(t, err, ErrSetupToken)
	}
	_, err := e.svc.Setup(ctx, SetupRequest{Token: "right", Username: "ada", Password: setupPW, Address: "192.0.2.8"})
	wantErr(t, err, ErrRateLimited)
	if _, err := e.svc.Setup(ctx, SetupRequest{Token: "right", Username: "ada", Password: setupPW, Address: "192.0.2.9"}); err != nil {
		t.Fatal(err)
	}
}

func TestNoDefaultAccount(t *testing.T) {
	e := bare(t, nil)
	if n := e.count("SELECT count(*) FROM auth_users"); n != 0 {
		t.Fatalf("%d users in a fresh database", n)
	}
	for _, user := range []string{"admin", "root", "omerta"} {
		for _, pw := range []string{"admin", "root", "omerta", "password", ""} {
			_, err := e.svc.Login(ctx, LoginRequest{Username: user, Password: pw, Address: "192.0.2." + user})
			wantErr(t, err, ErrBadCredentials)
		}
	}
}

// On the booted image /etc is read-only to omertad: a banner that cannot be
// rewritten must not fail setup once the token is spent, or the appliance
// could never be set up (found by the e2e: the console answered 502).
func TestSetupGoesOnWhenTheBannerCannotBeRewritten(t *testing.T) {
	root := t.TempDir()
	e := bare(t, FirstbootRedeemer(root))
	tok := issueToken(t, root, e.clock.Now)
	issue := filepath.Join(root, filepath.FromSlash(firstboot.IssuePath))
	if err := os.RemoveAll(issue); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(issue, 0o755); err != nil { // not a regular file: scrubbing fails
		t.Fatal(err)
	}
	if _, err := e.svc.Setup(ctx, SetupRequest{Token: tok, Username: "Ada", Password: setupPW, Address: "192.0.2.5"}); err != nil {
		t.Fatalf("Setup = %v, want it to succeed with the banner left as it was", err)
	}
	if done, err := e.svc.SetupDone(ctx); err != nil || !done {
		t.Fatalf("SetupDone = %v, %v", done, err)
	}
}
