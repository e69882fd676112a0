package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// Token is an API token as listed: never its secret.
type Token struct {
	ID         int64     `json:"id"`
	Name       string    `json:"name"`
	Role       Role      `json:"role"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

// NewToken is a token an admin asks for. A zero ExpiresAt never expires.
type NewToken struct {
	Name      string
	Role      Role
	ExpiresAt time.Time
}

// IssuedToken is CreateToken's result. Secret is shown once and never
// again: omertad keeps only its SHA-256.
type IssuedToken struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}

const tokenColumns = "id, name, role, created_by, created_at, expires_at, last_used_at, revoked_at"

func scanToken(sc scanner) (Token, error) {
	var t Token
	var role, created string
	var expires, used, revoked sql.NullString
	if err := sc.Scan(&t.ID, &t.Name, &role, &t.CreatedBy, &created, &expires, &used, &revoked); err != nil {
		return t, err
	}
	var err error
	if t.Role, err = ParseRole(role); err != nil {
		return t, fmt.Errorf("token %d: stored role %q: %w", t.ID, role, err)
	}
	for _, f := range []struct {
		col string
		dst *time.Time
		v   sql.NullString
	}{
		{"created_at", &t.CreatedAt, sql.NullString{String: created, Valid: true}},
		{"expires_at", &t.ExpiresAt, expires},
		{"last_used_at", &t.LastUsedAt, used},
		{"revoked_at", &t.RevokedAt, revoked},
	} {
		if *f.dst, err = store.ParseNullTime("auth_tokens", f.col, f.v); err != nil {
			return t, err
		}
	}
	return t, nil
}

// CreateToken issues an API token scoped to a role (tokens.write). Names
// are unique and never reused, so that audit records that name a token
// stay unambiguous after it is revoked.
func (s *Service) CreateToken(ctx context.Context, by Principal, nt NewToken) (IssuedToken, error) {
	const action = "auth.token.create"
	now := s.clock()
	err := checkTokenName(nt.Name)
	if err == nil {
		_, err = ParseRole(string(nt.Role))
	}
	if err == nil && !nt.ExpiresAt.IsZero() && !nt.ExpiresAt.After(now) {
		err = invalid("expires_at", "must be in the future")
	}
	if err != nil {
		return IssuedToken{}, s.refuse(ctx, by, action, "", err)
	}
	var out IssuedToken
	err = s.mutate(ctx, by, ActionTokensWrite, action, nt.Name, func(tx *sql.Tx) (map[string]any, error) {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM auth_tokens WHERE revoked_at IS NULL").Scan(&n); err != nil {
			return nil, fmt.Errorf("counting tokens: %w", err)
		}
		if n >= MaxActiveTokens {
			return nil, fmt.Errorf("%w: %d tokens are active, the most this appliance keeps; revoke one first", ErrConflict, n)
		}
		secret := newSecret(TokenPrefix)
		res, err := tx.ExecContext(ctx, `INSERT INTO auth_tokens(name, role, secret_hash, created_by, created_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?)`, nt.Name, nt.Role, sha256Hex(secret), by.actor(), store.FormatTime(now), store.FormatNullTime(nt.ExpiresAt.UTC()))
		if store.IsUnique(err) {
			return nil, fmt.Errorf("%w: a token named %q exists or existed", ErrConflict, nt.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("storing token %q: %w", nt.Name, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, err
		}
		t, err := scanToken(tx.QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM auth_tokens WHERE id = ?", id))
		out = IssuedToken{Token: t, Secret: secret}
		return map[string]any{"token_id": id, "token_role": nt.Role, "expires_at": nt.ExpiresAt}, err
	})
	return out, err
}

// ListTokens returns every token, revoked ones included, newest first
// (tokens.read).
func (s *Service) ListTokens(ctx context.Context, by Principal) ([]Token, error) {
	if err := by.require(ActionTokensRead); err != nil {
		return nil, err
	}
	rows, err := s.st.Read().QueryContext(ctx, "SELECT "+tokenColumns+" FROM auth_tokens ORDER BY id DESC LIMIT 10000")
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	return out, nil
}

// RevokeToken ends a token for good (tokens.write).
func (s *Service) RevokeToken(ctx context.Context, by Principal, id int64) error {
	target := fmt.Sprintf("token:%d", id)
	return s.mutate(ctx, by, ActionTokensWrite, "auth.token.revoke", target, func(tx *sql.Tx) (map[string]any, error) {
		t, err := scanToken(tx.QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM auth_tokens WHERE id = ?", id))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: no token %d", ErrNotFound, id)
		}
		if err != nil {
			return nil, fmt.Errorf("reading token %d: %w", id, err)
		}
		if !t.RevokedAt.IsZero() {
			return nil, fmt.Errorf("%w: token %d was revoked at %s", ErrConflict, id, t.RevokedAt.Format(time.RFC3339))
		}
		if _, err := tx.ExecContext(ctx, "UPDATE auth_tokens SET revoked_at = ? WHERE id = ?", store.FormatTime(s.clock()), id); err != nil {
			return nil, fmt.Errorf("revoking token %d: %w", id, err)
		}
		return map[string]any{"token_name": t.Name, "token_role": t.Role}, nil
	})
}

// AuthenticateToken returns the principal of an API token from an
// Authorization header, or an error wrapping ErrUnauthenticated when it is
// malformed, unknown, revoked or expired. Like Authenticate, it records
// last use at most once per TouchInterval.
func (s *Service) AuthenticateToken(ctx context.Context, secret string) (Principal, error) {
	if err := parseSecret(TokenPrefix, secret); err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	h := sha256Hex(secret)
	t, err := scanToken(s.st.Read().QueryRowContext(ctx, "SELECT "+tokenColumns+" FROM auth_tokens WHERE secret_hash = ?", h))
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("reading token: %w", err)
	}
	now := s.clock()
	switch {
	case !t.RevokedAt.IsZero():
		return Principal{}, fmt.Errorf("%w: token %q was revoked", ErrUnauthenticated, t.Name)
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return Principal{}, fmt.Errorf("%w: token %q expired", ErrUnauthenticated, t.Name)
	}
	if now.Sub(t.LastUsedAt) >= s.o.TouchInterval {
		err := s.st.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "UPDATE auth_tokens SET last_used_at = ? WHERE id = ?", store.FormatTime(now), t.ID)
			return err
		})
		if err != nil {
			return Principal{}, fmt.Errorf("recording token use: %w", err)
		}
	}
	return Principal{Kind: KindToken, User: "token:" + t.Name, Role: t.Role, TokenID: t.ID, Expires: t.ExpiresAt}, nil
}
