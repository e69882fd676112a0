package apitype

import (
	"encoding/json"
	"time"
)

// This file holds the bodies of the agents routes: the catalog, images,
// agents, tasks and the event streams (docs/agents-api.md). Who may call
// each is the API's authorization table's business (appliance/api).

// Problem is one refusal of a request or document: the field it concerns
// and why. It mirrors manifest.Problem. Reason is foreign text made safe
// to print (values quoted), but a terminal still gets it escaped.
type Problem struct {
	Path   string `json:"path"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// Invalid is the body of a 400 answer that lists every problem found; its
// "error" is the same one-line message every error body carries.
type Invalid struct {
	Error    string    `json:"error"`
	Problems []Problem `json:"problems"`
}

// CatalogNote is one field of an OMERTAOS document that was dropped,
// approximated or kept without effect when it was read.
type CatalogNote struct {
	Path   string `json:"path"`
	Action string `json:"action"`
	Reason string `json:"reason"`
}

// ImageRef names an entry's or agent's image; Digest is empty until it is
// pinned.
type ImageRef struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest,omitempty"`
}

// Catalog entry origins.
const (
	OriginShipped  = "shipped"
	OriginImported = "imported"
)

// CatalogEntry is one element of GET /api/v1/catalog.
type CatalogEntry struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Version      string   `json:"version,omitempty"`
	Category     string   `json:"category,omitempty"`
	Framework    string   `json:"framework,omitempty"`
	Description  string   `json:"description,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	Icon         string   `json:"icon,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	// Origin is OriginShipped or OriginImported.
	Origin string `json:"origin"`
	// Format is the format the entry was read from; File and Source the
	// file and its place in it ("agents[2]").
	Format string `json:"format"`
	File   string `json:"file"`
	Source string `json:"source,omitempty"`
	// Deployable is false for an entry without an image, or one that
	// no longer passes the checks; NotDeployable says which.
	Deployable    bool      `json:"deployable"`
	NotDeployable string    `json:"not_deployable,omitempty"`
	Image         *ImageRef `json:"image,omitempty"`
	// Isolation is what the manifest asks for ("" means the profile's
	// default).
	Isolation  string        `json:"isolation,omitempty"`
	Notes      []CatalogNote `json:"notes,omitempty"`
	Problems   []Problem     `json:"problems,omitempty"`
	ImportedBy string        `json:"imported_by,omitempty"`
	ImportedAt *time.Time    `json:"imported_at,omitempty"`
}

// CatalogList is the body of GET /api/v1/catalog, sorted by id.
type CatalogList struct {
	Entries []CatalogEntry `json:"entries"`
}

// CatalogEntryView is the body of GET /api/v1/catalog/{id}: the entry and
// its normalised manifest (JSON, apiVersion omertaos.dev/v1), secret
// configuration values replaced by "(secret)".
type CatalogEntryView struct {
	CatalogEntry
	Manifest json.RawMessage `json:"manifest"`
}

// CatalogImport is the body of POST /api/v1/catalog: one catalog document
// in any format `omerta catalog lint` reads. Files are the documents it
// names (an agents.yaml's recipes) by the relative path it uses; nothing
// else is read. Every agent of the document is added, or none (400 with
// the problems). An id already in the catalog is refused (409) unless
// Replace is set and the entry was imported; a shipped entry is never
// replaced.
type CatalogImport struct {
	Name     string            `json:"name"`
	Document string            `json:"document"`
	Files    map[string]string `json:"files,omitempty"`
	Replace  bool              `json:"replace,omitempty"`
}

// CatalogImported is the answer to POST /api/v1/catalog (201).
type CatalogImported struct {
	Entries []CatalogEntry `json:"entries"`
}

// Image is one image in omertad's containerd namespace.
type Image struct {
	Name string `json:"name"`
	// Digest is what the name points at (an index or a manifest);
	// Manifest this machine's platform's manifest; Config the image
	// config's digest.
	Digest   string `json:"digest"`
	Manifest string `json:"manifest,omitempty"`
	Config   string `json:"config,omitempty"`
}

// ImageList is the body of GET /api/v1/images.
type ImageList struct {
	Images []Image `json:"images"`
}

// ImageImport is the body of POST /api/v1/images/import. Path is a file on
// omertad's machine (an OCI layout or `docker save` tar), opened by
// omertad: archives are too large for the API's bodies, and the CLI runs
// on the same machine. Digest, when set, must be the index, manifest or
// config digest of every image in it. Name names an archive that names no
// image.
type ImageImport struct {
	Path   string `json:"path"`
	Digest string `json:"digest,omitempty"`
	Name   string `json:"name,omitempty"`
}

