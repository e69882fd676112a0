package manifest

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// FormatSecret marks a configuration value that is stored apart from the
// rest and never shown: not by the API, not in logs, not in an environment
// listing.
const FormatSecret = "secret"

// Redacted replaces a secret value wherever a configuration is shown.
const Redacted = "(secret)"

// ConfigSchema is a compiled spec.configSchema.
type ConfigSchema struct {
	schema  *jsonschema.Schema
	secrets [][]string // property paths from the top, each one secret
}

// schemaURL is where the compiler files the schema; nothing is ever loaded
// from it or from anywhere else.
const schemaURL = "urn:omertaos:agent-config-schema"

// errNoLoad refuses every external reference: a schema from a manifest must
// not make omertad read a file ("$ref": "file:///etc/shadow") or the network.
var errNoLoad = errors.New("external references are not loaded; the schema must be self-contained")

type noLoader struct{}

func (noLoader) Load(string) (any, error) { return nil, errNoLoad }

// CompileConfigSchema compiles doc (JSON Schema, draft 2020-12 unless its
// $schema says otherwise) and finds its secret properties. path names doc's
// place for problems, e.g. "spec.configSchema".
func CompileConfigSchema(doc map[string]any, path string) (cs *ConfigSchema, ps Problems) {
	if !ps.boundSchema(doc, path) {
		return nil, ps
	}
	secrets := ps.findSecrets(doc, path)
	// The compiler is third-party code fed hostile input; a panic in it
	// must not take omertad down.
	defer func() {
		if r := recover(); r != nil {
			cs, ps = nil, Problems{{Path: path, Code: CodeInvalid, Reason: "the JSON Schema compiler failed on this schema"}}
		}
	}()
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: FormatSecret, Validate: func(any) error { return nil }})
	if err := c.AddResource(schemaURL, doc); err != nil {
		ps.add(path, CodeInvalid, "cannot be used: %s", sanitize(err.Error()))
		return nil, ps
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		ps.add(path, CodeInvalid, "is not a valid JSON Schema: %s", schemaError(err))
		return nil, ps
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return &ConfigSchema{schema: sch, secrets: secrets}, nil
}

// schemaError shortens the compiler's message to one safe line.
func schemaError(err error) string {
	msg := err.Error()
	if errors.Is(err, errNoLoad) {
		return errNoLoad.Error()
	}
	msg = strings.ReplaceAll(msg, schemaURL, "")
	return sanitize(strings.Join(strings.Fields(msg), " "))
}

var printer = message.NewPrinter(language.English)

// Validate checks config against the schema and returns one problem per
// failing value, under path (e.g. "spec.config").
func (cs *ConfigSchema) Validate(config map[string]any, path string) (ps Problems) {
	if n := countNodes(config); n > maxConfigNodes {
		return Problems{{Path: path, Code: CodeRange, Reason: fmt.Sprintf("holds %d values; at most %d", n, maxConfigNodes)}}
	}
	defer func() {
		if r := recover(); r != nil {
			ps = Problems{{Path: path, Code: CodeConfig, Reason: "the JSON Schema validator failed on this configuration"}}
		}
	}()
	err := cs.schema.Validate(toAny(config))
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return Problems{{Path: path, Code: CodeConfig, Reason: sanitize(err.Error())}}
	}
	leaves(ve, func(e *jsonschema.ValidationError) {
		p := path
		for _, k := range e.InstanceLocation {
			p = Key(p, k)
		}
		ps = append(ps, Problem{Path: p, Code: CodeConfig, Reason: sanitize(e.ErrorKind.LocalizedString(printer))})
	})
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
	return ps
}

// Bounds on a configuration and its schema. Validation costs up to the
// product of their sizes; references are refused because a few of them,
// each used twice, make that cost exponential (24 levels took minutes).
const (
	maxSchemaNodes = 1000
	maxConfigNodes = 1000
)

