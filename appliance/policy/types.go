package policy

import (
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// The document formats.
const (
	APIVersion = "omertaos.dev/v1"
	KindPolicy = "Policy"
	KindTenant = "Tenant"
)

// DefaultTenant is the tenant of every agent that names none. It always
// exists (migrations/0001 creates it) and cannot be deleted.
const DefaultTenant = "default"

// SubjectKind says what a policy applies to.
type SubjectKind string

// The subjects, least specific first (see doc.go for how they layer).
const (
	SubjectCategory SubjectKind = "category"
	SubjectTenant   SubjectKind = "tenant"
	SubjectAgent    SubjectKind = "agent"
)

// Subject names what a policy applies to: an agent id, a catalog category
// (compared without regard to case, stored lower-cased) or a tenant.
type Subject struct {
	Kind SubjectKind `json:"kind"`
	Name string      `json:"name"`
}

// String is "agent/foo"; a category that is not a plain label is quoted
// ("category/\"business / crm\""), so that a rule string stays one token.
func (s Subject) String() string { return labelOrQuote(string(s.Kind)) + "/" + labelOrQuote(s.Name) }

// labelOrQuote keeps a DNS label as it is and quotes anything else, so
// that foreign text in a rule string is escaped and stays one token.
func labelOrQuote(s string) string {
	if labelRe.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}

// Document is one policy as an administrator writes it (YAML or JSON).
type Document struct {
	APIVersion  string  `json:"apiVersion"`
	Kind        string  `json:"kind"`
	Subject     Subject `json:"subject"`
	Description string  `json:"description,omitempty"`
	Spec        Spec    `json:"spec"`
}

// Spec holds the rules. A field left out inherits from the layer below
// (see doc.go); a list given empty ([]) allows nothing.
type Spec struct {
	// Isolation is the weakest isolation allowed: container (runc) or
	// sandbox (gVisor), container being the weaker.
	Isolation manifest.Isolation `json:"isolation,omitempty"`
	Network   *Network           `json:"network,omitempty"`
	GPU       *GPU               `json:"gpu,omitempty"`
	Max       *Max               `json:"max,omitempty"`
	Images    *Images            `json:"images,omitempty"`
	Models    *Models            `json:"models,omitempty"`
	// Secrets are the secret configuration keys (JSON pointers such as
	// "/crm_api_key") the agent may receive; "*" is any.
	Secrets []string `json:"secrets,omitzero"`
	Tasks   *Tasks   `json:"tasks,omitempty"`
	Budget  *Budget  `json:"budget,omitempty"`
}

// Network is what the agent may reach.
type Network struct {
	// Modes are the network modes allowed (manifest: none, gateway).
	Modes []string `json:"modes,omitzero"`
	// Egress are the destinations beyond the gateway: DNS names
	// ("api.example.com", "*.example.com": any name below example.com,
	// not example.com itself) and addresses or CIDRs ("10.1.0.0/16").
	Egress []string `json:"egress,omitzero"`
}

// GPU says whether the agent may have GPUs and how much VRAM in all.
type GPU struct {
	Allowed *bool             `json:"allowed,omitempty"`
	VRAM    manifest.Quantity `json:"vram,omitempty"` // "24Gi"
}

// Max bounds the agent's resources (the manifest's spec.resources).
type Max struct {
	CPU    manifest.Quantity `json:"cpu,omitempty"`
	Memory manifest.Quantity `json:"memory,omitempty"`
	PIDs   *int64            `json:"pids,omitempty"`
	GPUs   *int64            `json:"gpus,omitempty"`
}

// Images says which OCI images the agent may run: one whose digest is
// listed or whose verified signature is by a listed key. Both lists left
// out means any image.
type Images struct {
	Digests []string `json:"digests,omitzero"` // "sha256:<64 hex>"
	Signers []string `json:"signers,omitzero"` // minisign key ids, 16 hex digits
	// RequireSigned refuses an image without a verified signature; when
	// false such an image is admitted with a warning.
	RequireSigned *bool `json:"requireSigned,omitempty"`
}

// Models says which models the agent may call through the gateway.
type Models struct {
	// Allowed are model names; a trailing "*" matches any name with that
	// prefix ("llama*"); "*" alone is any model.
	Allowed []string `json:"allowed,omitzero"`
	// AllowCloud allows models the registry marks as remote (paid APIs,
	// the AgentTemplate's privacy.allow_cloud).
	AllowCloud *bool `json:"allowCloud,omitempty"`
}

// Tasks bounds how often tasks may be submitted to the agent.
type Tasks struct {
	PerMinute *int64 `json:"perMinute,omitempty"`
}

// Budget bounds the agent's model use per calendar month (UTC).
type Budget struct {
	TokensPerMonth *int64   `json:"tokensPerMonth,omitempty"`
	USDPerMonth    *float64 `json:"usdPerMonth,omitempty"` // the AgentTemplate's budget.usd_max
}

// TenantDocument is one tenant as an administrator writes it.
type TenantDocument struct {
	APIVersion  string `json:"apiVersion"`
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Quotas      Quotas `json:"quotas"`
}

// Quotas bound a tenant's agents in all; a field left out is unbounded.
// Admission checks the tenant's totals with the new agent added.
type Quotas struct {
	Agents         *int64            `json:"agents,omitempty"`
	CPU            manifest.Quantity `json:"cpu,omitempty"`
	Memory         manifest.Quantity `json:"memory,omitempty"`
	GPUs           *int64            `json:"gpus,omitempty"`
	VRAM           manifest.Quantity `json:"vram,omitempty"`
	TokensPerMonth *int64            `json:"tokensPerMonth,omitempty"`
	USDPerMonth    *float64          `json:"usdPerMonth,omitempty"`
}

// Policy is the current version of a stored policy.
type Policy struct {
	Subject     Subject   `json:"subject"`
	Version     int64     `json:"version"`
	Description string    `json:"description,omitempty"`
	Spec        Spec      `json:"spec"`
	UpdatedAt   time.Time `json:"updatedAt"`
	UpdatedBy   string    `json:"updatedBy"`
}

// Origin is the policy's name in rule strings: "policy:agent/foo@v3".
func (p Policy) Origin() string {
	return "policy:" + p.Subject.String() + "@v" + strconv.FormatInt(p.Version, 10)
}

// Action is what made a version.
type Action string

// The actions.
const (
	ActionCreate   Action = "create"
	ActionUpdate   Action = "update"
	ActionRollback Action = "rollback"
	ActionDelete   Action = "delete"
)

// Version is one entry of a policy's history. A deletion has no Spec.
type Version struct {
	Subject     Subject   `json:"subject"`
	Version     int64     `json:"version"`
	Action      Action    `json:"action"`
	FromVersion int64     `json:"fromVersion,omitempty"` // a rollback: the version copied
	Description string    `json:"description,omitempty"`
	Spec        *Spec     `json:"spec,omitempty"`
	Actor       string    `json:"actor"`
	At          time.Time `json:"at"`
}

// Tenant is a stored tenant.
type Tenant struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Quotas      Quotas    `json:"quotas"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	UpdatedBy   string    `json:"updatedBy"`
}
