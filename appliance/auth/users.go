package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// User is an account of the console, without its password hash.
type User struct {
	ID                int64     `json:"id"`
	Username          string    `json:"username"`
	Role              Role      `json:"role"`
	Disabled          bool      `json:"disabled"`
	PasswordSet       bool      `json:"password_set"` // false until a reset link is used
	CreatedAt         time.Time `json:"created_at"`
	CreatedBy         string    `json:"created_by"`
	UpdatedAt         time.Time `json:"updated_at"`
	PasswordChangedAt time.Time `json:"password_changed_at,omitzero"`
	LastLoginAt       time.Time `json:"last_login_at,omitzero"`
}

const userColumns = `id, username, role, disabled, password_hash, created_at, created_by, updated_at, password_changed_at, last_login_at`

// userRecord is a row of auth_users, hash included.
type userRecord struct {
	User
	hash string
}

func scanUser(sc scanner) (userRecord, error) {
	var u userRecord
	var role, created, updated string
	var changed, login sql.NullString
	err := sc.Scan(&u.ID, &u.Username, &role, &u.Disabled, &u.hash, &created, &u.CreatedBy, &updated, &changed, &login)
	if err != nil {
		return u, err
	}
	if u.Role, err = ParseRole(role); err != nil {
		return u, fmt.Errorf("user %d: stored role %q: %w", u.ID, role, err)
	}
	u.PasswordSet = u.hash != ""
	for _, f := range []struct {
		col string
		dst *time.Time
		v   sql.NullString
	}{
		{"created_at", &u.CreatedAt, sql.NullString{String: created, Valid: true}},
		{"updated_at", &u.UpdatedAt, sql.NullString{String: updated, Valid: true}},
		{"password_changed_at", &u.PasswordChangedAt, changed},
		{"last_login_at", &u.LastLoginAt, login},
	} {
		if *f.dst, err = store.ParseNullTime("auth_users", f.col, f.v); err != nil {
			return u, err
		}
	}
	return u, nil
}

// q is what both *sql.DB and *sql.Tx offer.
type q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// findUser looks up a normalized username.
func findUser(ctx context.Context, db q, username string) (userRecord, error) {
	u, err := scanUser(db.QueryRowContext(ctx, "SELECT "+userColumns+" FROM auth_users WHERE username = ?", username))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("%w: no user %q", ErrNotFound, username)
	}
	if err != nil {
		return u, fmt.Errorf("reading user %q: %w", username, err)
	}
	return u, nil
}

// NewUser is a user an admin creates. With no Password, the user gets a
// reset link to set one (so the admin never knows it).
type NewUser struct {
	Username string
	Role     Role
	Password string
}

// CreatedUser is CreateUser's result; Reset is set when no password was
// given, and its Token is shown to the admin once.
type CreatedUser struct {
	User  User
	Reset *ResetLink
}

// CreateUser adds a user (users.write).
func (s *Service) CreateUser(ctx context.Context, by Principal, nu NewUser) (CreatedUser, error) {
	const action = "auth.user.create"
	// Before anything else: a caller who may not create users must not
	// make omertad hash for it either.
	if err := by.require(ActionUsersWrite); err != nil {
		return CreatedUser{}, s.refuse(ctx, by, action, "", err)
	}
	username, err := NormalizeUsername(nu.Username)
	if err != nil {
		return CreatedUser{}, s.refuse(ctx, by, action, "", err)
	}
	if _, err := ParseRole(string(nu.Role)); err != nil {
		return CreatedUser{}, s.refuse(ctx, by, action, username, err)
	}
	var hash string
	if nu.Password != "" {
		if hash, err = s.newHash(ctx, username, nu.Password); err != nil {
			return CreatedUser{}, s.refuse(ctx, by, action, username, err)
		}
	}
	var out CreatedUser
	err = s.mutate(ctx, by, ActionUsersWrite, action, username, func(tx *sql.Tx) (map[string]any, error) {
		u, err := s.insertUser(ctx, tx, username, nu.Role, hash, by.actor())
		if err != nil {
			return nil, err
		}
		out.User = u.User
		if hash == "" {
			link, err := s.storeReset(ctx, tx, u.ID, by.actor())
			if err != nil {
				return nil, err
			}
			out.Reset = &link
		}
		return map[string]any{"user_role": nu.Role, "password_set": hash != ""}, nil
	})
	return out, err
}

