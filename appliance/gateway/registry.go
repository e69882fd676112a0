package gateway

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/safeyaml"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Bounds of a model registry file.
const (
	maxRegistryBytes  = 1 << 20
	maxBackends       = 256
	maxModels         = 1024
	maxRoute          = 8
	maxTimeout        = 10 * time.Minute
	defaultTimeout    = 60 * time.Second
	maxPricePer1K     = 1000.0 // USD per 1000 tokens; no model costs more
	defaultEstimate   = 1024   // completion tokens assumed when a request gives no max_tokens
	maxEstimate       = 1 << 20
	maxCredentialName = 128
)

// Backend kinds.
const (
	KindLocal = "local" // on the appliance or its LAN: may see the agents' data
	KindCloud = "cloud" // off the appliance: only for agents whose policy allows cloud
)

var (
	backendNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	modelNameRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$`)
	secretNameRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
)

// RegistryFile is the model registry as written (models.yaml): the
// backends and, for each model name agents use, the ordered backends that
// serve it. The first target that is allowed, healthy and within budget
// answers; the others are fallbacks.
//
//	backends:
//	  - {name: echo, url: "http://10.89.0.2:8080/v1", kind: local, timeout: 30s}
//	  - {name: openai, url: "https://api.openai.com/v1", kind: cloud, credential: openai-key}
//	models:
//	  - name: chat
//	    estimate_completion_tokens: 512
//	    route:
//	      - {backend: echo, model: local-echo}
//	      - {backend: openai, model: gpt-4o-mini, prompt_per_1k_usd: 0.00015, completion_per_1k_usd: 0.0006}
type RegistryFile struct {
	Backends []BackendFile `yaml:"backends"`
	Models   []ModelFile   `yaml:"models"`
}

// BackendFile is one OpenAI-compatible server.
type BackendFile struct {
	Name       string        `yaml:"name"`
	URL        string        `yaml:"url"`        // base URL, up to and including /v1
	Kind       string        `yaml:"kind"`       // local or cloud
	Credential string        `yaml:"credential"` // secret name; empty: no Authorization
	Timeout    time.Duration `yaml:"timeout"`    // to the whole answer, or to a stream's first byte
}

// ModelFile is one model name and its route.
type ModelFile struct {
	Name     string       `yaml:"name"`
	Estimate int          `yaml:"estimate_completion_tokens"`
	Route    []TargetFile `yaml:"route"`
}

// TargetFile is one backend serving a model, at its prices.
type TargetFile struct {
	Backend       string        `yaml:"backend"`
	Model         string        `yaml:"model"` // the backend's name for it; empty: the model's name
	PromptPer1K   float64       `yaml:"prompt_per_1k_usd"`
	CompletionPer float64       `yaml:"completion_per_1k_usd"`
	Timeout       time.Duration `yaml:"timeout"` // overrides the backend's
}

// Registry is a checked model registry, read-only once built.
type Registry struct {
	backends map[string]*Backend
	models   map[string]*Model
	order    []string // model names as listed
}

// Backend is a checked backend.
type Backend struct {
	Name       string
	URL        string // without a trailing slash
	Kind       string
	Credential string
	Timeout    time.Duration
}

// Model is a checked model with its route.
type Model struct {
	Name     string
	Estimate int64
	Route    []Target
	// Disabled, when not empty, is why the model may not be called (its
	// manifest did not verify, it does not fit this machine's GPUs): the
	// gateway refuses it with this reason (403 model_not_enabled) and
	// leaves it out of /v1/models.
	Disabled string
}

// Target is one step of a route. Prices are nano-USD per 1000 tokens, so
// that sums are exact.
type Target struct {
	Backend          *Backend
	Model            string
	PromptNano1K     int64
	CompletionNano1K int64
	Timeout          time.Duration
}

// Cloud reports whether the target leaves the appliance.
func (t Target) Cloud() bool { return t.Backend.Kind == KindCloud }

// Model returns the model named name, or nil.
func (r *Registry) Model(name string) *Model { return r.models[name] }

// Models returns the model names in the order the file lists them.
func (r *Registry) Models() []string { return append([]string(nil), r.order...) }

// WithDisabled returns a copy of r in which each model named in reasons
// is disabled with its reason, and every other model enabled: enabling is
// decided outside (omertad verifies each model's manifest), the registry
// only carries the answer. Names r does not hold are ignored.
func (r *Registry) WithDisabled(reasons map[string]string) *Registry {
	c := &Registry{backends: r.backends, models: make(map[string]*Model, len(r.models)), order: r.order}
	for name, m := range r.models {
		cm := *m
		cm.Disabled = reasons[name]
		if _, ok := reasons[name]; ok && cm.Disabled == "" {
			cm.Disabled = "not enabled"
		}
		c.models[name] = &cm
	}
	return c
}

// Backends returns the backend names.
func (r *Registry) Backends() []string {
	out := make([]string, 0, len(r.backends))
	for n := range r.backends {
		out = append(out, n)
	}
	return out
}

// LoadRegistry reads and checks the registry file at path (a regular file
// of at most 1 MiB).
func LoadRegistry(path string) (*Registry, error) {
	data, err := safeio.ReadFile(path, maxRegistryBytes)
	if err != nil {
		return nil, fmt.Errorf("reading model registry: %w", err)
	}
	return ParseRegistry(data, terminal.Escape(path))
}

// ParseRegistry decodes (strictly: an unknown field is an error) and
// checks a registry; source names it in errors. Every problem found is
// reported at once, each naming its field.
func ParseRegistry(data []byte, source string) (*Registry, error) {
	var f RegistryFile
	lim := safeyaml.Limits{MaxBytes: maxRegistryBytes, MaxDepth: 8, MaxNodes: 100000, MaxSeqLen: maxModels, MaxMapLen: 16}
	if err := safeyaml.Unmarshal(data, &f, lim); err != nil {
		return nil, fmt.Errorf("model registry %s: %w", source, err)
	}
	return NewRegistry(f, source)
}

// NewRegistry checks f and builds the Registry.
func NewRegistry(f RegistryFile, source string) (*Registry, error) {
	c := &checker{}
	r := &Registry{backends: map[string]*Backend{}, models: map[string]*Model{}}
	if len(f.Backends) > maxBackends {
		c.add("backends", "%d backends, at most %d", len(f.Backends), maxBackends)
	}
	if len(f.Models) > maxModels {
		c.add("models", "%d models, at most %d", len(f.Models), maxModels)
	}
	if len(c.problems) > 0 {
		return nil, &InvalidError{Source: source, Problems: c.problems}
	}
	seen := map[string]bool{}
	for i, b := range f.Backends {
		if seen[b.Name] {
			c.add(fmt.Sprintf("backends[%d].name", i), "%s is listed twice", quote(b.Name))
			continue
		}
		seen[b.Name] = true
		if be := c.backend(fmt.Sprintf("backends[%d]", i), b); be != nil {
			r.backends[be.Name] = be
		}
	}
	seen = map[string]bool{}
	for i, m := range f.Models {
		field := fmt.Sprintf("models[%d]", i)
		if seen[m.Name] {
			c.add(field+".name", "%s is listed twice", quote(m.Name))
			continue
		}
		seen[m.Name] = true
		if mo := c.model(field, m, r.backends); mo != nil {
			r.models[mo.Name] = mo
			r.order = append(r.order, mo.Name)
		}
	}
	if len(c.problems) > 0 {
		return nil, &InvalidError{Source: source, Problems: c.problems}
	}
	return r, nil
}

type checker struct{ problems []Problem }

func (c *checker) add(field, format string, a ...any) {
	c.problems = append(c.problems, Problem{Field: field, Reason: fmt.Sprintf(format, a...)})
}

func quote(s string) string {
	if len(s) > 130 {
		s = s[:128] + "..."
	}
	return `"` + terminal.Escape(s) + `"`
}

func (c *checker) backend(field string, b BackendFile) *Backend {
	n := len(c.problems)
	if !backendNameRe.MatchString(b.Name) {
		c.add(field+".name", "%s is not a backend name (a-z, 0-9, ._- , at most 63)", quote(b.Name))
	}
	base := c.baseURL(field+".url", b.URL, b.Kind)
	if b.Kind != KindLocal && b.Kind != KindCloud {
		c.add(field+".kind", "%s is not local or cloud", quote(b.Kind))
	}
	if b.Credential != "" && !secretNameRe.MatchString(b.Credential) {
		c.add(field+".credential", "%s is not a secret name", quote(b.Credential))
	}
	timeout := c.timeout(field+".timeout", b.Timeout, defaultTimeout)
	if len(c.problems) > n {
		return nil
	}
	return &Backend{Name: b.Name, URL: base, Kind: b.Kind, Credential: b.Credential, Timeout: timeout}
}

// baseURL accepts http (local backends only: a credential or an agent's
// prompt must not cross the internet in clear) and https URLs with a host
// and nothing that would be lost or leak: no user info, query or fragment.
func (c *checker) baseURL(field, s, kind string) string {
	u, err := url.Parse(s)
	switch {
	case s == "":
		c.add(field, "is required")
	case err != nil || u.Host == "" || u.Opaque != "":
		c.add(field, "%s is not an absolute http or https URL", quote(s))
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(s, "#") || strings.Contains(s, "?"):
		// Only the parts that cannot be a credential are quoted.
		c.add(field, "%s may not carry user info, a query or a fragment", quote(u.Scheme+"://"+u.Host+u.Path))
	case u.Scheme != "https" && u.Scheme != "http":
		c.add(field, "%s is not an http or https URL", quote(s))
	case u.Scheme == "http" && kind != KindLocal:
		c.add(field, "%s: a cloud backend needs https", quote(s))
	default:
		return strings.TrimRight(s, "/")
	}
	return ""
}

func (c *checker) timeout(field string, d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < time.Millisecond || d > maxTimeout:
		c.add(field, "%s is not from 1ms to %s", d, maxTimeout)
	}
	return d
}

func (c *checker) model(field string, m ModelFile, backends map[string]*Backend) *Model {
	n := len(c.problems)
	if !modelNameRe.MatchString(m.Name) {
		c.add(field+".name", "%s is not a model name (letters, digits, ._:/@+- , at most 128)", quote(m.Name))
	}
	est := int64(m.Estimate)
	switch {
	case m.Estimate == 0:
		est = defaultEstimate
	case m.Estimate < 0 || m.Estimate > maxEstimate:
		c.add(field+".estimate_completion_tokens", "%d is not from 1 to %d", m.Estimate, maxEstimate)
	}
	if len(m.Route) == 0 || len(m.Route) > maxRoute {
		c.add(field+".route", "%d targets, from 1 to %d allowed", len(m.Route), maxRoute)
	}
	mo := &Model{Name: m.Name, Estimate: est}
	seen := map[string]bool{}
	for j, t := range m.Route {
		tf := fmt.Sprintf("%s.route[%d]", field, j)
		if seen[t.Backend] {
			c.add(tf+".backend", "%s is in the route twice", quote(t.Backend))
			continue
		}
		seen[t.Backend] = true
		if tg, ok := c.target(tf, t, m.Name, backends); ok {
			mo.Route = append(mo.Route, tg)
		}
	}
	if len(c.problems) > n {
		return nil
	}
	return mo
}

func (c *checker) target(field string, t TargetFile, name string, backends map[string]*Backend) (Target, bool) {
	n := len(c.problems)
	be := backends[t.Backend]
	if be == nil {
		c.add(field+".backend", "%s is not a backend listed in backends", quote(t.Backend))
	}
	model := t.Model
	if model == "" {
		model = name
	} else if !modelNameRe.MatchString(model) {
		c.add(field+".model", "%s is not a model name", quote(model))
	}
	p := c.price(field+".prompt_per_1k_usd", t.PromptPer1K)
	q := c.price(field+".completion_per_1k_usd", t.CompletionPer)
	var timeout time.Duration
	if be != nil {
		timeout = c.timeout(field+".timeout", t.Timeout, be.Timeout)
	}
	if len(c.problems) > n {
		return Target{}, false
	}
	return Target{Backend: be, Model: model, PromptNano1K: p, CompletionNano1K: q, Timeout: timeout}, true
}

func (c *checker) price(field string, usd float64) int64 {
	if math.IsNaN(usd) || usd < 0 || usd > maxPricePer1K {
		c.add(field, "%v is not a price from 0 to %v USD per 1000 tokens", usd, maxPricePer1K)
		return 0
	}
	return usdToNano(usd)
}

// usdToNano converts dollars to nano-dollars, saturating (a budget of
// more than 9 billion dollars is no budget).
func usdToNano(usd float64) int64 {
	if math.IsNaN(usd) || usd <= 0 {
		return 0
	}
	if usd >= 9e9 {
		return math.MaxInt64
	}
	return int64(math.Round(usd * 1e9))
}

// nanoToUSD is the other way, for metrics and answers.
func nanoToUSD(n int64) float64 { return float64(n) / 1e9 }
