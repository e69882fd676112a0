package auth

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// fakeClock is a settable clock shared by the service and the store.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cheapParams make the tests that are not about the hash itself fast,
// under -race too; the hash tests use DefaultParams.
var cheapParams = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type env struct {
	t     *testing.T
	st    *store.Store
	svc   *Service
	clock *fakeClock
	admin Principal
}

var ctx = context.Background()

func openStore(t *testing.T, clock *fakeClock) *store.Store {
	t.Helper()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(Schema), store.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newEnv is a service over a fresh store, with an admin "root-admin"
// made through Setup (with a redeemer that accepts "good-token").
func newEnv(t *testing.T, tweak ...func(*Options)) *env {
	t.Helper()
	clock := newClock()
	st := openStore(t, clock)
	p := cheapParams
	o := Options{Store: st, Now: clock.Now, params: &p, RedeemSetupToken: acceptToken("good-token")}
	for _, f := range tweak {
		f(&o)
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, svc: svc, clock: clock}
	if _, err := svc.Setup(ctx, SetupRequest{Token: "good-token", Username: "root-admin", Password: "first admin password 1", Address: "192.0.2.1"}); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	e.admin = e.login("root-admin", "first admin password 1")
	return e
}

// acceptToken redeems want once.
func acceptToken(want string) func(string, time.Time) error {
	var mu sync.Mutex
	used := false
	return func(tok string, _ time.Time) error {
		mu.Lock()
		defer mu.Unlock()
		if tok != want || used {
			return ErrSetupToken
		}
		used = true
		return nil
	}
}

// login logs in and authenticates, returning the session's principal.
func (e *env) login(user, password string) Principal {
	e.t.Helper()
	sess, err := e.svc.Login(ctx, LoginRequest{Username: user, Password: password, Address: "192.0.2.10"})
	if err != nil {
		e.t.Fatalf("Login(%s): %v", user, err)
	}
	p, err := e.svc.Authenticate(ctx, sess.ID)
	if err != nil {
		e.t.Fatalf("Authenticate(%s): %v", user, err)
	}
	p.Address = "192.0.2.10"
	return p
}

// user creates a user with a password and logs in as it.
func (e *env) user(name string, role Role) Principal {
	e.t.Helper()
	pw := "tangerine orbit quietly " + string(role)
	if _, err := e.svc.CreateUser(ctx, e.admin, NewUser{Username: name, Role: role, Password: pw}); err != nil {
		e.t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return e.login(name, pw)
}

func (e *env) audit() []store.AuditRecord {
	e.t.Helper()
	recs, err := e.st.AuditLog(ctx, 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// lastAudit is the newest record with action.
func (e *env) lastAudit(action string) store.AuditRecord {
	e.t.Helper()
	recs := e.audit()
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Action == action {
			return recs[i]
		}
	}
	e.t.Fatalf("no audit record %s", action)
	return store.AuditRecord{}
}

func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.st.Read().QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) exec(query string, args ...any) {
	e.t.Helper()
	if err := e.st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Field != field {
		t.Fatalf("err = %v, want an InvalidError on %q", err, field)
	}
}
