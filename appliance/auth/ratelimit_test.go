package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLimiterBurstAndRefill(t *testing.T) {
	l := newLimiter(Limit{Burst: 5, Window: 15 * time.Minute}, 100)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		if _, ok := l.take("k", t0); !ok {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
	}
	wait, ok := l.take("k", t0)
	if ok || wait != 3*time.Minute {
		t.Fatalf("6th attempt = %s, %v; want refused, retry in 3m", wait, ok)
	}
	if wait, ok := l.take("k", t0.Add(2*time.Minute)); ok || wait != time.Minute {
		t.Fatalf("after 2m = %s, %v; want refused, retry in 1m", wait, ok)
	}
	if _, ok := l.take("k", t0.Add(3*time.Minute)); !ok {
		t.Fatal("after 3m one attempt should be back")
	}
	if _, ok := l.take("other", t0); !ok {
		t.Fatal("another key shares the bucket")
	}
	l.refund("k", t0.Add(3*time.Minute))
	if _, ok := l.take("k", t0.Add(3*time.Minute)); !ok {
		t.Fatal("a refunded attempt is not available")
	}
	l.reset("k")
	for i := range 5 {
		if _, ok := l.take("k", t0.Add(3*time.Minute)); !ok {
			t.Fatalf("attempt %d after reset refused", i+1)
		}
	}
	// A bucket never holds more than the burst, however long it rests.
	later := t0.Add(100 * time.Hour)
	for range 5 {
		l.take("k", later)
	}
	if _, ok := l.take("k", later); ok {
		t.Fatal("a rested bucket holds more than the burst")
	}
}

func TestLimiterBoundedEvictsOldest(t *testing.T) {
	l := newLimiter(Limit{Burst: 1, Window: time.Hour}, 3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		l.take(fmt.Sprint("k", i), t0)
	}
	l.take("k0", t0) // k0 is now the most recently touched: k1 is oldest
	l.take("k3", t0)
	if n := l.len(); n != 3 {
		t.Fatalf("%d buckets, bound 3", n)
	}
	if _, ok := l.take("k0", t0); ok {
		t.Error("k0 was evicted, but k1 was touched longer ago")
	}
	if _, ok := l.take("k1", t0); !ok {
		t.Error("k1 should have been evicted (a fresh full bucket)")
	}
	for i := range 10000 {
		l.take(fmt.Sprint("flood", i), t0)
	}
	if n := l.len(); n != 3 {
		t.Fatalf("%d buckets after a flood, bound 3", n)
	}
}

func TestAddressKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                  "192.0.2.1",
		"192.0.2.1:5555":             "192.0.2.1",
		"::ffff:192.0.2.1":           "192.0.2.1",
		"[::ffff:192.0.2.1]:443":     "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":       "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"fe80::1%eth0":               "fe80::/64",
		"":                           "raw:",
		"unix":                       "raw:unix",
		strings.Repeat("x", 100):     "raw:" + strings.Repeat("x", 64),
		"bad\xffutf8":                "raw:bad?utf8",
	} {
		if got := addressKey(in); got != want {
			t.Errorf("addressKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoginRateLimitPerAccount(t *testing.T) {
	e := newEnv(t)
	e.user("carol", RoleOperator)
	for i := range 5 {
		// From a different address each time: the account's limit holds alone.
		_, err := e.svc.Login(ctx, LoginRequest{Username: "carol", Password: "wrong password here", Address: fmt.Sprintf("198.51.100.%d", i)})
		wantErr(t, err, ErrBadCredentials)
	}
	dummies, audits := e.svc.hash.dummies.Load(), len(e.audit())
	_, err := e.svc.Login(ctx, LoginRequest{Username: "carol", Password: "tangerine orbit quietly operator", Address: "198.51.100.99"})
	var rl *RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) || rl.RetryAfter != 3*time.Minute || rl.RetryAfterSeconds() != 180 {
		t.Fatalf("6th login = %v, want RateLimitError retry after 3m", err)
	}
	if e.svc.hash.dummies.Load() != dummies || len(e.audit()) != audits {
		t.Error("a refused attempt hashed or wrote an audit record; it must cost nothing")
	}
	// Others are not affected.
	e.login("root-admin", "first admin password 1")
	e.clock.Advance(3 * time.Minute)
	if _, err := e.svc.Login(ctx, LoginRequest{Username: "carol", Password: "tangerine orbit quietly operator", Address: "198.51.100.99"}); err != nil {
		t.Fatalf("login after the refill: %v", err)
	}
	// Success clears the account's failures.
	for i := range 5 {
		_, err := e.svc.Login(ctx, LoginRequest{Username: "carol", Password: "wrong password here", Address: fmt.Sprintf("203.0.113.%d", i)})
		wantErr(t, err, ErrBadCredentials)
	}
}

func TestLoginRateLimitPerAddress(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		_, err := e.svc.Login(ctx, LoginRequest{Username: fmt.Sprint("nobody", i), Password: "wrong password here", Address: "[2001:db8::1]:1234"})
		wantErr(t, err, ErrBadCredentials)
	}
	// Another host of the same /64 shares the bucket.
	_, err := e.svc.Login(ctx, LoginRequest{Username: "root-admin", Password: "first admin password 1", Address: "2001:db8::77"})
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != 45*time.Second {
		t.Fatalf("21st login from the /64 = %v, want RateLimitError retry after 45s", err)
	}
	// Another address is not affected.
	if _, err := e.svc.Login(ctx, LoginRequest{Username: "root-admin", Password: "first admin password 1", Address: "2001:db8:0:1::1"}); err != nil {
		t.Fatalf("login from another /64: %v", err)
	}
}

// Successful logins from an address do not use up its allowance: an
// office behind one NAT address logs in all day.
func TestLoginSuccessDoesNotCountAgainstAddress(t *testing.T) {
	e := newEnv(t)
	for i := range 30 {
		if _, err := e.svc.Login(ctx, LoginRequest{Username: "root-admin", Password: "first admin password 1", Address: "192.0.2.200"}); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
}