// ImageImported is the answer to POST /api/v1/images/import (201). When
// omertad verifies imports against its signed registries, Signer is the
// key ID of the trusted key whose registry vouches for the archive ("" when
// none does and the profile allowed it unsigned) and Warnings are the
// verification's warnings, to be shown (notably "not signed by a trusted
// key; allowed by the user profile").
type ImageImported struct {
	Images   []Image  `json:"images"`
	Signer   string   `json:"signer,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// ImagePull is the body of POST /api/v1/images/pull. Ref is a full
// reference (registry.example/agents/tool:1.0) that omertad pulls from its
// registry; Digest, when set, must be what the tag resolves to (its index,
// manifest or config digest), or nothing is kept. A ref without a tag
// needs the digest.
type ImagePull struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest,omitempty"`
}

// ImagePulled is the answer to POST /api/v1/images/pull (201).
type ImagePulled struct {
	Image Image `json:"image"`
}

// Resources are an agent's limits, as in a manifest ("500m", "256Mi").
type Resources struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	PIDs   int    `json:"pids,omitempty"`
	GPUs   int    `json:"gpus,omitempty"`
}

// AgentDeploy is the body of POST /api/v1/agents: deploy catalog entry
// Entry, under ID when set (to run one entry twice). Config and Secrets
// are the operator's settings, keyed like the entry's spec.config; every
// key of Secrets must be marked format: secret in its configSchema.
type AgentDeploy struct {
	Entry string `json:"entry"`
	ID    string `json:"id,omitempty"`
	// Tenant is the tenant the agent joins (default "default"): its
	// quotas and policies apply.
	Tenant  string         `json:"tenant,omitempty"`
	Config  map[string]any `json:"config,omitempty"`
	Secrets map[string]any `json:"secrets,omitempty"`
}

// AgentPatch is the body of PATCH /api/v1/agents/{id}. Config and Secrets
// are merged at the top level (a key set to null is removed); the fields
// of Resources that are set replace the agent's. The agent is recreated;
// the old container keeps running until the new one does.
type AgentPatch struct {
	Config    map[string]any `json:"config,omitempty"`
	Secrets   map[string]any `json:"secrets,omitempty"`
	Resources *Resources     `json:"resources,omitempty"`
}

// AgentStatus is what omertad last observed of an agent.
type AgentStatus struct {
	// State is one of pending, running, backoff, crash-loop, exited,
	// failed, stopped, deleting, unknown (containerd does not answer).
	State string `json:"state"`
	// Reason is the last error, one line; foreign text.
	Reason         string     `json:"reason,omitempty"`
	Container      string     `json:"container"`
	Restarts       int64      `json:"restarts"`
	OOMKills       int64      `json:"oom_kills"`
	LastExitCode   *int64     `json:"last_exit_code,omitempty"`
	LastExitAt     *time.Time `json:"last_exit_at,omitempty"`
	NextStartAt    *time.Time `json:"next_start_at,omitempty"`
	CrashLoopSince *time.Time `json:"crash_loop_since,omitempty"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// AgentSummary is an agent as GET /api/v1/agents lists it: what a list
// shows (identity, image, desired and observed state, GPU grant), without
// the manifest, configuration and secret keys, which GET
// /api/v1/agents/{id} has. Those were four fifths of a listed agent's
// bytes, and a list is asked for far more often than it is read whole.
type AgentSummary struct {
	ID           string      `json:"id"`
	Tenant       string      `json:"tenant"`
	Name         string      `json:"name"`
	Image        *ImageRef   `json:"image,omitempty"`
	Isolation    string      `json:"isolation,omitempty"`
	Desired      string      `json:"desired"`
	Generation   int64       `json:"generation"`
	PatchPending bool        `json:"patch_pending,omitempty"`
	CreatedAt    time.Time   `json:"created_at"`
	UpdatedAt    time.Time   `json:"updated_at"`
	Status       AgentStatus `json:"status"`
	// GPUs is the agent's GPU grant; nil when it holds none.
	GPUs *AgentGPUs `json:"gpus,omitempty"`
}

// Agent is the body of GET /api/v1/agents/{id}: its summary and the rest.
// Secret values never appear: Config and the manifest's spec.config hold
// "(secret)" in their place and SecretKeys lists the keys (JSON pointers)
// that are set.
type Agent struct {
	AgentSummary
	Manifest   json.RawMessage `json:"manifest"`
	Config     map[string]any  `json:"config"`
	SecretKeys []string        `json:"secret_keys"`
}

// AgentList is the body of GET /api/v1/agents, sorted by id.
type AgentList struct {
	Agents []AgentSummary `json:"agents"`
}

// TaskCreate is the body of POST /api/v1/agents/{id}/tasks. Input is the
// JSON the agent's task command reads on stdin (empty: {}). A repeat with
// the same IdempotencyKey returns the first task instead of running
// another. Timeout ("30s"), when set, shortens the manifest's.
type TaskCreate struct {
	Input          json.RawMessage `json:"input,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Timeout        string          `json:"timeout,omitempty"`
}

