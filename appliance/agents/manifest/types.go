// Package manifest defines the agent manifest (apiVersion omertaos.dev/v1,
// kind Agent): what an agent is (the OMERTAOS catalog fields) and what
// running it needs (image, command, resources, network, volumes, restart
// policy, isolation, tasks), decoded strictly from YAML or JSON, validated
// with every refusal naming its field, and normalised.
//
// docs/agent-manifest.md documents each field; manifest.schema.json is the
// published JSON Schema (omerta catalog schema).
package manifest

import (
	"encoding/json"
	"strings"
	"time"
)

// APIVersion and Kind identify the format.
const (
	APIVersion = "omertaos.dev/v1"
	Kind       = "Agent"
)

// Manifest is one agent.
type Manifest struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
}

// Metadata describes the agent; these are the OMERTAOS catalog fields.
type Metadata struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Version      string   `json:"version,omitempty"`
	Category     string   `json:"category,omitempty"`
	Framework    string   `json:"framework,omitempty"`
	Description  string   `json:"description,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	Icon         string   `json:"icon,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
}

// Spec is what running the agent needs.
type Spec struct {
	// Image is absent for a catalog entry that cannot be deployed (an
	// OMERTAOS entry without an image).
	Image   *Image   `json:"image,omitempty"`
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Env     []EnvVar `json:"env,omitempty"`
	// Config holds the operator's settings; ConfigSchema (JSON Schema)
	// says which are allowed and which are secret (format: secret).
	Config       map[string]any `json:"config,omitempty"`
	ConfigSchema map[string]any `json:"configSchema,omitempty"`
	Resources    Resources      `json:"resources"`
	Network      Network        `json:"network"`
	Ports        []Port         `json:"ports,omitempty"`
	Volumes      []Volume       `json:"volumes,omitempty"`
	Restart      Restart        `json:"restart"`
	// Isolation empty means the profile's default (see DefaultIsolation).
	Isolation   Isolation    `json:"isolation,omitempty"`
	Tasks       *Tasks       `json:"tasks,omitempty"`
	PolicyHints *PolicyHints `json:"policyHints,omitempty"`
}

// Image names the agent's OCI image. Digest may be left out in a catalog
// entry: it is then resolved once, when the image is imported or first
// deployed, and pinned from then on.
type Image struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest,omitempty"`
}

// EnvVar is one environment variable of the agent's process.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Resources are the agent's cgroup limits. CPU and Memory are
// Kubernetes-style quantities ("500m", "1.5"; "256Mi", "1Gi").
type Resources struct {
	CPU    Quantity `json:"cpu,omitempty"`
	Memory Quantity `json:"memory,omitempty"`
	PIDs   int      `json:"pids,omitempty"`
	GPUs   int      `json:"gpus,omitempty"`
}

// Quantity is a resource amount as written in a manifest. A bare number in
// YAML or JSON is taken as its decimal text.
type Quantity string

// Network modes.
const (
	NetworkNone    = "none"
	NetworkGateway = "gateway"
)

// Network says what the agent may reach.
type Network struct {
	Mode string `json:"mode,omitempty"`
}

// Port is a TCP port the agent listens on inside its network namespace,
// for example its web page, which the console reaches for the operator.
type Port struct {
	Name     string `json:"name,omitempty"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Volume is a named data directory under the agent's own state directory,
// mounted at MountPath in the container.
type Volume struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Restart says what happens when the agent's process exits.
type Restart struct {
	Policy    string     `json:"policy,omitempty"`
	Backoff   *Backoff   `json:"backoff,omitempty"`
	CrashLoop *CrashLoop `json:"crashLoop,omitempty"`
}

// Backoff is the delay before a restart: Initial, doubled after each
// failure up to Max.
type Backoff struct {
	Initial Duration `json:"initial,omitempty"`
	Max     Duration `json:"max,omitempty"`
}

// CrashLoop is when restarting stops: after Failures failed starts within
// Window the agent is put in the crash-loop state until an operator acts.
type CrashLoop struct {
	Failures int      `json:"failures,omitempty"`
	Window   Duration `json:"window,omitempty"`
}

// Isolation levels.
type Isolation string

const (
	// IsolationContainer runs the agent under runc.
	IsolationContainer Isolation = "container"
	// IsolationSandbox runs the agent under gVisor (runsc).
	IsolationSandbox Isolation = "sandbox"
)

// Tasks says how one task runs in the agent's container: Command gets the
// task's JSON on stdin and writes its JSON result on stdout.
type Tasks struct {
	Command   []string `json:"command"`
	Timeout   Duration `json:"timeout,omitempty"`
	MaxOutput Quantity `json:"maxOutput,omitempty"`
}

// PolicyHints are kept from an imported OMERTAOS AgentTemplate
// (policyOverrides) for the policy issue; nothing enforces them yet.
type PolicyHints struct {
	SLAP95Ms     *int64   `json:"slaP95Ms,omitempty"`
	BudgetUSDMax *float64 `json:"budgetUsdMax,omitempty"`
	AllowCloud   *bool    `json:"allowCloud,omitempty"`
}

// Duration is a time.Duration written as text ("30s", "5m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes d as time.Duration does, without the zero tails ("5m",
// not "5m0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalJSON writes d as text, the form Parse reads.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// MarshalYAML writes d as text, the form Parse reads.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
