// Package apitype holds the request and response bodies of omertad's
// internal API, shared by the server (appliance/api), the typed client
// (appliance/apiclient), the CLI, the console and the tests.
//
// It imports no HTTP framework, no store and nothing that links native
// libraries: the console, which must not hold the database or NVML, decodes
// these types too. Domain types that live in heavy packages (probe links
// NVML) are mirrored here as plain structs; a test in appliance/api keeps the
// mirrors in step with the originals.
package apitype

import (
	"encoding/json"
	"time"

	"github.com/omertaos/omertaos/appliance/version"
)

// Error is the body of every non-2xx answer except an unhealthy /healthz.
type Error struct {
	Error string `json:"error"`
}

// Health is the body of GET /healthz: 200 with Status "ok" while the store
// answers, 503 with Status "unhealthy" and the store's error otherwise.
//
// AuditChain is the state of the audit chain as verified when omertad
// started ("intact", "empty", "broken", "truncated", "restarted"); a bad
// chain does not make omertad unhealthy (it keeps serving, the evidence is
// kept), but it is never hidden: see GET /api/v1/audit/status.
type Health struct {
	Status     string `json:"status"`
	Store      string `json:"store"`
	AuditChain string `json:"audit_chain,omitempty"`
}

// Health statuses.
const (
	HealthOK        = "ok"
	HealthUnhealthy = "unhealthy"
)

// Version is the body of GET /api/v1/version.
type Version = version.Info

// Peer is the body of GET /api/v1/whoami: the calling process as the kernel
// reports it through SO_PEERCRED.
type Peer struct {
	PID uint32 `json:"pid"`
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// AuditRecord is one element of GET /api/v1/audit: a record of the
// append-only, hash-chained audit log.
type AuditRecord struct {
	Seq      int64           `json:"seq"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Target   string          `json:"target"`
	Detail   json.RawMessage `json:"detail"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// AuditStatus is the body of GET /api/v1/audit/status: the audit chain as
// omertad verified it at start. It is not re-verified per request, since a
// walk of the whole chain is too costly to hand to every caller.
type AuditStatus struct {
	// State is "intact", "empty", "broken", "truncated" or "restarted".
	State      string    `json:"state"`
	Records    int64     `json:"records"`
	HeadSeq    int64     `json:"head_seq"`
	HeadHash   string    `json:"head_hash"`
	AnchorSeq  int64     `json:"anchor_seq"`
	AnchorHash string    `json:"anchor_hash"`
	Problem    string    `json:"problem,omitempty"`
	CheckedAt  time.Time `json:"checked_at"`
}

// Audit chain states that an operator must be told about; "intact" and
// "empty" are the healthy ones.
const (
	ChainIntact    = "intact"
	ChainEmpty     = "empty"
	ChainBroken    = "broken"
	ChainTruncated = "truncated"
	ChainRestarted = "restarted"
)

// Verdict mirrors probe.Verdict: how the probed machine fares against a
// profile.
type Verdict struct {
	Profile string  `json:"profile"`
	Status  string  `json:"status"` // "pass", "warn" or "fail"
	Checks  []Check `json:"checks"`
}

// Check mirrors probe.Check: one line of a verdict.
type Check struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Measured string `json:"measured"`
	Required string `json:"required"`
}

// ProbeView is the body of GET /api/v1/probe: the latest stored probe and
// its verdict against the configured profile. Result is probe.Result's JSON
// (schema in its schema_version field), passed through undecoded: it is
// large, and only the console's hardware page needs its detail.
type ProbeView struct {
	ProbeID    int64           `json:"probe_id"`
	At         time.Time       `json:"at"`
	BaselineID int64           `json:"baseline_id"`
	Verdict    Verdict         `json:"verdict"`
	Result     json.RawMessage `json:"result"`
}

// DriftEvent mirrors probe.StoredDrift: one way the machine came to differ
// from its baseline, as first seen in probe ProbeID.
type DriftEvent struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	ProbeID    int64     `json:"probe_id"`
	BaselineID int64     `json:"baseline_id"`
	Kind       string    `json:"kind"`
	Subject    string    `json:"subject"`
	Before     string    `json:"before"`
	After      string    `json:"after"`
	Message    string    `json:"message"`
}

// DriftView is the body of GET /api/v1/probe/drift: events, newest first.
type DriftView struct {
	Events []DriftEvent `json:"events"`
}

// Query limits shared by server and client.
const (
	AuditLimitDefault = 100
	DriftLimitDefault = 100
	MaxListLimit      = 1000
	// MaxTaskWait bounds ?wait= of POST /agents/{id}/tasks.
	MaxTaskWait = 10 * time.Minute
)
