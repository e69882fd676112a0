package registry

import (
	"errors"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// Manifest is one parsed manifest of the registry, whatever its kind.
type Manifest struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// Exactly one of these is set, by Kind.
	Model     *Model             `json:"model,omitempty"`
	Algorithm *Algorithm         `json:"algorithm,omitempty"`
	Service   *Service           `json:"service,omitempty"`
	Agent     *manifest.Manifest `json:"agent,omitempty"`
	// Integrity is the manifest's integrity mapping (models, algorithms,
	// services); Artifact is the registry path it is about, when the
	// artifact is in the registry.
	Integrity Integrity `json:"integrity,omitzero"`
	Artifact  string    `json:"artifact,omitempty"`
}

// Integrity is a manifest's claim about its artifact: a SHA-256 and a
// minisign signature of the artifact's bytes.
type Integrity struct {
	SHA256    string `json:"sha256,omitempty"`
	Signature string `json:"signature,omitempty"`
}

// Download says where a model's or service's artifact comes from.
type Download struct {
	URL           string `json:"url"`
	Method        string `json:"method,omitempty"`
	InstallScript string `json:"install_script,omitempty"`
}

// Compat is what an entry needs of the platform.
type Compat struct {
	AgentAPI string   `json:"agent_api,omitempty"`
	OS       []string `json:"os,omitempty"`
	Python   []string `json:"python,omitempty"`
}

// Algorithm is an OMERTAOS algorithm manifest (kind: algorithm).
type Algorithm struct {
	Type        string   `json:"type"`
	Entrypoint  string   `json:"entrypoint"`
	Inputs      []string `json:"inputs,omitempty"`
	Outputs     []string `json:"outputs,omitempty"`
	DependsOn   []string `json:"depends_on,omitempty"`
	Description string   `json:"description,omitempty"`
	Compat      Compat   `json:"compat,omitzero"`
}

// Service is an OMERTAOS service manifest (kind: service).
type Service struct {
	Category              string   `json:"category"`
	Provider              string   `json:"provider,omitempty"`
	License               string   `json:"license,omitempty"`
	Description           string   `json:"description,omitempty"`
	Download              Download `json:"download,omitzero"`
	Compat                Compat   `json:"compat,omitzero"`
	Configurable          bool     `json:"configurable,omitempty"`
	AutoUpdate            bool     `json:"auto_update,omitempty"`
	AdminApprovalRequired bool     `json:"admin_approval_required,omitempty"`
}

const maxListItems = 64

// ParseManifest decodes a manifest of the registry and validates it. kind
// is what the lock or the catalog says the file is; the manifest must say
// the same. subject names the file in the findings. The manifest is
// returned even with findings, as far as it could be read, so that its name
// and integrity can still be reported.
func ParseManifest(subject, kind string, data []byte, lim Limits) (*Manifest, []Finding) {
	lim = lim.withDefaults()
	fs := &findings{subject: subject, kind: kind}
	if kind == KindAgent {
		return parseAgent(fs, data)
	}
	top, ok := parseDoc(fs, data, lim.yaml(lim.ManifestBytes))
	if !ok {
		return nil, fs.list
	}
	o := asObj(fs, "", top)
	m := &Manifest{Kind: kind}
	if k, ok := o.str("kind", true, maxLabel); ok && k != kind {
		fs.invalid("kind", quote(k)+" but the registry lists it as a "+kind)
	}
	m.Name, _ = o.label("name", true)
	fs.name = m.Name
	switch kind {
	case KindModel:
		m.Version, _ = o.str("version", true, maxLabel)
		m.Model = modelFields(o)
	case KindAlgorithm:
		m.Version, _ = o.str("version", false, maxLabel)
		m.Algorithm = algorithmFields(o)
	case KindService:
		m.Version, _ = o.str("version", true, maxLabel)
		m.Service = serviceFields(o)
	default:
		fs.invalid("kind", quote(kind)+" files are not manifests")
	}
	m.Integrity = integrityFields(o)
	m.Artifact = artifactOf(m)
	o.done()
	for i := range fs.list {
		fs.list[i].Name = m.Name
	}
	return m, fs.list
}

