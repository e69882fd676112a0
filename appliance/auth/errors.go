package auth

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. The API layer maps them to HTTP status codes with
// errors.Is; the messages are safe to show to the person who asked.
var (
	// ErrUnauthenticated: no valid session or token (401).
	ErrUnauthenticated = errors.New("not authenticated")
	// ErrBadCredentials is the one answer to every failed login, whatever
	// failed (unknown user, wrong password, disabled account, no password
	// set yet), so that a guesser learns nothing. It is an ErrUnauthenticated.
	ErrBadCredentials = fmt.Errorf("%w: invalid username or password", ErrUnauthenticated)
	// ErrForbidden: authenticated, but the role does not allow it (403).
	ErrForbidden = errors.New("forbidden")
	// ErrCSRF: a state-changing request without the session's CSRF token (403).
	ErrCSRF = fmt.Errorf("%w: missing or wrong CSRF token", ErrForbidden)
	// ErrNotFound: no such user or token (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request contradicts the current state (409).
	ErrConflict = errors.New("conflict")
	// ErrSetupDone: setup was completed; it never runs again (409 or 404).
	ErrSetupDone = errors.New("setup is already complete")
	// ErrSetupToken: the setup token does not match, was used or has
	// expired (403). The error wrapping it may say which, for the audit
	// log; a client is shown only ErrSetupToken's own message, as
	// firstboot.Redeem asks, so that a guesser learns nothing.
	ErrSetupToken = errors.New("setup token is not valid")
	// ErrResetToken: a reset link that does not match, was used or has
	// expired (403); like ErrSetupToken, show a client only its message.
	ErrResetToken = errors.New("reset link is not valid or has expired")
	// ErrInvalid is what every *InvalidError is (400 or 422).
	ErrInvalid = errors.New("invalid request")
	// ErrRateLimited is what every *RateLimitError is (429).
	ErrRateLimited = errors.New("too many attempts")
)

// InvalidError refuses one field of a request, saying why.
type InvalidError struct {
	Field  string // the request field: "username", "password", "role", ...
	Reason string // for a person: "must be at least 12 characters"
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, reason string) error { return &InvalidError{Field: field, Reason: reason} }

// RateLimitError says that attempts from this address or on this account
// are refused for now, and when to try again (the Retry-After header).
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many attempts; try again in %s", e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// RetryAfterSeconds is RetryAfter rounded up to whole seconds, at least 1,
// as the Retry-After header wants it.
func (e *RateLimitError) RetryAfterSeconds() int {
	s := int((e.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}
