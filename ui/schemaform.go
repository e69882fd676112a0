package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// A deploy (or patch) form is generated from the entry's configSchema:
// one field per top-level property, with the HTML attributes that let the
// browser check what it can (required, min, max, minlength, maxlength,
// pattern, type). omertad validates the whole configuration again against
// the schema itself; the form is a convenience, not the check.

// Bounds of a generated form.
const (
	maxFormFields  = 100
	maxFieldValue  = 64 << 10
	maxEnumOptions = 200
	fieldPrefix    = "cfg."
)

// formField is one input of a generated form.
type formField struct {
	Name     string // the property
	Input    string // form field name: fieldPrefix + Name
	Label    string
	Help     string
	Kind     string // "input", "checkbox", "select", "json"
	Type     string // the input's type: text, password, number, email, url
	JSONType string // string, integer, number, boolean, or "" for any JSON
	Required bool
	Secret   bool
	Min      string
	Max      string
	Step     string
	MinLen   string
	MaxLen   string
	Pattern  string
	Options  []option
	Value    string
	Checked  bool
	Problem  string
}

type option struct {
	Value    string // the JSON encoding of the enum value
	Label    string
	Selected bool
}

// schemaFields builds the fields of schema's top-level properties, filled
// from values (the current configuration, or the schema's defaults when
// values is nil). A secret is never filled in.
func schemaFields(schema map[string]any, values map[string]any, forPatch bool) []formField {
	props, _ := schema["properties"].(map[string]any)
	required := map[string]bool{}
	if rs, ok := schema["required"].([]any); ok {
		for _, r := range rs {
			if s, ok := r.(string); ok {
				required[s] = true
			}
		}
	}
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > maxFormFields {
		names = names[:maxFormFields]
	}
	fields := make([]formField, 0, len(names))
	for _, n := range names {
		p, _ := props[n].(map[string]any)
		f := newField(n, p)
		// A patch leaves out what is not changed, so nothing is required
		// there; a blank secret keeps the one set.
		f.Required = required[n] && !forPatch && f.Kind != "checkbox"
		v, has := values[n]
		if values == nil {
			v, has = p["default"]
		}
		if has && !f.Secret {
			f.setValue(v)
		}
		fields = append(fields, f)
	}
	return fields
}

func newField(name string, p map[string]any) formField {
	f := formField{Name: name, Input: fieldPrefix + name, Label: name, Kind: "input", Type: "text"}
	if t, ok := p["title"].(string); ok && t != "" {
		f.Label = t
	}
	f.Help, _ = p["description"].(string)
	typ, _ := p["type"].(string)
	f.JSONType = typ
	format, _ := p["format"].(string)
	if enum, ok := p["enum"].([]any); ok && len(enum) > 0 && len(enum) <= maxEnumOptions {
		f.Kind = "select"
		for _, e := range enum {
			b, _ := json.Marshal(e)
			f.Options = append(f.Options, option{Value: string(b), Label: jsonValue(e)})
		}
		return f
	}
	switch typ {
	case "string":
		f.MinLen, f.MaxLen = intAttr(p["minLength"]), intAttr(p["maxLength"])
		if pat, ok := p["pattern"].(string); ok && pat != "" {
			f.Pattern = htmlPattern(pat)
		}
		switch format {
		case "secret":
			f.Type, f.Secret = "password", true
		case "email":
			f.Type = "email"
		case "uri", "url":
			f.Type = "url"
		}
	case "integer", "number":
		f.Type = "number"
		f.Min, f.Max = numAttr(p["minimum"]), numAttr(p["maximum"])
		f.Step = "any"
		if typ == "integer" {
			f.Step = "1"
		}
	case "boolean":
		f.Kind = "checkbox"
	default:
		f.Kind, f.JSONType = "json", ""
	}
	if format == "secret" {
		f.Secret = true
		if f.Kind == "input" {
			f.Type = "password"
		}
	}
	return f
}

