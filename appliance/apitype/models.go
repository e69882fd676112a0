package apitype

import "time"

// ModelList is the body of GET /api/v1/models: the models the model
// gateway routes (the site configuration's gateway.backends) and whether
// omertad enabled each. A model is enabled only once a configured registry
// lists its manifest, the manifest matches the registry's lock and is
// valid, and what it needs of the GPUs fits this machine's; unsigned is
// decided by the profile, as for agent images.
type ModelList struct {
	// Gateway is false when the model gateway does not run (gateway
	// disabled, or it could not start): Models is then empty.
	Gateway bool `json:"gateway"`
	// CheckedAt is when the models were verified (at omertad's start,
	// once the GPUs were known); nil before.
	CheckedAt *time.Time    `json:"checked_at,omitempty"`
	Models    []ModelStatus `json:"models"`
}

// ModelStatus is one model's verification.
type ModelStatus struct {
	Name string `json:"name"`
	// Backends are the backends the gateway routes the model to, in order.
	Backends []string `json:"backends"`
	Enabled  bool     `json:"enabled"`
	// Code is the registry's deciding finding: "ok", "unsigned" (enabled
	// with a warning outside the enterprise profile), or the failure
	// ("not-found": no registry lists it, "insufficient-vram",
	// "digest-mismatch", ...).
	Code   string `json:"code"`
	Reason string `json:"reason"`
	// Signed: a registry whose lock verified against a trusted key lists
	// the model; Registry and KeyID say which.
	Signed   bool     `json:"signed"`
	Registry string   `json:"registry,omitempty"`
	KeyID    string   `json:"key_id,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Provider, Version and VRAMGB are from the manifest, when one was
	// found and read.
	Provider string   `json:"provider,omitempty"`
	Version  string   `json:"version,omitempty"`
	VRAMGB   *float64 `json:"vram_gb,omitempty"`
}
