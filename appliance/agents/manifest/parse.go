package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/goccy/go-yaml"
	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// Parse decodes one manifest (YAML or JSON), checks it and returns it
// normalised (see Check). On failure the error is Problems: every refusal,
// each with its field path and reason.
func Parse(data []byte) (*Manifest, error) {
	tree, err := ParseTree(data, Limits())
	if err != nil {
		return nil, Problems{SyntaxProblem(err)}
	}
	return FromTree(tree)
}

// SyntaxProblem turns a ParseTree error into a Problem, keeping the field
// and position safeyaml found.
func SyntaxProblem(err error) Problem {
	var ye *safeyaml.Error
	if errors.As(err, &ye) {
		reason := ye.Reason
		if ye.HasPosition() {
			reason = fmt.Sprintf("line %d, column %d: %s", ye.Line, ye.Column, reason)
		}
		return Problem{Path: ye.Field, Code: CodeSyntax, Reason: reason}
	}
	return Problem{Code: CodeSyntax, Reason: sanitize(err.Error())}
}

// FromTree decodes a parsed document (see ParseTree) as a manifest and
// checks it, as Parse does.
func FromTree(tree any) (*Manifest, error) {
	top, ok := tree.(map[string]any)
	if !ok {
		return nil, Problems{{Code: CodeType, Reason: fmt.Sprintf("a manifest must be a mapping, not %s", kindOf(tree))}}
	}
	// A document in another format would otherwise drown in unknown-field
	// errors; say what it is instead.
	if v, k := top["apiVersion"], top["kind"]; v != APIVersion || k != Kind {
		return nil, wrongFormat(v, k)
	}
	var m Manifest
	d := decoder{}
	d.decode("", top, reflect.ValueOf(&m).Elem())
	ps := d.probs
	for _, p := range Check(&m) {
		if !d.probs.under(p.Path) {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return nil, ps.capped()
	}
	return &m, nil
}

// maxProblems bounds what one document can make us print.
const maxProblems = 100

func (ps Problems) capped() Problems {
	if len(ps) <= maxProblems {
		return ps
	}
	more := len(ps) - maxProblems
	out := append(Problems(nil), ps[:maxProblems]...)
	return append(out, Problem{Code: CodeTooMany, Reason: fmt.Sprintf("%d more problems not shown", more)})
}

func wrongFormat(v, k any) Problems {
	var ps Problems
	vs, _ := v.(string)
	ks, _ := k.(string)
	if v != APIVersion {
		if vs == "" {
			ps.add("apiVersion", CodeRequired, "required: %s", APIVersion)
		} else {
			ps.add("apiVersion", CodeInvalid, "%s is not %s", quote(vs), APIVersion)
		}
	}
	if k != Kind {
		if ks == "" {
			ps.add("kind", CodeRequired, "required: %s", Kind)
		} else {
			ps.add("kind", CodeInvalid, "%s is not %s", quote(ks), Kind)
		}
	}
	return ps
}

// Marshal writes a checked manifest as YAML, the form lint prints. Secret
// configuration values are replaced by Redacted: output is for showing.
func Marshal(m *Manifest) ([]byte, error) {
	out := *m
	if out.Spec.Config != nil && out.Spec.ConfigSchema != nil {
		if cs, ps := CompileConfigSchema(out.Spec.ConfigSchema, "spec.configSchema"); len(ps) == 0 {
			out.Spec.Config = cs.Redact(out.Spec.Config)
		}
	}
	out.Spec.Config, _ = plainNumbers(out.Spec.Config).(map[string]any)
	out.Spec.ConfigSchema, _ = plainNumbers(out.Spec.ConfigSchema).(map[string]any)
	data, err := yaml.MarshalWithOptions(&out, yaml.IndentSequence(true))
	if err != nil {
		return nil, fmt.Errorf("writing manifest %s as YAML: %w", quote(m.Metadata.ID), err)
	}
	return data, nil
}

// plainNumbers copies v with json.Number turned into int64 or float64,
// which YAML writes as numbers rather than quoted strings.
func plainNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plainNumbers(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plainNumbers(e)
		}
		return out
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	}
	return v
}