// parseAgent reads an agent manifest of this appliance (apiVersion
// omertaos.dev/v1, kind Agent) with the agents' own parser and checks:
// every Problem becomes a finding with its field path.
func parseAgent(fs *findings, data []byte) (*Manifest, []Finding) {
	am, err := manifest.Parse(data)
	var ps manifest.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fs.invalid(p.Path, p.Reason)
		}
		return nil, fs.list
	}
	if err != nil {
		fs.invalid("", errText(err))
		return nil, fs.list
	}
	m := &Manifest{Kind: KindAgent, Name: am.Metadata.ID, Version: am.Metadata.Version, Agent: am}
	fs.name = m.Name
	if img := am.Spec.Image; img != nil && img.Digest != "" {
		if hex, _ := strings.CutPrefix(img.Digest, "sha256:"); allZero(hex) {
			fs.add("spec.image.digest", CodePlaceholderDigest, quote(img.Digest)+" is all zeros, a placeholder; it is never accepted")
		}
	}
	return m, fs.list
}

func integrityFields(o *obj) Integrity {
	var in Integrity
	c := o.child("integrity", false)
	if c == nil {
		return in
	}
	in.SHA256, _ = c.str("sha256", false, maxLabel)
	in.Signature, _ = c.str("signature", false, maxText)
	c.done()
	return in
}

func downloadFields(o *obj, required bool) Download {
	var d Download
	c := o.child("download", required)
	if c == nil {
		return d
	}
	d.URL, _ = c.str("url", true, maxText)
	d.Method, _ = c.label("method", false)
	d.InstallScript, _ = c.str("install_script", false, maxText)
	c.done()
	return d
}

func compatFields(o *obj) Compat {
	var cp Compat
	c := o.child("compat", false)
	if c == nil {
		return cp
	}
	cp.AgentAPI, _ = c.str("agent_api", false, maxLabel)
	cp.OS = c.strs("os", maxListItems)
	cp.Python = c.strs("python", maxListItems)
	c.done()
	return cp
}

func algorithmFields(o *obj) *Algorithm {
	a := &Algorithm{}
	a.Type, _ = o.label("type", true)
	a.Entrypoint, _ = o.str("entrypoint", true, maxText)
	a.Inputs = o.strs("inputs", maxListItems)
	a.Outputs = o.strs("outputs", maxListItems)
	a.DependsOn = o.strs("depends_on", maxListItems)
	a.Description, _ = o.str("description", false, maxText)
	a.Compat = compatFields(o)
	if p := o.child("policies", false); p != nil {
		p.ignore(keys(p.m)...) // free-form; bounded by the parser limits
	}
	return a
}

func serviceFields(o *obj) *Service {
	s := &Service{}
	s.Category, _ = o.label("category", true)
	s.Provider, _ = o.str("provider", false, maxLabel)
	s.License, _ = o.str("license", false, maxLabel)
	s.Description, _ = o.str("description", false, maxText)
	s.Download = downloadFields(o, false)
	s.Compat = compatFields(o)
	s.Configurable, _ = o.boolean("configurable")
	s.AutoUpdate, _ = o.boolean("auto_update")
	s.AdminApprovalRequired, _ = o.boolean("admin_approval_required")
	return s
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// artifactOf is the registry path of a manifest's artifact: a download URL
// that is a plain relative path (no scheme) names a file shipped in the
// registry beside the manifest's directory root. Anything else (https,
// ollama://, file:///opt/...) is fetched from elsewhere and is not checked
// offline.
func artifactOf(m *Manifest) string {
	var url string
	switch {
	case m.Model != nil:
		url = m.Model.Download.URL
	case m.Service != nil:
		url = m.Service.Download.URL
	}
	if url == "" || strings.Contains(url, ":") || checkRelPath(url) != "" {
		return ""
	}
	return url
}
