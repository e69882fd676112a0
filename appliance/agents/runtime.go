package agents

import (
	"context"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
)

// Runtime is what the Service needs of the containerd adapter: the methods
// of *runtime.Runtime it calls, so that tests run it against FakeRuntime.
// Errors carry the runtime's sentinels (runtime.ErrNotFound, ...).
type Runtime interface {
	Create(ctx context.Context, s runtime.Spec) error
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, grace time.Duration) error
	Delete(ctx context.Context, id string) error
	Status(ctx context.Context, id string) (runtime.Status, error)
	List(ctx context.Context) ([]runtime.Status, error)
	Exec(ctx context.Context, id string, es runtime.ExecSpec) (runtime.ExecResult, error)
	Metrics(ctx context.Context, id string) (runtime.Metrics, error)
	MetricsAll(ctx context.Context) (map[string]runtime.Metrics, error)
	Images(ctx context.Context) ([]runtime.Image, error)
	Pull(ctx context.Context, ref string, opts ...runtime.PullOption) (runtime.Image, error)
	Logs(id string) (string, error)
	Rotate(id string) (bool, error)
	Orphans(ctx context.Context, known func(id string) bool) (runtime.Orphans, error)
	Cleanup(ctx context.Context, o runtime.Orphans) error
	// SandboxGPUs says why a sandboxed agent cannot have GPUs with the
	// installed NVIDIA driver (always an error).
	SandboxGPUs(ctx context.Context, driver string) error
}

var _ Runtime = (*runtime.Runtime)(nil)
