package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Every *Error wraps the one that matches its meaning, so
// a Go caller tells refusals apart with errors.Is: ErrDenied (403),
// ErrNotFound (404), ErrInvalid (400, 413, 415, 431, and a bad registry),
// ErrLimited (429: rate limits and budgets), ErrUnavailable (502, 503,
// 504: no backend served the request).
var (
	ErrDenied      = errors.New("denied")
	ErrNotFound    = errors.New("not found")
	ErrInvalid     = errors.New("invalid")
	ErrLimited     = errors.New("limit reached")
	ErrUnavailable = errors.New("no backend available")
)

// Code is a machine-readable refusal, the "code" of an OpenAI-style error
// body. Clients act on these; they never change meaning.
type Code string

// The codes the gateway answers with.
const (
	CodeUnknownAgent       Code = "unknown_agent"             // 403: the source address is no agent's
	CodeModelNotAllowed    Code = "model_not_allowed"         // 403: the agent's policy does not list the model
	CodeCloudNotAllowed    Code = "cloud_not_allowed"         // 403: every backend of the model is a cloud one, and the policy forbids cloud
	CodeModelNotFound      Code = "model_not_found"           // 404: no such model in the registry
	CodeModelNotEnabled    Code = "model_not_enabled"         // 403: the model's manifest did not verify, or it does not fit the GPUs
	CodeNotFound           Code = "not_found"                 // 404: no such endpoint
	CodeMethodNotAllowed   Code = "method_not_allowed"        // 405
	CodeInvalidRequest     Code = "invalid_request"           // 400: the body is not an acceptable request
	CodeRequestTooLarge    Code = "request_too_large"         // 413
	CodeUnsupportedMedia   Code = "unsupported_media_type"    // 415
	CodeHeadersTooLarge    Code = "headers_too_large"         // 431
	CodeRateLimited        Code = "rate_limit_exceeded"       // 429: requests per minute; Retry-After
	CodeTokenRateLimited   Code = "token_rate_limit_exceeded" // 429: tokens per minute; Retry-After
	CodeBudgetExceeded     Code = "budget_exceeded"           // 429: monthly tokens or cost; Retry-After is the next month
	CodePolicyUnavailable  Code = "policy_unavailable"        // 503: the policy could not be read; nothing is forwarded
	CodeBackendUnavailable Code = "backend_unavailable"       // 503: every backend's circuit is open; Retry-After
	CodeBackendError       Code = "backend_error"             // 502: every backend tried failed
	CodeBackendTimeout     Code = "backend_timeout"           // 504: the last backend tried did not answer in time
	CodeBackendTooLarge    Code = "backend_response_too_large"
)

// Error is a refusal or failure as the client sees it.
type Error struct {
	Status     int
	Code       Code
	Message    string        // one line, foreign text escaped, no secret
	RetryAfter time.Duration // 0: no Retry-After header
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Unwrap gives the sentinel for the error's status.
func (e *Error) Unwrap() error {
	switch {
	case e.Status == http.StatusForbidden:
		return ErrDenied
	case e.Status == http.StatusNotFound:
		return ErrNotFound
	case e.Status == http.StatusTooManyRequests:
		return ErrLimited
	case e.Status >= 500:
		return ErrUnavailable
	}
	return ErrInvalid
}

func refuse(status int, code Code, format string, a ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, a...)}
}

// errorType is the OpenAI "type" that goes with a status.
func errorType(e *Error) string {
	switch {
	case e.Code == CodeBudgetExceeded:
		return "insufficient_quota"
	case e.Status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case e.Status == http.StatusForbidden:
		return "permission_error"
	case e.Status >= 500:
		return "api_error"
	}
	return "invalid_request_error"
}

// writeError answers e as {"error":{"message","type","param","code"}},
// with Retry-After in whole seconds, rounded up, where it is set.
func writeError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(retrySeconds(e.RetryAfter), 10))
	}
	w.WriteHeader(e.Status)
	var b strings.Builder
	b.Grow(96 + len(e.Message))
	b.WriteString(`{"error":{"message":`)
	msg, _ := json.Marshal(e.Message) // a string always encodes
	b.Write(msg)
	b.WriteString(`,"type":"`)
	b.WriteString(errorType(e))
	b.WriteString(`","param":null,"code":"`)
	b.WriteString(string(e.Code))
	b.WriteString("\"}}\n")
	w.Write([]byte(b.String()))
}

func retrySeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Problem is one thing wrong with a model registry, naming its field.
type Problem struct {
	Field  string
	Reason string
}

func (p Problem) String() string { return p.Field + ": " + p.Reason }

// InvalidError is a refused registry: every problem found. errors.Is(err,
// ErrInvalid) holds for it.
type InvalidError struct {
	Source   string
	Problems []Problem
}

func (e *InvalidError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "model registry " + e.Source + ": " + strings.Join(lines, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }
