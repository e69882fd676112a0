package agents

import (
	"errors"
	"fmt"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/policy"
)

// Sentinel errors. Every error the Service returns that has one of these
// meanings wraps it, so that the API maps them to HTTP codes with errors.Is:
// ErrNotFound 404, ErrExists and ErrConflict 409, ErrInvalid 400 (with the
// field problems of an *InvalidError), ErrUnavailable 503, ErrStartFailed 502, ErrBusy 429,
// ErrDenied 403 (with the decision of its *policy.DeniedError), ErrRateLimited
// 429 (with the Retry-After of its *RateLimitedError).
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	// ErrConflict: the request does not fit the agent's or task's current
	// state (a task for a stopped agent, an idempotency key reused with
	// another input, an agent being deleted).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: containerd does not answer. What was asked is not
	// done, or (said in the message) recorded and left to the reconciler.
	ErrUnavailable = errors.New("containerd is unavailable")
	// ErrStartFailed: the agent is recorded but its container did not
	// start; its status says why and the reconciler retries per policy.
	ErrStartFailed = errors.New("the agent's container did not start")
	// ErrBusy: too many tasks are running (429).
	ErrBusy = errors.New("too many tasks running")
	// ErrDenied: admission refused a deploy or patch, or the policy allows
	// the agent no tasks. It is policy.ErrDenied: the error is a
	// *policy.DeniedError (errors.As) whose Decision names the rule and
	// the numbers.
	ErrDenied = policy.ErrDenied
	// ErrRateLimited: the agent's task rate (the policy's
	// tasks.perMinute) is spent; a *RateLimitedError says when to retry.
	ErrRateLimited = errors.New("task rate limit reached")
)

// InvalidError is a refused request: every problem, each naming its field.
// errors.Is(err, ErrInvalid) holds for it.
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

// invalid is an *InvalidError with one problem.
func invalid(path string, code manifest.Code, format string, a ...any) error {
	return &InvalidError{Problems: manifest.Problems{{Path: path, Code: code, Reason: fmt.Sprintf(format, a...)}}}
}

// fromRuntime adds this package's sentinel to a runtime error that has one
// (containerd down, or not answering in time), keeping the runtime's error
// in the chain.
func fromRuntime(what string, err error) error {
	if err == nil {
		return nil
	}
	if unreachable(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unreachable reports whether err says containerd could not be reached.
func unreachable(err error) bool {
	return errors.Is(err, runtime.ErrUnavailable) || errors.Is(err, ErrUnavailable)
}
