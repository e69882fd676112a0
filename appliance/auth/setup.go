package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/firstboot"
)

// FirstbootRedeemer is Options.RedeemSetupToken for the appliance whose
// root is root ("" is "/"): it consumes the token that first boot wrote,
// through firstboot.Redeem, and reports its refusals as ErrSetupToken.
func FirstbootRedeemer(root string) func(token string, now time.Time) error {
	return func(token string, now time.Time) error {
		err := firstboot.Redeem(root, token, now)
		if errors.Is(err, firstboot.ErrBannerNotScrubbed) {
			// Spent: setup must go on. The banner shows a used token.
			slog.Warn("setup", "warning", err.Error())
			return nil
		}
		for _, e := range []error{firstboot.ErrTokenInvalid, firstboot.ErrTokenUsed, firstboot.ErrTokenExpired, firstboot.ErrNoToken} {
			if errors.Is(err, e) {
				return fmt.Errorf("%w: %w", ErrSetupToken, err)
			}
		}
		return err
	}
}

// SetupRequest is what the console's setup page sends.
type SetupRequest struct {
	Token    string // the one-time token first boot printed
	Username string
	Password string
	Address  string
}

// SetupDone reports whether setup was completed (so the console shows
// its login page, never the setup page again).
func (s *Service) SetupDone(ctx context.Context) (bool, error) {
	var done bool
	err := s.st.Read().QueryRowContext(ctx,
		"SELECT EXISTS (SELECT 1 FROM auth_setup) OR EXISTS (SELECT 1 FROM auth_users WHERE role = 'admin')").Scan(&done)
	if err != nil {
		return false, fmt.Errorf("reading setup state: %w", err)
	}
	return done, nil
}

// Setup redeems first boot's setup token and creates the first admin with
// it, once: afterwards it always answers ErrSetupDone. There is no default
// account; this is the only way the first one comes to be.
//
// The admin row, the setup mark and the audit record are written in one
// transaction, and the token is redeemed inside it, last: a username or
// password that is refused, or a database that fails, leaves the token
// unused, and a token that is refused leaves no admin behind. (Only a
// commit that fails after the token was redeemed loses it; `omerta
// firstboot reissue-token` then issues another.)
func (s *Service) Setup(ctx context.Context, r SetupRequest) (User, error) {
	const action = "auth.setup"
	// Once done, the answer is public and costs nothing: no rate limit,
	// no audit record (a flood of these must not fill the log).
	if done, err := s.SetupDone(ctx); err != nil || done {
		return User{}, errors.Join(err, setupDoneErr(done))
	}
	now := s.clock()
	addr := addressKey(r.Address)
	// Every failed attempt counts, not only wrong tokens: each one is an
	// unauthenticated audit record.
	if wait, ok := s.addresses.take(addr, now); !ok {
		return User{}, &RateLimitError{RetryAfter: wait}
	}
	u, err := s.setup(ctx, r, now)
	switch {
	case err == nil:
		s.addresses.refund(addr, now)
		return u, nil
	case errors.Is(err, store.ErrAnchor):
		return u, err
	}
	return User{}, s.refuse(ctx, Principal{User: "setup", Address: r.Address}, action, "", err)
}

func (s *Service) setup(ctx context.Context, r SetupRequest, now time.Time) (User, error) {
	if s.redeem == nil {
		return User{}, fmt.Errorf("%w: this omertad has no setup token to redeem", ErrSetupToken)
	}
	name, err := NormalizeUsername(r.Username)
	if err != nil {
		return User{}, err
	}
	hash, err := s.newHash(ctx, name, r.Password)
	if err != nil {
		return User{}, err
	}
	var u userRecord
	err = s.st.Write(ctx, func(tx *sql.Tx) error {
		var done bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM auth_setup) OR EXISTS (SELECT 1 FROM auth_users WHERE role = 'admin')").Scan(&done); err != nil {
			return fmt.Errorf("reading setup state: %w", err)
		}
		if done {
			return ErrSetupDone
		}
		if u, err = s.insertUser(ctx, tx, name, RoleAdmin, hash, "setup"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO auth_setup(id, done_at, admin_id) VALUES (1, ?, ?)", store.FormatTime(now), u.ID); err != nil {
			return fmt.Errorf("recording setup: %w", err)
		}
		who := Principal{Kind: KindSession, UserID: u.ID, User: name, Role: RoleAdmin, Address: r.Address}
		if err := s.audit(ctx, tx, who, "auth.setup", name, nil); err != nil {
			return err
		}
		if err := s.redeem(r.Token, now); err != nil {
			return fmt.Errorf("redeeming the setup token: %w", err)
		}
		return nil
	})
	return u.User, err
}

func setupDoneErr(done bool) error {
	if done {
		return ErrSetupDone
	}
	return nil
}