// newHash checks password against the policy, then hashes it.
func (s *Service) newHash(ctx context.Context, username, password string) (string, error) {
	if err := CheckPassword(username, password); err != nil {
		return "", err
	}
	return s.hash.hash(ctx, password)
}

func (s *Service) insertUser(ctx context.Context, tx *sql.Tx, username string, role Role, hash, by string) (userRecord, error) {
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM auth_users").Scan(&n); err != nil {
		return userRecord{}, fmt.Errorf("counting users: %w", err)
	}
	if n >= MaxUsers {
		return userRecord{}, fmt.Errorf("%w: there are already %d users, the most this appliance keeps", ErrConflict, MaxUsers)
	}
	now := store.FormatTime(s.clock())
	var changed any
	if hash != "" {
		changed = now
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO auth_users(username, role, password_hash, created_at, created_by, updated_at, password_changed_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`, username, role, hash, now, by, now, changed)
	if store.IsUnique(err) {
		return userRecord{}, fmt.Errorf("%w: user %q exists", ErrConflict, username)
	}
	if err != nil {
		return userRecord{}, fmt.Errorf("storing user %q: %w", username, err)
	}
	return findUser(ctx, tx, username)
}

// GetUser returns one user (users.read, or one's own account).
func (s *Service) GetUser(ctx context.Context, by Principal, username string) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, err
	}
	if !(by.Kind == KindSession && by.User == name) {
		if err := by.require(ActionUsersRead); err != nil {
			return User{}, err
		}
	}
	u, err := findUser(ctx, s.st.Read(), name)
	return u.User, err
}

// ListUsers returns every user, by username (users.read).
func (s *Service) ListUsers(ctx context.Context, by Principal) ([]User, error) {
	if err := by.require(ActionUsersRead); err != nil {
		return nil, err
	}
	rows, err := s.st.Read().QueryContext(ctx, "SELECT "+userColumns+" FROM auth_users ORDER BY username LIMIT ?", MaxUsers)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("listing users: %w", err)
		}
		out = append(out, u.User)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	return out, nil
}

// SetDisabled disables or enables a user (users.write). Disabling ends all
// of the user's sessions and any reset link. The last enabled admin
// cannot be disabled: nobody could manage users after that.
func (s *Service) SetDisabled(ctx context.Context, by Principal, username string, disabled bool) error {
	action := "auth.user.enable"
	if disabled {
		action = "auth.user.disable"
	}
	name, err := NormalizeUsername(username)
	if err != nil {
		return s.refuse(ctx, by, action, "", err)
	}
	return s.mutate(ctx, by, ActionUsersWrite, action, name, func(tx *sql.Tx) (map[string]any, error) {
		u, err := findUser(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		if disabled && u.Role == RoleAdmin && !u.Disabled {
			if err := requireOtherAdmin(ctx, tx, u.ID); err != nil {
				return nil, err
			}
		}
		if err := s.updateUser(ctx, tx, u.ID, "disabled = ?", disabled); err != nil {
			return nil, err
		}
		var ended int64
		if disabled {
			if ended, err = endSessions(ctx, tx, u.ID); err != nil {
				return nil, err
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM auth_resets WHERE user_id = ?", u.ID); err != nil {
				return nil, fmt.Errorf("dropping the reset link: %w", err)
			}
		}
		return map[string]any{"was_disabled": u.Disabled, "sessions_ended": ended}, nil
	})
}

// SetRole changes a user's role (users.write) and ends all of the user's
// sessions, so the new role holds from the next login on. The last enabled
// admin keeps the admin role.
func (s *Service) SetRole(ctx context.Context, by Principal, username string, role Role) error {
	const action = "auth.user.role"
	name, err := NormalizeUsername(username)
	if err != nil {
		return s.refuse(ctx, by, action, "", err)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return s.refuse(ctx, by, action, name, err)
	}
	return s.mutate(ctx, by, ActionUsersWrite, action, name, func(tx *sql.Tx) (map[string]any, error) {
		u, err := findUser(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		if u.Role == role {
			return map[string]any{"from": u.Role, "to": role, "sessions_ended": 0}, nil
		}
		if u.Role == RoleAdmin && !u.Disabled {
			if err := requireOtherAdmin(ctx, tx, u.ID); err != nil {
				return nil, err
			}
		}
		if err := s.updateUser(ctx, tx, u.ID, "role = ?", role); err != nil {
			return nil, err
		}
		ended, err := endSessions(ctx, tx, u.ID)
		if err != nil {
			return nil, err
		}
		return map[string]any{"from": u.Role, "to": role, "sessions_ended": ended}, nil
	})
}

// requireOtherAdmin refuses to take away the last enabled admin.
func requireOtherAdmin(ctx context.Context, tx *sql.Tx, userID int64) error {
	var n int
	err := tx.QueryRowContext(ctx, "SELECT count(*) FROM auth_users WHERE role = 'admin' AND disabled = 0 AND id != ?", userID).Scan(&n)
	if err != nil {
		return fmt.Errorf("counting admins: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: this is the last enabled admin; make another admin first", ErrConflict)
	}
	return nil
}

// updateUser sets one column expression of a user and bumps updated_at.
// set is a constant of this package, never input.
func (s *Service) updateUser(ctx context.Context, tx *sql.Tx, id int64, set string, arg any) error {
	_, err := tx.ExecContext(ctx, "UPDATE auth_users SET "+set+", updated_at = ? WHERE id = ?", arg, store.FormatTime(s.clock()), id)
	if err != nil {
		return fmt.Errorf("updating user %d: %w", id, err)
	}
	return nil
}

// ChangePassword sets the password of by's own account, given the current
// one, and ends the account's other sessions.
func (s *Service) ChangePassword(ctx context.Context, by Principal, current, next string) error {
	const action = "auth.password.change"
	if by.Kind != KindSession {
		return s.refuse(ctx, by, action, by.User, fmt.Errorf("%w: changing a password needs a console session", ErrForbidden))
	}
	// The current password is a guess like a login's: a stolen session
	// must not be a way around the account's rate limit.
	now := s.clock()
	if wait, ok := s.accounts.take(by.User, now); !ok {
		return s.refuse(ctx, by, action, by.User, &RateLimitError{RetryAfter: wait})
	}
	u, err := findUser(ctx, s.st.Read(), by.User)
	if err != nil {
		return s.refuse(ctx, by, action, by.User, err)
	}
	ok, err := s.hash.verify(ctx, u.hash, current)
	if err != nil {
		s.accounts.refund(by.User, now)
		return err
	}
	if !ok {
		return s.refuse(ctx, by, action, by.User, invalid("current_password", "does not match"))
	}
	s.accounts.reset(by.User)
	hash, err := s.newHash(ctx, u.Username, next)
	if err != nil {
		return s.refuse(ctx, by, action, by.User, err)
	}
	return s.mutate(ctx, by, ActionSelf, action, by.User, func(tx *sql.Tx) (map[string]any, error) {
		if err := s.setPassword(ctx, tx, u.ID, hash); err != nil {
			return nil, err
		}
		r, err := tx.ExecContext(ctx, "DELETE FROM auth_sessions WHERE user_id = ? AND id_hash != ?", u.ID, by.sessHash)
		if err != nil {
			return nil, fmt.Errorf("ending other sessions: %w", err)
		}
		ended, _ := r.RowsAffected()
		return map[string]any{"sessions_ended": ended}, nil
	})
}

func (s *Service) setPassword(ctx context.Context, tx *sql.Tx, id int64, hash string) error {
	now := store.FormatTime(s.clock())
	_, err := tx.ExecContext(ctx, "UPDATE auth_users SET password_hash = ?, password_changed_at = ?, updated_at = ? WHERE id = ?", hash, now, now, id)
	if err != nil {
		return fmt.Errorf("storing the password of user %d: %w", id, err)
	}
	return nil
}