// htmlPattern turns a JSON Schema pattern (a search: it may match
// anywhere) into an HTML pattern attribute (which must match the whole
// value).
func htmlPattern(p string) string { return `[\s\S]*(?:` + p + `)[\s\S]*` }

func intAttr(v any) string {
	if f, ok := v.(float64); ok && f >= 0 && f == math.Trunc(f) && f < 1e9 {
		return strconv.FormatInt(int64(f), 10)
	}
	return ""
}

func numAttr(v any) string {
	if f, ok := v.(float64); ok && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return ""
}

func (f *formField) setValue(v any) {
	switch f.Kind {
	case "checkbox":
		b, _ := v.(bool)
		f.Checked = b
	case "select":
		enc, _ := json.Marshal(v)
		for i := range f.Options {
			f.Options[i].Selected = f.Options[i].Value == string(enc)
		}
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err == nil {
			f.Value = string(b)
		}
	default:
		f.Value = jsonValue(v)
	}
}

// readForm reads the fields back from a submitted form: values typed as
// the schema says, secrets apart. get returns a form value; has reports
// whether the field was sent at all. A blank optional field is left out;
// with forPatch, so is a blank secret (it keeps its value). problems maps
// a property to what is wrong with its value.
func readForm(fields []formField, get func(string) string, forPatch bool) (config, secrets map[string]any, problems map[string]string) {
	config, secrets, problems = map[string]any{}, map[string]any{}, map[string]string{}
	for i := range fields {
		f := &fields[i]
		raw := get(f.Input)
		if len(raw) > maxFieldValue {
			problems[f.Name] = "is longer than 64 KiB"
			continue
		}
		if f.Kind == "checkbox" {
			f.Checked = raw != ""
			config[f.Name] = f.Checked
			continue
		}
		if !f.Secret {
			f.Value = raw
		}
		if strings.TrimSpace(raw) == "" && f.JSONType != "string" || raw == "" {
			if f.Required && !forPatch {
				problems[f.Name] = "is required"
			}
			continue
		}
		v, err := f.parse(raw)
		if err != nil {
			problems[f.Name] = err.Error()
			continue
		}
		if f.Secret {
			secrets[f.Name] = v
		} else {
			config[f.Name] = v
		}
	}
	return config, secrets, problems
}

func (f *formField) parse(raw string) (any, error) {
	switch {
	case f.Kind == "select":
		for i := range f.Options {
			f.Options[i].Selected = f.Options[i].Value == raw
		}
		return decodeJSON(raw, "is not one of the choices")
	case f.Kind == "json":
		return decodeJSON(raw, "is not valid JSON")
	case f.JSONType == "integer":
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("is not a whole number")
		}
		return n, nil
	case f.JSONType == "number":
		n, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
			return nil, fmt.Errorf("is not a number")
		}
		return n, nil
	}
	return raw, nil
}

// decodeJSON decodes one JSON value, numbers kept exact.
func decodeJSON(raw, why string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s", why)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: more than one value", why)
	}
	return v, nil
}

// attachProblems puts omertad's problems (paths such as "config.title",
// "/title" or "spec.config.title") beside their fields; the rest are
// returned to be shown above the form.
func attachProblems(fields []formField, local map[string]string, remote []problemView) []problemView {
	byName := map[string]*formField{}
	for i := range fields {
		byName[fields[i].Name] = &fields[i]
		if m, ok := local[fields[i].Name]; ok {
			fields[i].Problem = m
		}
	}
	var rest []problemView
	for _, p := range remote {
		name := p.Path
		if i := strings.LastIndexAny(name, "./"); i >= 0 {
			name = name[i+1:]
		}
		if f, ok := byName[name]; ok && name != "" {
			f.Problem = p.Reason
			continue
		}
		rest = append(rest, p)
	}
	return rest
}

type problemView struct {
	Path   string
	Reason string
}

// formGetter reads a form's fields from a request.
func formGetter(c interface {
	FormValue(key string, def ...string) string
}) func(string) string {
	return func(k string) string { return c.FormValue(k) }
}
