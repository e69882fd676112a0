package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// ResetLink is a one-time secret with which a user sets a new password;
// the console turns Token into a link. Only its hash is stored.
type ResetLink struct {
	Token     string    `json:"token"`
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueReset makes a reset link for a user (users.write), replacing any
// earlier one. The user's password keeps working until the link is used.
func (s *Service) IssueReset(ctx context.Context, by Principal, username string) (ResetLink, error) {
	const action = "auth.user.reset"
	name, err := NormalizeUsername(username)
	if err != nil {
		return ResetLink{}, s.refuse(ctx, by, action, "", err)
	}
	var link ResetLink
	err = s.mutate(ctx, by, ActionUsersWrite, action, name, func(tx *sql.Tx) (map[string]any, error) {
		u, err := findUser(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		if u.Disabled {
			return nil, fmt.Errorf("%w: user %q is disabled; enable it first", ErrConflict, name)
		}
		link, err = s.storeReset(ctx, tx, u.ID, by.actor())
		link.User = name
		return map[string]any{"expires_at": link.ExpiresAt}, err
	})
	return link, err
}

func (s *Service) storeReset(ctx context.Context, tx *sql.Tx, userID int64, by string) (ResetLink, error) {
	now := s.clock()
	link := ResetLink{Token: newSecret(ResetPrefix), ExpiresAt: now.Add(s.o.ResetTTL)}
	_, err := tx.ExecContext(ctx, `INSERT INTO auth_resets(user_id, token_hash, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(user_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at,
created_by = excluded.created_by, expires_at = excluded.expires_at`,
		userID, sha256Hex(link.Token), store.FormatTime(now), by, store.FormatTime(link.ExpiresAt))
	if err != nil {
		return ResetLink{}, fmt.Errorf("storing the reset link: %w", err)
	}
	return link, nil
}

// ResetRequest is what a person who opened a reset link sends.
type ResetRequest struct {
	Token    string
	Password string
	Address  string
}

// CompleteReset sets the password of the link's user and ends all of the
// user's sessions. The link works once. Wrong, used and expired links all
// get ErrResetToken, and count against the address's rate limit.
func (s *Service) CompleteReset(ctx context.Context, r ResetRequest) error {
	const action = "auth.password.reset"
	now := s.clock()
	anon := Principal{Address: r.Address}
	addr := addressKey(r.Address)
	if wait, ok := s.addresses.take(addr, now); !ok {
		return &RateLimitError{RetryAfter: wait}
	}
	u, tokenHash, err := s.findReset(ctx, r.Token, now)
	if err != nil {
		return s.refuse(ctx, anon, action, "", err)
	}
	who := Principal{Kind: KindSession, UserID: u.ID, User: u.Username, Role: u.Role, Address: r.Address}
	hash, err := s.newHash(ctx, u.Username, r.Password)
	if err != nil {
		return s.refuse(ctx, who, action, u.Username, err)
	}
	err = s.mutate(ctx, who, ActionSelf, action, u.Username, func(tx *sql.Tx) (map[string]any, error) {
		// Delete by hash: of two requests racing with one link, one wins.
		res, err := tx.ExecContext(ctx, "DELETE FROM auth_resets WHERE token_hash = ? AND user_id = ?", tokenHash, u.ID)
		if err != nil {
			return nil, fmt.Errorf("using the reset link: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return nil, ErrResetToken
		}
		if err := s.setPassword(ctx, tx, u.ID, hash); err != nil {
			return nil, err
		}
		ended, err := endSessions(ctx, tx, u.ID)
		return map[string]any{"sessions_ended": ended}, err
	})
	if err == nil {
		s.addresses.refund(addr, now)
		s.accounts.reset(u.Username)
	}
	return err
}

// findReset returns the user a usable reset token belongs to.
func (s *Service) findReset(ctx context.Context, token string, now time.Time) (userRecord, string, error) {
	if err := parseSecret(ResetPrefix, token); err != nil {
		return userRecord{}, "", fmt.Errorf("%w: %w", ErrResetToken, err)
	}
	h := sha256Hex(token)
	var userID int64
	var expires string
	err := s.st.Read().QueryRowContext(ctx, "SELECT user_id, expires_at FROM auth_resets WHERE token_hash = ?", h).Scan(&userID, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return userRecord{}, "", ErrResetToken
	}
	if err != nil {
		return userRecord{}, "", fmt.Errorf("reading reset link: %w", err)
	}
	exp, err := store.ParseTime("auth_resets", "expires_at", expires)
	if err != nil {
		return userRecord{}, "", err
	}
	if !now.Before(exp) {
		return userRecord{}, "", fmt.Errorf("%w: it expired at %s", ErrResetToken, exp.Format(time.RFC3339))
	}
	u, err := scanUser(s.st.Read().QueryRowContext(ctx, "SELECT "+userColumns+" FROM auth_users WHERE id = ?", userID))
	if err != nil {
		return userRecord{}, "", fmt.Errorf("reading the reset link's user: %w", err)
	}
	if u.Disabled {
		return userRecord{}, "", fmt.Errorf("%w: the user is disabled", ErrResetToken)
	}
	return u, h, nil
}
