package apitype

import (
	"encoding/json"
	"time"
)

// This file holds the bodies of the authentication routes (setup, login,
// logout, whoami, password reset), the users and API tokens an admin
// manages, and the first-boot report. omertad decides every call: the
// console forwards a session in HeaderSession (and HeaderCSRF on changes)
// or a token in Authorization, and omertad checks the role per route.

// Request headers that carry who is calling. A peer other than root on
// omertad's socket (the console) must send a session or a bearer token;
// HeaderClientAddr is believed only from such a peer.
const (
	// HeaderSession carries the console's session cookie value verbatim.
	HeaderSession = "X-Omerta-Session"
	// HeaderCSRF carries the session's synchronizer token on every
	// POST, PUT, PATCH and DELETE made with a session.
	HeaderCSRF = "X-Omerta-CSRF"
	// HeaderClientAddr is the browser's IP address, for rate limits and
	// audit records.
	HeaderClientAddr = "X-Omerta-Client-Addr"
	// HeaderAuthorization carries "Bearer <api token>".
	HeaderAuthorization = "Authorization"
)

// Principal kinds in Whoami.Kind.
const (
	KindSession = "session"
	KindToken   = "token"
	KindSystem  = "system"
)

// SetupState is the body of GET /api/v1/setup: whether the first admin
// exists. Once Done, the setup page is gone for good.
type SetupState struct {
	Done bool `json:"done"`
}

// SetupRequest is the body of POST /api/v1/setup: the one-time token
// first boot printed, and the first admin's name and password.
type SetupRequest struct {
	Token    string `json:"token"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginRequest is the body of POST /api/v1/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Session is the answer to a login or a setup. SessionID goes into the
// console's __Host- cookie and is never shown again; CSRFToken goes with
// every state-changing request made with the session.
type Session struct {
	SessionID string    `json:"session_id"`
	CSRFToken string    `json:"csrf_token"`
	User      string    `json:"user"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at"`
	// IdleTimeoutS: the session ends sooner when unused this many seconds.
	IdleTimeoutS int64 `json:"idle_timeout_s"`
}

// Whoami is the body of GET /api/v1/whoami: who omertad takes the caller
// for, what its role may do (Actions, sorted), the session's CSRF token
// (sessions only) and the calling process as the kernel reports it.
type Whoami struct {
	Kind      string   `json:"kind"`
	User      string   `json:"user"`
	Role      string   `json:"role"`
	Actions   []string `json:"actions"`
	CSRFToken string   `json:"csrf_token,omitempty"`
	Peer      *Peer    `json:"peer,omitempty"`
}

// ResetRequest is the body of POST /api/v1/reset: a reset link's secret
// and the new password.
type ResetRequest struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

// PasswordChange is the body of POST /api/v1/password: one's own
// password, for a console session only. The account's other sessions end.
type PasswordChange struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// User is a console account, without its password hash; it mirrors
// auth.User.
type User struct {
	ID                int64     `json:"id"`
	Username          string    `json:"username"`
	Role              string    `json:"role"`
	Disabled          bool      `json:"disabled"`
	PasswordSet       bool      `json:"password_set"`
	CreatedAt         time.Time `json:"created_at"`
	CreatedBy         string    `json:"created_by"`
	UpdatedAt         time.Time `json:"updated_at"`
	PasswordChangedAt time.Time `json:"password_changed_at,omitzero"`
	LastLoginAt       time.Time `json:"last_login_at,omitzero"`
}

// UserList is the body of GET /api/v1/users, sorted by username.
type UserList struct {
	Users []User `json:"users"`
}

// UserCreate is the body of POST /api/v1/users. Without a password the
// answer carries a reset link with which the user sets one, so that the
// admin never knows it.
type UserCreate struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Password string `json:"password,omitempty"`
}

// ResetLink is a one-time secret with which a user sets a password; it is
// shown once. It mirrors auth.ResetLink.
type ResetLink struct {
	Token     string    `json:"token"`
	User      string    `json:"user"`
	ExpiresAt time.Time `json:"expires_at"`
}

// UserCreated is the answer to POST /api/v1/users (201).
type UserCreated struct {
	User  User       `json:"user"`
	Reset *ResetLink `json:"reset,omitempty"`
}

// RoleChange is the body of PUT /api/v1/users/{name}/role. The user's
// sessions end: the new role holds from the next login on.
type RoleChange struct {
	Role string `json:"role"`
}

// Token is an API token as listed, never its secret; it mirrors
// auth.Token.
type Token struct {
	ID         int64     `json:"id"`
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

// TokenList is the body of GET /api/v1/tokens, newest first, revoked ones
// included.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// TokenCreate is the body of POST /api/v1/tokens. Without ExpiresAt the
// token works until it is revoked.
type TokenCreate struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// TokenIssued is the answer to POST /api/v1/tokens (201). Secret is shown
// this once: omertad keeps only its hash.
type TokenIssued struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}

// Report verification statuses.
const (
	// ReportVerified: every check passed against the device's public key.
	ReportVerified = "verified"
	// ReportSelfConsistent: every check passed, but only against the key
	// inside the report, since the device's key could not be read (see
	// Warnings); that proves nothing about who wrote it.
	ReportSelfConsistent = "self-consistent"
	// ReportFailed: a check failed: the report was edited, truncated or
	// is not a report.
	ReportFailed = "failed"
)

// ReportView is the body of GET /api/v1/report: the first-boot report as
// stored (null when it is not JSON) and what verifying it found.
type ReportView struct {
	Report       json.RawMessage    `json:"report"`
	Verification ReportVerification `json:"verification"`
	// Summary is read from the report when it decoded; absent otherwise.
	Summary *ReportSummary `json:"summary,omitempty"`
}

// ReportVerification is the outcome of verifying the report against the
// device's public key; it mirrors report.Verification.
type ReportVerification struct {
	Status      string        `json:"status"`
	Trusted     bool          `json:"trusted"`
	KeySource   string        `json:"key_source"`
	Fingerprint string        `json:"fingerprint"`
	Checks      []ReportCheck `json:"checks"`
	Warnings    []string      `json:"warnings"`
	// Error is the first failed check, one line; empty when none failed.
	Error string `json:"error,omitempty"`
}

// ReportCheck is one thing the verification checked.
type ReportCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// ReportSummary is what a dashboard shows of a report: which machine and
// run, the hardware verdict, and how many controls had which result.
type ReportSummary struct {
	Hostname     string         `json:"hostname"`
	Profile      string         `json:"profile"`
	ImageVersion string         `json:"image_version"`
	FinishedAt   time.Time      `json:"finished_at"`
	ClockTrusted bool           `json:"clock_trusted"`
	ProbeStatus  string         `json:"probe_status"`
	Records      int            `json:"records"`
	Outcomes     map[string]int `json:"outcomes"`
}
