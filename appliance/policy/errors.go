package policy

import (
	"errors"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// Sentinel errors. Every error the Service returns with one of these
// meanings wraps it, so that the API maps them with errors.Is: ErrNotFound
// 404 (a tenant the caller may not see is ErrNotFound too, never 403),
// ErrInvalid 400 (the field problems of an *InvalidError), ErrConflict 409
// (a stale version, deleting a tenant in use), ErrDenied 403 or 422 (an
// admission refusal; its *DeniedError carries the Decision).
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrConflict = errors.New("conflict")
	ErrDenied   = errors.New("denied by policy")
)

// InvalidError is a refused document or request: every problem, each
// naming its field path. errors.Is(err, ErrInvalid) holds for it.
type InvalidError struct {
	Problems manifest.Problems
}

func (e *InvalidError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "invalid: " + strings.Join(lines, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(path string, code manifest.Code, reason string) error {
	return &InvalidError{Problems: manifest.Problems{{Path: path, Code: code, Reason: reason}}}
}

// DeniedError is an admission refusal; Decision says which rule decided
// and why, with numbers. errors.Is(err, ErrDenied) holds for it.
type DeniedError struct {
	Decision Decision
}

func (e *DeniedError) Error() string {
	return "denied by " + e.Decision.Rule + ": " + e.Decision.Reason
}

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }
