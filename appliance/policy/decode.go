package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// MaxDocumentBytes bounds one policy or tenant document: a page of YAML
// with a few hundred egress entries fits many times over.
const MaxDocumentBytes = 64 << 10

// Limits are the parser limits for one document. The deepest document is
// spec.network.egress[i]: four levels.
func Limits() safeyaml.Limits {
	return safeyaml.Limits{MaxBytes: MaxDocumentBytes, MaxDepth: 8, MaxNodes: 4000, MaxSeqLen: maxList, MaxMapLen: 64}
}

// maxProblems bounds what one document can make us print.
const maxProblems = 50

var quantityType = reflect.TypeOf(manifest.Quantity(""))

// decoder fills Go values from a JSON tree (manifest.ParseTree's), strictly:
// every key must name a field, every value have the field's kind, and each
// refusal is recorded with its field path instead of stopping at the first.
type decoder struct {
	probs manifest.Problems
}

func (d *decoder) add(path string, code manifest.Code, format string, a ...any) {
	d.probs = append(d.probs, manifest.Problem{Path: path, Code: code, Reason: fmt.Sprintf(format, a...)})
}

func (d *decoder) decode(path string, node any, v reflect.Value) {
	if node == nil {
		return // an empty value is the same as an absent one
	}
	t := v.Type()
	switch {
	case t == quantityType:
		d.quantity(path, node, v)
	case t.Kind() == reflect.Pointer:
		e := reflect.New(t.Elem())
		d.decode(path, node, e.Elem())
		v.Set(e)
	case t.Kind() == reflect.Struct:
		d.object(path, node, v)
	case t.Kind() == reflect.Slice:
		d.list(path, node, v)
	default:
		d.scalar(path, node, v)
	}
}

func (d *decoder) object(path string, node any, v reflect.Value) {
	m, ok := node.(map[string]any)
	if !ok {
		d.add(path, manifest.CodeType, "must be a mapping, not %s", kindOf(node))
		return
	}
	names := map[string]int{}
	for i := 0; i < v.NumField(); i++ {
		names[jsonName(v.Type().Field(i))] = i
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		i, ok := names[k]
		if !ok {
			d.add(manifest.Key(path, k), manifest.CodeUnknownField, "unknown field; %s takes %s", describe(path), fieldList(names))
			continue
		}
		d.decode(manifest.Key(path, k), m[k], v.Field(i))
	}
}

func describe(path string) string {
	if path == "" {
		return "a document"
	}
	return path
}

func fieldList(names map[string]int) string {
	l := make([]string, 0, len(names))
	for n := range names {
		l = append(l, n)
	}
	sort.Strings(l)
	return strings.Join(l, ", ")
}