// Task states; the last four are final.
const (
	TaskPending   = "PENDING"
	TaskRunning   = "RUNNING"
	TaskSucceeded = "SUCCEEDED"
	TaskFailed    = "FAILED"
	TaskCanceled  = "CANCELED"
	TaskTimedOut  = "TIMED_OUT"
)

// TaskFinal reports whether a task in state s has ended.
func TaskFinal(s string) bool { return s != TaskPending && s != TaskRunning }

// Task is one task. Output is the command's stdout when it is JSON;
// otherwise OutputText holds it as text (invalid UTF-8 replaced).
// Truncated says the output was longer than the manifest's maxOutput.
type Task struct {
	ID             string          `json:"id"`
	Agent          string          `json:"agent"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	State          string          `json:"state"`
	Actor          string          `json:"actor"`
	Input          json.RawMessage `json:"input"`
	Output         json.RawMessage `json:"output,omitempty"`
	OutputText     string          `json:"output_text,omitempty"`
	Truncated      bool            `json:"truncated,omitempty"`
	ExitCode       *int64          `json:"exit_code,omitempty"`
	Error          string          `json:"error,omitempty"`
	Timeout        string          `json:"timeout"`
	CreatedAt      time.Time       `json:"created_at"`
	StartedAt      *time.Time      `json:"started_at,omitempty"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
}

// TaskList is the body of GET /api/v1/agents/{id}/tasks, newest first.
type TaskList struct {
	Tasks []Task `json:"tasks"`
}

// Query limits of the agents routes.
const (
	TaskLimitDefault = 50
	// LogTailDefault and LogTailMax bound ?tail= of the logs route
	// (lines).
	LogTailDefault = 100
	LogTailMax     = 10000
)

// Event types of GET /api/v1/events. EventLagged and EventShutdown end a
// stream: the first when the client fell behind and missed events (it
// should subscribe again and re-read what it shows), the second when
// omertad stops.
const (
	EventAgentState   = "agent.state"
	EventAgentDeleted = "agent.deleted"
	EventTask         = "task"
	EventTelemetry    = "telemetry"
	EventLagged       = "lagged"
	EventShutdown     = "shutdown"
)

// Event is the data of one server-sent event. Data is, by Type:
// AgentStateEvent, TaskEvent, Telemetry, or {} for agent.deleted.
type Event struct {
	Seq   uint64          `json:"seq"`
	At    time.Time       `json:"at"`
	Type  string          `json:"type"`
	Agent string          `json:"agent,omitempty"`
	Task  string          `json:"task,omitempty"`
	Data  json.RawMessage `json:"data"`
}

// AgentStateEvent is the data of an agent.state event.
type AgentStateEvent struct {
	Desired    string `json:"desired"`
	Generation int64  `json:"generation"`
	State      string `json:"state"`
	Reason     string `json:"reason,omitempty"`
}

// TaskEvent is the data of a task event.
type TaskEvent struct {
	State    string `json:"state"`
	ExitCode *int64 `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Telemetry is one reading of an agent's container (a telemetry event's
// data): CPU time since its task started and the share of one CPU since
// the previous reading, working-set memory, processes, OOM kills.
type Telemetry struct {
	Container   string    `json:"container"`
	At          time.Time `json:"at"`
	CPUSeconds  float64   `json:"cpu_seconds"`
	CPUPercent  float64   `json:"cpu_percent"`
	MemoryBytes uint64    `json:"memory_bytes"`
	MemoryLimit uint64    `json:"memory_limit"`
	Pids        uint64    `json:"pids"`
	PidsLimit   uint64    `json:"pids_limit"`
	OOMKills    uint64    `json:"oom_kills"`
}

// Events of a followed log (GET /api/v1/agents/{id}/logs?follow=true):
// EventLog's data is a JSON string, a piece of the log; EventLogEnd says
// the log can no longer be followed.
const (
	EventLog    = "log"
	EventLogEnd = "log.end"
)
