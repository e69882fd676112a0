package auth

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// Kind says how a Principal authenticated.
type Kind string

const (
	KindSession Kind = "session" // a console login, carried in a cookie
	KindToken   Kind = "token"   // an API token, carried in Authorization
	KindSystem  Kind = "system"  // omertad itself or root on the unix socket
)

// Principal is who makes a request, as Authenticate or AuthenticateToken
// found it. The API layer sets Address (the client's address, for audit
// records and rate limits) before passing it on.
type Principal struct {
	Kind     Kind
	UserID   int64  // 0 for a token or the system
	User     string // username; "token:<name>" for a token; "root" etc. for the system
	Role     Role
	TokenID  int64 // for a token
	Address  string
	Expires  time.Time // when the session ends at the latest; zero for a token without expiry
	csrf     string
	sessHash string
}

// CSRFToken is the session's synchronizer token, for the console to put
// in its pages and forms; "" for a token or the system.
func (p Principal) CSRFToken() string { return p.csrf }

// System is the principal of root on omertad's unix socket (the CLI run as
// root, omertad's own jobs): an admin that needs no session. name is
// recorded in the audit log ("uid:0").
func System(name string) Principal {
	return Principal{Kind: KindSystem, User: name, Role: RoleAdmin}
}

func (p Principal) actor() string {
	if p.User == "" {
		return "anonymous"
	}
	return p.User
}

// require refuses p when its role does not allow action.
func (p Principal) require(action string) error {
	if !Allowed(p.Role, action) {
		return fmt.Errorf("%w: role %q may not %s", ErrForbidden, p.Role, action)
	}
	return nil
}

// Session is a new login. ID goes into the __Host- cookie and is never
// shown again; omertad keeps only its hash.
type Session struct {
	ID          string
	CSRFToken   string
	User        string
	Role        Role
	CreatedAt   time.Time
	ExpiresAt   time.Time     // the absolute timeout
	IdleTimeout time.Duration // ends sooner when unused this long
}

// Session IDs are 128 random bits; CSRF tokens 256.
const (
	sessionIDBytes = 16
	csrfBytes      = 32
)

var sessionIDLen = base64.RawURLEncoding.EncodedLen(sessionIDBytes)

// parseSessionID accepts exactly what newSessionID makes, before anything
// is hashed or looked up.
func parseSessionID(id string) ([]byte, error) {
	if len(id) != sessionIDLen {
		return nil, fmt.Errorf("%w: malformed session ID", ErrUnauthenticated)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(b) != sessionIDBytes {
		return nil, fmt.Errorf("%w: malformed session ID", ErrUnauthenticated)
	}
	return b, nil
}

// createSession starts a session for user inside tx. It ends the session
// the browser had before (rotation: a new ID at every login, so one fixed
// before login is worthless after it), the user's expired sessions, and
// the oldest ones beyond SessionsPerUser.
func (s *Service) createSession(ctx context.Context, tx *sql.Tx, u User, prevID, address string, now time.Time) (Session, error) {
	if _, err := parseSessionID(prevID); err == nil {
		if _, err := tx.ExecContext(ctx, "DELETE FROM auth_sessions WHERE id_hash = ?", sha256Hex(prevID)); err != nil {
			return Session{}, fmt.Errorf("ending the previous session: %w", err)
		}
	}
	if err := s.pruneSessions(ctx, tx, u.ID, now); err != nil {
		return Session{}, err
	}
	sess := Session{
		ID: randomText(sessionIDBytes), CSRFToken: randomText(csrfBytes), User: u.Username, Role: u.Role,
		CreatedAt: now, ExpiresAt: now.Add(s.o.AbsoluteTimeout), IdleTimeout: s.o.IdleTimeout,
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO auth_sessions(id_hash, user_id, csrf_token, address, created_at, last_seen_at, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`, sha256Hex(sess.ID), u.ID, sess.CSRFToken, boundAddress(address),
		store.FormatTime(now), store.FormatTime(now), store.FormatTime(sess.ExpiresAt))
	if err != nil {
		return Session{}, fmt.Errorf("storing the session: %w", err)
	}
	return sess, nil
}

// pruneSessions ends userID's expired sessions and all but the newest
// SessionsPerUser-1, making room for one more.
func (s *Service) pruneSessions(ctx context.Context, tx *sql.Tx, userID int64, now time.Time) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM auth_sessions WHERE user_id = ? AND (expires_at <= ? OR last_seen_at <= ?)`,
		userID, store.FormatTime(now), store.FormatTime(now.Add(-s.o.IdleTimeout)))
	if err != nil {
		return fmt.Errorf("ending expired sessions: %w", err)
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM auth_sessions WHERE user_id = ? AND id_hash NOT IN
(SELECT id_hash FROM auth_sessions WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?)`,
		userID, userID, s.o.SessionsPerUser-1)
	if err != nil {
		return fmt.Errorf("ending the oldest sessions: %w", err)
	}
	return nil
}

// endSessions ends every session of userID: on disable, role change,
// password change or reset.
func endSessions(ctx context.Context, tx *sql.Tx, userID int64) (int64, error) {
	r, err := tx.ExecContext(ctx, "DELETE FROM auth_sessions WHERE user_id = ?", userID)
	if err != nil {
		return 0, fmt.Errorf("ending the user's sessions: %w", err)
	}
	return r.RowsAffected()
}

type sessionRow struct {
	userID               int64
	username             string
	role                 string
	disabled             bool
	csrf                 string
	lastSeen, expires    time.Time
	lastSeenText, expTxt string
}

// Authenticate returns the principal of a session ID from the console's
// cookie, or an error wrapping ErrUnauthenticated when it is malformed,
// unknown, expired, or its user is disabled. It writes last-seen only
// when it is older than TouchInterval, so most requests cost one read.
func (s *Service) Authenticate(ctx context.Context, sessionID string) (Principal, error) {
	if _, err := parseSessionID(sessionID); err != nil {
		return Principal{}, err
	}
	key := sha256Hex(sessionID)
	r, err := s.readSession(ctx, key)
	if err != nil {
		return Principal{}, err
	}
	now := s.clock()
	idleEnd := r.lastSeen.Add(s.o.IdleTimeout)
	if r.disabled || !now.Before(r.expires) || !now.Before(idleEnd) {
		if err := s.st.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "DELETE FROM auth_sessions WHERE id_hash = ?", key)
			return err
		}); err != nil {
			return Principal{}, fmt.Errorf("ending an expired session: %w", err)
		}
		return Principal{}, fmt.Errorf("%w: session expired", ErrUnauthenticated)
	}
	if now.Sub(r.lastSeen) >= s.o.TouchInterval {
		if err := s.touchSession(ctx, key, now); err != nil {
			return Principal{}, err
		}
	}
	role, err := ParseRole(r.role)
	if err != nil {
		return Principal{}, fmt.Errorf("session of user %d: stored role %q: %w", r.userID, r.role, err)
	}
	return Principal{
		Kind: KindSession, UserID: r.userID, User: r.username, Role: role,
		Expires: earlier(r.expires, now.Add(s.o.IdleTimeout)), csrf: r.csrf, sessHash: key,
	}, nil
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

const readSessionQuery = `SELECT s.user_id, u.username, u.role, u.disabled, s.csrf_token, s.last_seen_at, s.expires_at
FROM auth_sessions s JOIN auth_users u ON u.id = s.user_id WHERE s.id_hash = ?`

// sessionQuery is the session read, prepared once on the readers' pool
// (database/sql prepares it again on each connection that runs it); when
// preparing fails the query runs unprepared, with the same answer.
func (s *Service) sessionQuery(ctx context.Context, key string) *sql.Row {
	s.sessionOnce.Do(func() {
		s.sessionStmt, _ = s.st.Read().PrepareContext(context.WithoutCancel(ctx), readSessionQuery)
	})
	if s.sessionStmt != nil {
		return s.sessionStmt.QueryRowContext(ctx, key)
	}
	return s.st.Read().QueryRowContext(ctx, readSessionQuery, key)
}

func (s *Service) readSession(ctx context.Context, key string) (sessionRow, error) {
	var r sessionRow
	err := s.sessionQuery(ctx, key).Scan(&r.userID, &r.username, &r.role, &r.disabled, &r.csrf, &r.lastSeenText, &r.expTxt)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: no such session", ErrUnauthenticated)
	}
	if err != nil {
		return r, fmt.Errorf("reading session: %w", err)
	}
	if r.lastSeen, err = store.ParseTime("auth_sessions", "last_seen_at", r.lastSeenText); err != nil {
		return r, err
	}
	if r.expires, err = store.ParseTime("auth_sessions", "expires_at", r.expTxt); err != nil {
		return r, err
	}
	return r, nil
}

func (s *Service) touchSession(ctx context.Context, key string, now time.Time) error {
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE auth_sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?",
			store.FormatTime(now), key, store.FormatTime(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("recording session activity: %w", err)
	}
	return nil
}

// CheckCSRF checks the synchronizer token a state-changing request carries
// against its session's, in constant time. Only sessions need one: a
// browser sends cookies on its own, never an API token or a unix socket
// peer's credentials.
func CheckCSRF(p Principal, token string) error {
	if p.Kind != KindSession {
		return nil
	}
	if p.csrf == "" || subtle.ConstantTimeCompare([]byte(p.csrf), []byte(token)) != 1 {
		return ErrCSRF
	}
	return nil
}

// Logout ends p's session. The record names who and from where.
func (s *Service) Logout(ctx context.Context, p Principal) error {
	if p.Kind != KindSession || p.sessHash == "" {
		return fmt.Errorf("%w: logging out needs a session", ErrUnauthenticated)
	}
	return s.mutate(ctx, p, ActionSelf, "auth.logout", p.User, func(tx *sql.Tx) (map[string]any, error) {
		if _, err := tx.ExecContext(ctx, "DELETE FROM auth_sessions WHERE id_hash = ?", p.sessHash); err != nil {
			return nil, fmt.Errorf("ending the session: %w", err)
		}
		return nil, nil
	})
}

// PurgeExpired deletes sessions past their timeouts and reset links past
// theirs; omertad runs it now and then so that the tables stay small.
func (s *Service) PurgeExpired(ctx context.Context) (int64, error) {
	now := s.clock()
	var n int64
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, "DELETE FROM auth_sessions WHERE expires_at <= ? OR last_seen_at <= ?",
			store.FormatTime(now), store.FormatTime(now.Add(-s.o.IdleTimeout)))
		if err != nil {
			return err
		}
		n, _ = r.RowsAffected()
		r, err = tx.ExecContext(ctx, "DELETE FROM auth_resets WHERE expires_at <= ?", store.FormatTime(now))
		if err != nil {
			return err
		}
		m, _ := r.RowsAffected()
		n += m
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purging expired sessions: %w", err)
	}
	return n, nil
}

// boundAddress is what is stored of a client address.
func boundAddress(a string) string {
	if len(a) > maxAddressKey {
		a = a[:maxAddressKey]
	}
	return strings.ToValidUTF8(a, "?")
}