// refKeywords are JSON Schema's references.
var refKeywords = map[string]bool{"$ref": true, "$dynamicRef": true, "$recursiveRef": true}

// boundSchema refuses a schema over maxSchemaNodes or holding a reference
// anywhere (even where it would be data: refusing is simpler than telling
// the two apart, and no real configuration schema needs one).
func (ps *Problems) boundSchema(doc map[string]any, path string) bool {
	if n := countNodes(doc); n > maxSchemaNodes {
		ps.add(path, CodeRange, "holds %d values; at most %d", n, maxSchemaNodes)
		return false
	}
	ok := true
	var walk func(v any, p string)
	walk = func(v any, p string) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range sortedMapKeys(x) {
				if refKeywords[k] {
					ps.add(Key(p, k), CodeInvalid, "references are not supported; write the schema out in full")
					ok = false
					continue
				}
				walk(x[k], Key(p, k))
			}
		case []any:
			for i, e := range x {
				walk(e, Index(p, i))
			}
		}
	}
	walk(doc, path)
	return ok
}

func countNodes(v any) int {
	n := 1
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			n += 1 + countNodes(e) // the key and the value
		}
	case []any:
		for _, e := range x {
			n += countNodes(e)
		}
	}
	return n
}

// toAny gives the validator the map as a plain any, the shape it expects.
func toAny(m map[string]any) any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func leaves(e *jsonschema.ValidationError, f func(*jsonschema.ValidationError)) {
	if len(e.Causes) == 0 {
		f(e)
		return
	}
	for _, c := range e.Causes {
		leaves(c, f)
	}
}

// SecretPaths lists the secret properties as JSON pointers ("/crm_api_key").
func (cs *ConfigSchema) SecretPaths() []string {
	out := make([]string, len(cs.secrets))
	for i, s := range cs.secrets {
		out[i] = pointer(s)
	}
	return out
}

func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}

// Split separates config into what may be shown and stored with the agent,
// and its secret values keyed by JSON pointer, to be stored apart. config
// itself is not changed.
func (cs *ConfigSchema) Split(config map[string]any) (public map[string]any, secrets map[string]any) {
	public = CopyConfig(config)
	secrets = map[string]any{}
	for _, s := range cs.secrets {
		if v, ok := take(public, s); ok {
			secrets[pointer(s)] = v
		}
	}
	return public, secrets
}

// Redact returns a copy of config with every secret value replaced by
// Redacted, for showing.
func (cs *ConfigSchema) Redact(config map[string]any) map[string]any {
	out, secrets := cs.Split(config)
	for _, s := range cs.secrets {
		if _, ok := secrets[pointer(s)]; ok {
			put(out, s, Redacted)
		}
	}
	return out
}

// Merge puts secrets (from Split) back into a copy of public.
func (cs *ConfigSchema) Merge(public, secrets map[string]any) map[string]any {
	out := CopyConfig(public)
	if out == nil {
		out = map[string]any{}
	}
	for _, s := range cs.secrets {
		if v, ok := secrets[pointer(s)]; ok {
			put(out, s, v)
		}
	}
	return out
}

func take(m map[string]any, path []string) (any, bool) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	last := path[len(path)-1]
	v, ok := m[last]
	delete(m, last)
	return v, ok
}

func put(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// CopyConfig copies a decoded JSON object (a configuration, a schema) all
// the way down, so that the copy can be changed without touching m.
func CopyConfig(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = CopyValue(v)
	}
	return out
}

// CopyValue copies one decoded JSON value the way CopyConfig does.
func CopyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return CopyConfig(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = CopyValue(e)
		}
		return out
	}
	return v
}

// checkConfig compiles spec.configSchema, validates spec.config against it
// when both are given, and refuses a config without a schema (nothing could
// say which values are secret) and text a terminal would act on.
func (ps *Problems) checkConfig(s *Spec) {
	ps.checkConfigText("spec.config", s.Config)
	if s.ConfigSchema == nil {
		if s.Config != nil {
			ps.add("spec.config", CodeRequired, "needs spec.configSchema, which says what it may hold and which values are secret")
		}
		return
	}
	cs, cps := CompileConfigSchema(s.ConfigSchema, "spec.configSchema")
	*ps = append(*ps, cps...)
	if cs == nil || s.Config == nil {
		return
	}
	*ps = append(*ps, cs.Validate(s.Config, "spec.config")...)
}

// checkConfigText refuses controls and bidi overrides in configuration
// strings (newlines and tabs stay), and in keys, since both are shown.
func (ps *Problems) checkConfigText(path string, v any) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedMapKeys(x) {
			p := Key(path, k)
			if ps.checkText(p, k, textRule{max: 256, required: true}) {
				ps.checkConfigText(p, x[k])
			}
		}
	case []any:
		for i, e := range x {
			ps.checkConfigText(Index(path, i), e)
		}
	case string:
		ps.checkText(path, x, textRule{max: 64 << 10, lines: true})
	}
}

func sortedMapKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// schemaKeywords hold subschemas; a secret found under any of them (other
// than a plain chain of "properties") cannot be split out reliably.
var subschemaMaps = map[string]bool{"$defs": true, "definitions": true, "patternProperties": true, "dependentSchemas": true}
var subschemaLists = map[string]bool{"allOf": true, "anyOf": true, "oneOf": true, "prefixItems": true, "items": true}
var subschemaOne = map[string]bool{"not": true, "if": true, "then": true, "else": true, "items": true, "additionalProperties": true,
	"contains": true, "propertyNames": true, "unevaluatedProperties": true, "unevaluatedItems": true, "additionalItems": true}

// findSecrets returns the property paths marked format: secret that are
// reached from the top through "properties" alone. A secret anywhere else
// (under items, allOf, $defs, ...) is refused: Split could miss it, and a
// secret that may leak is worse than a schema that must be rewritten.
func (ps *Problems) findSecrets(doc map[string]any, path string) [][]string {
	var out [][]string
	var walk func(s map[string]any, p string, props []string, direct bool)
	walk = func(s map[string]any, p string, props []string, direct bool) {
		if f, _ := s["format"].(string); f == FormatSecret {
			switch {
			case !direct:
				ps.add(Key(p, "format"), CodeInvalid, "format secret is only supported on a property reached from the top through properties, so that its value can be stored apart")
			case len(props) == 0:
				ps.add(Key(p, "format"), CodeInvalid, "the whole configuration cannot be secret; mark its properties")
			default:
				if _, ok := s["default"]; ok {
					ps.add(Key(p, "default"), CodeInvalid, "a secret property cannot have a default: the schema is shown")
				}
				out = append(out, append([]string(nil), props...))
			}
		}
		for _, k := range sortedMapKeys(s) {
			v := s[k]
			kp := Key(p, k)
			switch {
			case k == "properties":
				if m, ok := v.(map[string]any); ok {
					for _, name := range sortedMapKeys(m) {
						if sub, ok := m[name].(map[string]any); ok {
							walk(sub, Key(kp, name), append(props, name), direct)
						}
					}
				}
			case subschemaMaps[k]:
				if m, ok := v.(map[string]any); ok {
					for _, name := range sortedMapKeys(m) {
						if sub, ok := m[name].(map[string]any); ok {
							walk(sub, Key(kp, name), props, false)
						}
					}
				}
			case subschemaLists[k] || subschemaOne[k]:
				if l, ok := v.([]any); ok {
					for i, e := range l {
						if sub, ok := e.(map[string]any); ok {
							walk(sub, Index(kp, i), props, false)
						}
					}
				} else if sub, ok := v.(map[string]any); ok {
					walk(sub, kp, props, false)
				}
			}
		}
	}
	walk(doc, path, nil, true)
	return out
}
