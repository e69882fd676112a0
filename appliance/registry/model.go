package registry

import (
	"regexp"
)

// Model is a model manifest (kind: model), OMERTAOS's format, which this
// appliance uses for its own models too.
type Model struct {
	Provider              string         `json:"provider"`
	ReleaseDate           string         `json:"release_date,omitempty"`
	Modality              []string       `json:"modality,omitempty"`
	License               string         `json:"license,omitempty"`
	Access                string         `json:"access,omitempty"`
	Description           string         `json:"description,omitempty"`
	Download              Download       `json:"download"`
	Resources             ModelResources `json:"resources,omitzero"`
	Configurable          bool           `json:"configurable,omitempty"`
	Compat                Compat         `json:"compat,omitzero"`
	AutoUpdate            bool           `json:"auto_update,omitempty"`
	AdminApprovalRequired bool           `json:"admin_approval_required,omitempty"`
}

// ModelResources is what running the model needs.
type ModelResources struct {
	// VRAMGB is the GPU memory the model needs, in gigabytes (10^9
	// bytes, as the field's name says); HasVRAM is false when the manifest
	// does not say.
	VRAMGB        float64 `json:"vram_gb,omitempty"`
	HasVRAM       bool    `json:"-"`
	ContextTokens int64   `json:"context_tokens,omitempty"`
}

// Remote reports whether the model runs at a provider's API rather than on
// this machine's GPUs, so that its vram_gb says nothing about them.
func (m *Model) Remote() bool {
	return m.Download.Method == "api" || m.Access == "api_key"
}

// maxVRAMGB bounds vram_gb: larger than any node holds, small enough that
// the byte count cannot overflow.
const maxVRAMGB = 1 << 20

var dateRE = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$`)

// modelFields reads the model-specific fields. Required, as upstream's
// update_catalog.py requires them: kind, name, provider, version,
// download (checked by the caller or here).
func modelFields(o *obj) *Model {
	m := &Model{}
	m.Provider, _ = o.label("provider", true)
	if d, ok := o.str("release_date", false, 32); ok && d != "" && !dateRE.MatchString(d) {
		o.fs.invalid("release_date", quote(d)+" is not a date (YYYY-MM-DD)")
	} else {
		m.ReleaseDate = d
	}
	m.Modality = o.strs("modality", maxListItems)
	m.License, _ = o.str("license", false, maxLabel)
	m.Access, _ = o.label("access", false)
	m.Description, _ = o.str("description", false, maxText)
	m.Download = downloadFields(o, true)
	if r := o.child("resources", false); r != nil {
		m.Resources.VRAMGB, m.Resources.HasVRAM = r.number("vram_gb", false, 0, maxVRAMGB)
		m.Resources.ContextTokens, _ = r.integer("context_tokens", false, 0, 1<<40)
		r.done()
	}
	m.Configurable, _ = o.boolean("configurable")
	m.Compat = compatFields(o)
	m.AutoUpdate, _ = o.boolean("auto_update")
	m.AdminApprovalRequired, _ = o.boolean("admin_approval_required")
	return m
}

// ParseModel decodes and validates one model manifest, as the API would
// for an uploaded one; subject names it in the findings.
func ParseModel(subject string, data []byte) (*Manifest, []Finding) {
	return ParseManifest(subject, KindModel, data, Limits{})
}