func (d *decoder) list(path string, node any, v reflect.Value) {
	l, ok := node.([]any)
	if !ok {
		d.add(path, manifest.CodeType, "must be a list, not %s", kindOf(node))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(l), len(l))
	for i, e := range l {
		if e == nil {
			d.add(manifest.Index(path, i), manifest.CodeType, "must not be empty")
			continue
		}
		d.decode(manifest.Index(path, i), e, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) scalar(path string, node any, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		s, ok := node.(string)
		if !ok {
			hint := ""
			if _, ok := node.(json.Number); ok {
				hint = " (quote it)"
			}
			d.add(path, manifest.CodeType, "must be a string, not %s%s", kindOf(node), hint)
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := node.(bool)
		if !ok {
			d.add(path, manifest.CodeType, "must be true or false, not %s", kindOf(node))
			return
		}
		v.SetBool(b)
	case reflect.Int64:
		n, ok := node.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil {
			d.add(path, manifest.CodeType, "must be a whole number, not %s", kindOf(node))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		n, ok := node.(json.Number)
		f, err := n.Float64()
		if !ok || err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			d.add(path, manifest.CodeType, "must be a number, not %s", kindOf(node))
			return
		}
		v.SetFloat(f)
	default:
		panic("policy: no decoder for " + v.Type().String()) // a programming error, caught by the tests
	}
}

func (d *decoder) quantity(path string, node any, v reflect.Value) {
	switch x := node.(type) {
	case string:
		v.SetString(x)
	case json.Number:
		v.SetString(x.String())
	default:
		d.add(path, manifest.CodeType, "must be a quantity such as \"2\", \"500m\" or \"8Gi\", not %s", kindOf(node))
	}
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// kindOf names a JSON value's kind for a message.
func kindOf(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return strconv.FormatBool(x)
	}
	return "a value"
}

// syntaxProblem turns a ParseTree error into a Problem, keeping the field
// and position safeyaml found.
func syntaxProblem(err error) manifest.Problem {
	var ye *safeyaml.Error
	if errors.As(err, &ye) {
		reason := ye.Reason
		if ye.HasPosition() {
			reason = fmt.Sprintf("line %d, column %d: %s", ye.Line, ye.Column, reason)
		}
		return manifest.Problem{Path: ye.Field, Code: manifest.CodeSyntax, Reason: reason}
	}
	return manifest.Problem{Code: manifest.CodeSyntax, Reason: safeyaml.Escape(err.Error())}
}

// parseTree reads data and checks its apiVersion and kind, so that a
// document of another kind is named as such rather than drowned in
// unknown-field problems.
func parseTree(data []byte, kind string) (map[string]any, error) {
	tree, err := manifest.ParseTree(data, Limits())
	if err != nil {
		return nil, &InvalidError{Problems: manifest.Problems{syntaxProblem(err)}}
	}
	top, ok := tree.(map[string]any)
	if !ok {
		return nil, invalid("", manifest.CodeType, "a "+kind+" document must be a mapping, not "+kindOf(tree))
	}
	var ps manifest.Problems
	for _, f := range []struct{ key, want string }{{"apiVersion", APIVersion}, {"kind", kind}} {
		got, isString := top[f.key].(string)
		switch {
		case top[f.key] == nil:
			ps = append(ps, manifest.Problem{Path: f.key, Code: manifest.CodeRequired, Reason: "required: " + f.want})
		case !isString || got != f.want:
			ps = append(ps, manifest.Problem{Path: f.key, Code: manifest.CodeInvalid, Reason: quoteAny(top[f.key]) + " is not " + f.want})
		}
	}
	if len(ps) > 0 {
		return nil, &InvalidError{Problems: ps}
	}
	return top, nil
}

func quoteAny(v any) string {
	if s, ok := v.(string); ok {
		return quote(s)
	}
	return kindOf(v)
}

// Parse decodes one policy document (YAML or JSON), checks it and returns
// it normalised (names lower-cased, quantities and CIDRs in canonical
// form). On failure the error is an *InvalidError with every problem, each
// naming its field path.
func Parse(data []byte) (*Document, error) {
	top, err := parseTree(data, KindPolicy)
	if err != nil {
		return nil, err
	}
	var doc Document
	d := decoder{}
	d.decode("", top, reflect.ValueOf(&doc).Elem())
	if err := finish(d.probs, checkDocument(&doc)); err != nil {
		return nil, err
	}
	return &doc, nil
}

// ParseTenant decodes one tenant document as Parse does.
func ParseTenant(data []byte) (*TenantDocument, error) {
	top, err := parseTree(data, KindTenant)
	if err != nil {
		return nil, err
	}
	var doc TenantDocument
	d := decoder{}
	d.decode("", top, reflect.ValueOf(&doc).Elem())
	if err := finish(d.probs, checkTenantDocument(&doc)); err != nil {
		return nil, err
	}
	return &doc, nil
}

// finish joins the decoder's problems with the checker's, leaving out a
// check problem about a field that already failed to decode.
func finish(decoded, checked manifest.Problems) error {
	ps := decoded
	for _, p := range checked {
		if !under(decoded, p.Path) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	if len(ps) > maxProblems {
		more := len(ps) - maxProblems
		ps = append(ps[:maxProblems:maxProblems], manifest.Problem{Code: manifest.CodeTooMany, Reason: fmt.Sprintf("%d more problems not shown", more)})
	}
	return &InvalidError{Problems: ps}
}

// under reports whether some problem concerns path or a field above it.
func under(ps manifest.Problems, path string) bool {
	for _, p := range ps {
		if p.Path == path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") {
			return true
		}
	}
	return false
}
