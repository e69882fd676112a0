// Package auth is omertad's authentication and authorization domain: the
// console's users and roles, password hashing, sessions with their CSRF
// tokens, API tokens, the one-time setup, login rate limiting, and the
// role/permission table every API route is checked against.
//
// omertad decides: the console only carries the session ID of the person
// in front of it, and every call is checked here. Secrets are never stored
// (see migrations/0001_auth.sql), and every mutating action, refused ones
// included, is written to the store's hash-chained audit log.
//
// The package speaks no HTTP; appliance/api maps its errors to status codes
// (ErrUnauthenticated 401, ErrForbidden 403, ErrNotFound 404, ErrConflict
// 409, ErrInvalid 400, ErrRateLimited 429 with Retry-After).
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the auth domain's tables for store.WithSchemas. The Store
// passed to New must have been opened with it.
var Schema = store.Schema{Domain: "auth", Migrations: migrations}

// Defaults of Options.
const (
	DefaultIdleTimeout      = 30 * time.Minute
	DefaultAbsoluteTimeout  = 12 * time.Hour
	DefaultTouchInterval    = time.Minute
	DefaultResetTTL         = time.Hour
	DefaultSessionsPerUser  = 16
	DefaultConcurrentHashes = 2
	DefaultHashQueue        = 64
	DefaultTrackedKeys      = 10000
)

// Bounds on how many rows a caller can make exist.
const (
	MaxUsers        = 1000
	MaxActiveTokens = 256
)

var (
	DefaultAccountLimit = Limit{Burst: 5, Window: 15 * time.Minute}
	DefaultAddressLimit = Limit{Burst: 20, Window: 15 * time.Minute}
)

// Options configure New. Zero values mean the defaults above.
type Options struct {
	Store *store.Store // opened with Schema; required

	// RedeemSetupToken consumes first boot's one-time setup token. It
	// returns an error wrapping ErrSetupToken when the token does not
	// match, was used or expired. FirstbootRedeemer(root) is the real one;
	// nil makes Setup refuse every attempt.
	RedeemSetupToken func(token string, now time.Time) error

	Now func() time.Time // the clock; nil means time.Now

	IdleTimeout     time.Duration // a session unused this long ends
	AbsoluteTimeout time.Duration // a session this old ends, used or not
	// TouchInterval: a session's last-seen time (and a token's last-used
	// time) is written at most this often, not on every request; so an
	// unused session ends up to TouchInterval before IdleTimeout is up.
	TouchInterval   time.Duration
	ResetTTL        time.Duration // how long a reset link works
	SessionsPerUser int           // older sessions of a user end beyond this

	ConcurrentHashes int   // argon2id computations at once, each Params.Memory big
	HashQueue        int   // callers waiting for one; more get a *RateLimitError at once
	AccountLimit     Limit // failed logins per account
	AddressLimit     Limit // failed logins, setups and resets per client address
	TrackedKeys      int   // buckets each limiter keeps in memory

	params *Params // tests only: cheaper hashing
}

// Service is the auth domain. It is safe for concurrent use.
type Service struct {
	st     *store.Store
	redeem func(string, time.Time) error
	now    func() time.Time
	o      Options
	hash   *hasher

	accounts  *limiter
	addresses *limiter

	// sessionStmt is readSession's query, prepared on first use: every
	// console request reads its session, and preparing the statement cost
	// as much as running it (measured under the console's load test).
	sessionOnce sync.Once
	sessionStmt *sql.Stmt
}

// New checks o, fills in defaults, and prepares the dummy hash that
// unknown users are checked against (one argon2id computation).
func New(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("auth: Options.Store is required")
	}
	setDefaults(&o)
	if o.AbsoluteTimeout < o.IdleTimeout {
		return nil, fmt.Errorf("auth: absolute timeout %s is shorter than the idle timeout %s", o.AbsoluteTimeout, o.IdleTimeout)
	}
	for name, l := range map[string]Limit{"account": o.AccountLimit, "address": o.AddressLimit} {
		if l.Burst < 1 || l.Window <= 0 {
			return nil, fmt.Errorf("auth: %s limit %+v needs a burst of at least 1 and a positive window", name, l)
		}
	}
	p := DefaultParams
	if o.params != nil {
		p = *o.params
	}
	h, err := newHasher(p, o.ConcurrentHashes, o.HashQueue)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return &Service{
		st: o.Store, redeem: o.RedeemSetupToken, now: o.Now, o: o, hash: h,
		accounts:  newLimiter(o.AccountLimit, o.TrackedKeys),
		addresses: newLimiter(o.AddressLimit, o.TrackedKeys),
	}, nil
}

