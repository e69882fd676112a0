package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// LoginRequest is what the console's login form sends, with the client's
// address and the session cookie it had (ended at login: rotation).
type LoginRequest struct {
	Username          string
	Password          string
	Address           string
	PreviousSessionID string
}

// Login checks a username and password and starts a session. Every
// failure is ErrBadCredentials, and costs one argon2id computation whether
// or not the user exists, so that neither the answer nor its time tells a
// guesser which usernames exist. Failures are limited per account and per
// address (*RateLimitError), and audited, as are successes.
func (s *Service) Login(ctx context.Context, r LoginRequest) (Session, error) {
	now := s.clock()
	name, nameErr := NormalizeUsername(r.Username)
	// A malformed name is limited like any other, in a bucket keyed by
	// what was typed (cut to 64 bytes), apart from every real account's.
	acct := name
	if nameErr != nil {
		acct = "invalid:" + boundAddress(r.Username)
	}
	addr := addressKey(r.Address)
	if err := s.takeLogin(acct, addr, now); err != nil {
		return Session{}, err
	}
	u, found, err := s.loginUser(ctx, name, nameErr)
	if err != nil {
		s.refundLogin(acct, addr, now)
		return Session{}, err
	}
	ok, err := s.hash.verify(ctx, u.hash, boundPassword(r.Password))
	if err != nil {
		s.refundLogin(acct, addr, now)
		return Session{}, err
	}
	who := Principal{Kind: KindSession, UserID: u.ID, User: u.Username, Role: u.Role, Address: r.Address}
	if !ok || !found || u.Disabled {
		return Session{}, s.loginFailed(ctx, who, name, nameErr, failReason(found, ok, u))
	}
	s.accounts.reset(acct)
	s.addresses.refund(addr, now)
	return s.loginSucceeded(ctx, who, u, r, now)
}

// takeLogin spends one attempt on the account's and on the address's
// bucket; when either is empty, neither is spent.
func (s *Service) takeLogin(acct, addr string, now time.Time) error {
	wa, okA := s.accounts.take(acct, now)
	wb, okB := s.addresses.take(addr, now)
	if okA && okB {
		return nil
	}
	if okA {
		s.accounts.refund(acct, now)
	}
	if okB {
		s.addresses.refund(addr, now)
	}
	return &RateLimitError{RetryAfter: max(wa, wb)}
}

func (s *Service) refundLogin(acct, addr string, now time.Time) {
	s.accounts.refund(acct, now)
	s.addresses.refund(addr, now)
}

// loginUser finds the user to check; a missing or malformed one is not an
// error but an empty record, whose empty hash verify checks against the
// dummy hash.
func (s *Service) loginUser(ctx context.Context, name string, nameErr error) (userRecord, bool, error) {
	if nameErr != nil {
		return userRecord{}, false, nil
	}
	u, err := findUser(ctx, s.st.Read(), name)
	if errors.Is(err, ErrNotFound) {
		return userRecord{}, false, nil
	}
	return u, err == nil, err
}

// boundPassword: a password longer than any that can be set cannot match,
// and should not cost more to hash than one that can.
func boundPassword(p string) string {
	if len(p) > MaxPasswordBytes {
		return p[:MaxPasswordBytes] + "\x00"
	}
	return p
}

func failReason(found, ok bool, u userRecord) string {
	switch {
	case !found:
		return "unknown user"
	case !u.PasswordSet:
		return "no password set"
	case !ok:
		return "wrong password"
	}
	return "user disabled"
}

// loginFailed audits a failed login and returns ErrBadCredentials. The
// username is recorded only when it is well-formed: people type passwords
// into the username field.
func (s *Service) loginFailed(ctx context.Context, who Principal, name string, nameErr error, reason string) error {
	if nameErr != nil {
		name = "(malformed)"
	}
	d := map[string]any{"role": who.Role, "address": who.Address, "outcome": outcomeRefused, "reason": reason}
	err := s.st.Audit(context.WithoutCancel(ctx), store.AuditEntry{Actor: name, Action: "auth.login", Target: name, Detail: d})
	if err != nil {
		return errors.Join(ErrBadCredentials, fmt.Errorf("recording the failed login: %w", err))
	}
	return ErrBadCredentials
}

func (s *Service) loginSucceeded(ctx context.Context, who Principal, u userRecord, r LoginRequest, now time.Time) (Session, error) {
	// Rehash outside the transaction: it takes a hash slot, not the
	// database's write lock.
	var rehash string
	if s.hash.outdated(u.hash) {
		if h, err := s.hash.hash(ctx, r.Password); err == nil {
			rehash = h
		}
	}
	var sess Session
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		var err error
		if sess, err = s.createSession(ctx, tx, u.User, r.PreviousSessionID, r.Address, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE auth_users SET last_login_at = ? WHERE id = ?", store.FormatTime(now), u.ID); err != nil {
			return fmt.Errorf("recording the login: %w", err)
		}
		if rehash != "" {
			if _, err := tx.ExecContext(ctx, "UPDATE auth_users SET password_hash = ? WHERE id = ? AND password_hash = ?", rehash, u.ID, u.hash); err != nil {
				return fmt.Errorf("storing the rehashed password: %w", err)
			}
		}
		return s.audit(ctx, tx, who, "auth.login", u.Username, map[string]any{"rehashed": rehash != ""})
	})
	if err != nil && !errors.Is(err, store.ErrAnchor) {
		return Session{}, s.refuse(ctx, who, "auth.login", u.Username, err)
	}
	return sess, err
}
