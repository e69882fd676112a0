package agents

import (
	"encoding/json"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/gpu"
)

// Desired is the state an operator asked for.
type Desired string

// The desired states.
const (
	DesiredEnabled  Desired = "enabled"
	DesiredDisabled Desired = "disabled"
	// DesiredDeleted: deletion is under way; the row goes once the
	// containers (and, when purging, the data) are gone.
	DesiredDeleted Desired = "deleted"
)

// State is what the reconciler last observed of an agent.
type State string

// The observed states.
const (
	// StatePending: recorded, its container not running yet.
	StatePending State = "pending"
	StateRunning State = "running"
	// StateBackoff: it exited or failed to start and waits to be started
	// again (Status.NextStartAt).
	StateBackoff State = "backoff"
	// StateCrashLoop: it failed too often within its window; nothing
	// restarts it until an operator restarts, enables or patches it.
	StateCrashLoop State = "crash-loop"
	// StateExited: it exited and its policy does not restart it
	// (never, or on-failure after a clean exit).
	StateExited State = "exited"
	// StateFailed: it could not be started and its policy is never.
	StateFailed State = "failed"
	// StateStopped: disabled, its container stopped.
	StateStopped  State = "stopped"
	StateDeleting State = "deleting"
	// StateUnknown: containerd does not answer. The agent's processes
	// keep running meanwhile: their shims outlive containerd.
	StateUnknown State = "unknown"
)

// States lists every observed state (the agents gauge has one series each).
var States = []State{StatePending, StateRunning, StateBackoff, StateCrashLoop, StateExited, StateFailed,
	StateStopped, StateDeleting, StateUnknown}

// Agent is one deployed agent as the API shows it. Secret configuration
// values never appear in it: Config and Manifest.Spec.Config hold
// manifest.Redacted in their place, and SecretKeys names those that are set.
type Agent struct {
	ID         string             `json:"id"`
	Tenant     string             `json:"tenant"`
	Manifest   *manifest.Manifest `json:"manifest"`
	Config     map[string]any     `json:"config"`
	SecretKeys []string           `json:"secretKeys"`
	Desired    Desired            `json:"desired"`
	Generation int64              `json:"generation"`
	// PatchPending is set while a patch's new container is not yet known
	// to run; the previous generation keeps running meanwhile.
	PatchPending bool      `json:"patchPending,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	Status       Status    `json:"status"`
	// NonCompliant is set while the agent fails the policies in force (a
	// policy or tenant change since its admission); it keeps running.
	NonCompliant *PolicyFlag `json:"nonCompliant,omitempty"`
	// GPUs is the grant admission gave the agent: exactly the devices
	// its container gets. Its Problem is set while the agent is flagged
	// for GPU drift (a GPU lost, the driver replaced).
	GPUs *gpu.Grant `json:"gpus,omitempty"`
}

// Status is the observed side of an agent.
type Status struct {
	State State `json:"state"`
	// Reason is the last error, one line (foreign text: escape it before
	// writing it to a terminal).
	Reason         string     `json:"reason,omitempty"`
	Container      string     `json:"container"`
	Restarts       int64      `json:"restarts"`
	OOMKills       int64      `json:"oomKills"`
	LastExitCode   *int64     `json:"lastExitCode,omitempty"`
	LastExitAt     *time.Time `json:"lastExitAt,omitempty"`
	NextStartAt    *time.Time `json:"nextStartAt,omitempty"`
	CrashLoopSince *time.Time `json:"crashLoopSince,omitempty"`
	UpdatedAt      time.Time  `json:"updatedAt"`
}

// DeployRequest deploys one agent.
type DeployRequest struct {
	// Manifest is a checked manifest, usually a catalog entry's. It is
	// not changed; its spec.config, if any, is the starting configuration
	// that Config and Secrets override key by key.
	Manifest *manifest.Manifest
	// ID overrides metadata.id (to run one catalog entry twice).
	ID string
	// Tenant is the tenant the agent belongs to (a DNS label; empty is
	// policy.DefaultTenant). Its quotas and policies apply; it never
	// changes afterwards.
	Tenant string
	// Config and Secrets are the operator's settings, both keyed like
	// spec.config. Every key of Secrets must be marked format: secret in
	// spec.configSchema; a secret value given in Config is kept apart all
	// the same.
	Config  map[string]any
	Secrets map[string]any
	Actor   string
}

// PatchRequest changes an agent's configuration or resources; the agent is
// recreated (see Service.Patch).
type PatchRequest struct {
	// Config and Secrets are merged into the agent's configuration at the
	// top level: a key set to nil is removed, others replace.
	Config  map[string]any
	Secrets map[string]any
	// Resources: the fields set replace the agent's.
	Resources *manifest.Resources
	Actor     string
}

// TaskState is a task's state.
type TaskState string

// The task states; the last four are final.
const (
	TaskPending   TaskState = "PENDING"
	TaskRunning   TaskState = "RUNNING"
	TaskSucceeded TaskState = "SUCCEEDED"
	TaskFailed    TaskState = "FAILED"
	TaskCanceled  TaskState = "CANCELED"
	TaskTimedOut  TaskState = "TIMED_OUT"
)

// TaskStates lists every task state.
var TaskStates = []TaskState{TaskPending, TaskRunning, TaskSucceeded, TaskFailed, TaskCanceled, TaskTimedOut}

// Final reports whether a task in state s has ended.
func (s TaskState) Final() bool { return s != TaskPending && s != TaskRunning }

// Task is one task run in an agent's container.
type Task struct {
	ID             string          `json:"id"`
	Agent          string          `json:"agent"`
	IdempotencyKey string          `json:"idempotencyKey,omitempty"`
	State          TaskState       `json:"state"`
	Actor          string          `json:"actor"`
	Input          json.RawMessage `json:"input"`
	// Output is the command's stdout, at most spec.tasks.maxOutput bytes;
	// Truncated says it was longer.
	Output     []byte        `json:"output,omitempty"`
	Truncated  bool          `json:"truncated,omitempty"`
	ExitCode   *int64        `json:"exitCode,omitempty"`
	Error      string        `json:"error,omitempty"`
	Timeout    time.Duration `json:"timeout"`
	CreatedAt  time.Time     `json:"createdAt"`
	StartedAt  *time.Time    `json:"startedAt,omitempty"`
	FinishedAt *time.Time    `json:"finishedAt,omitempty"`
}

// TaskRequest runs one task.
type TaskRequest struct {
	Agent string
	// Input is the JSON the command reads on stdin (at most MaxTaskInput
	// bytes); empty means {}.
	Input json.RawMessage
	// IdempotencyKey, when set, makes a repeat of the same request return
	// the first task instead of running another.
	IdempotencyKey string
	// Timeout, when set, shortens the manifest's spec.tasks.timeout.
	Timeout time.Duration
	Actor   string
}