func setDefaults(o *Options) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	def(&o.IdleTimeout, DefaultIdleTimeout)
	def(&o.AbsoluteTimeout, DefaultAbsoluteTimeout)
	def(&o.TouchInterval, DefaultTouchInterval)
	def(&o.ResetTTL, DefaultResetTTL)
	defInt(&o.SessionsPerUser, DefaultSessionsPerUser)
	defInt(&o.ConcurrentHashes, DefaultConcurrentHashes)
	defInt(&o.HashQueue, DefaultHashQueue)
	defInt(&o.TrackedKeys, DefaultTrackedKeys)
	if o.AccountLimit == (Limit{}) {
		o.AccountLimit = DefaultAccountLimit
	}
	if o.AddressLimit == (Limit{}) {
		o.AddressLimit = DefaultAddressLimit
	}
}

func (s *Service) clock() time.Time { return s.now().UTC() }

// randomText is n random bytes, base64url without padding.
func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Outcomes in audit records.
const (
	outcomeSuccess = "success"
	outcomeRefused = "refused" // the request was wrong or not allowed
	outcomeError   = "error"   // it failed on our side
)

// audit appends a successful action by p inside tx.
func (s *Service) audit(ctx context.Context, tx *sql.Tx, p Principal, action, target string, detail map[string]any) error {
	d := map[string]any{}
	for k, v := range detail {
		d[k] = v
	}
	// Who, from where, and how it went are never overridden by a detail.
	d["role"], d["address"], d["outcome"] = p.Role, p.Address, outcomeSuccess
	return s.st.AuditTx(ctx, tx, store.AuditEntry{Actor: p.actor(), Action: action, Target: target, Detail: d})
}

// maxReason bounds the error text kept in an audit record.
const maxReason = 256

// refuse records that p's action failed, in its own transaction since the
// action's own rolled back, and returns cause (joined with the audit
// error, if that failed too).
func (s *Service) refuse(ctx context.Context, p Principal, action, target string, cause error) error {
	outcome := outcomeError
	for _, e := range []error{ErrUnauthenticated, ErrForbidden, ErrNotFound, ErrConflict, ErrInvalid,
		ErrRateLimited, ErrSetupDone, ErrSetupToken, ErrResetToken} {
		if errors.Is(cause, e) {
			outcome = outcomeRefused
		}
	}
	reason := cause.Error()
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "")
	}
	d := map[string]any{"role": p.Role, "address": p.Address, "outcome": outcome, "reason": reason}
	// The caller's context may be what failed; the record is still owed.
	ctx = context.WithoutCancel(ctx)
	err := s.st.Audit(ctx, store.AuditEntry{Actor: p.actor(), Action: action, Target: target, Detail: d})
	if err != nil {
		return errors.Join(cause, fmt.Errorf("recording the refusal in the audit log: %w", err))
	}
	return cause
}

// mutate runs fn as p's action: checked against perm, in one transaction
// with its audit record, and audited as refused when anything fails.
func (s *Service) mutate(ctx context.Context, p Principal, perm, action, target string, fn func(tx *sql.Tx) (map[string]any, error)) error {
	if err := p.require(perm); err != nil {
		return s.refuse(ctx, p, action, target, err)
	}
	err := s.st.Write(ctx, func(tx *sql.Tx) error {
		detail, err := fn(tx)
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, p, action, target, detail)
	})
	if err != nil && !errors.Is(err, store.ErrAnchor) {
		return s.refuse(ctx, p, action, target, err)
	}
	// An ErrAnchor means the action and its record did commit: it is
	// returned for the daemon to report, not recorded as a refusal.
	return err
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }
