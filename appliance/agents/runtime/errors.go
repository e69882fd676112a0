package runtime

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/errdefs"
)

// Sentinel errors. Every error the Runtime returns that has one of these
// meanings wraps it, so that the API maps them to HTTP codes (404, 409, 400,
// 503, ...) without importing containerd.
var (
	ErrNotFound       = errors.New("not found")
	ErrExists         = errors.New("already exists")
	ErrInvalid        = errors.New("invalid")
	ErrState          = errors.New("not allowed in the current state")
	ErrUnavailable    = errors.New("containerd is unavailable")
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrStartFailed    = errors.New("start failed")
	ErrTimeout        = errors.New("timed out")
	// ErrUnsupported: the spec is valid but this appliance cannot run it
	// so (GPUs for a sandboxed agent).
	ErrUnsupported = errors.New("not supported")
)

// wrap says what was being done and adds the sentinel matching containerd's
// error class; the original error stays in the chain.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	if s := sentinel(err); s != nil && !errors.Is(err, s) {
		return fmt.Errorf("%s: %w: %w", what, s, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func sentinel(err error) error {
	switch {
	case errdefs.IsNotFound(err):
		return ErrNotFound
	case errdefs.IsAlreadyExists(err):
		return ErrExists
	case errdefs.IsInvalidArgument(err):
		return ErrInvalid
	case errdefs.IsFailedPrecondition(err), errdefs.IsConflict(err):
		return ErrState
	case errdefs.IsUnavailable(err):
		return ErrUnavailable
	case errdefs.IsDeadlineExceeded(err), errors.Is(err, context.DeadlineExceeded):
		return ErrTimeout
	}
	return nil
}

// validateID refuses what containerd would refuse as a container id,
// namespace or exec id, before anything is created.
func validateID(id string) error {
	if err := identifiers.Validate(id); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}
