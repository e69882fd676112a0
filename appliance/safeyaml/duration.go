package safeyaml

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

var durationType = reflect.TypeOf(time.Duration(0))

const durationHint = "is not a duration such as 30s, 10m or 2h"

// checkDurations walks the document beside the Go type it decodes into and
// checks every value bound for a time.Duration, so that the error names the
// field and its position. go-yaml on its own refuses the integer 0 with
// "must be a number, not a number" (a Duration is an int64 to reflection),
// and reports a bad duration string without saying where it was.
func checkDurations(n ast.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n == nil {
		return nil
	}
	if t == durationType {
		return checkDuration(n, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			if mv, isMV := n.(*ast.MappingValueNode); isMV {
				m = &ast.MappingNode{Values: []*ast.MappingValueNode{mv}}
				ok = true
			}
		}
		if !ok {
			return nil // go-yaml reports the type mismatch
		}
		fields := yamlFields(t)
		for _, mv := range m.Values {
			ft, known := fields[keyString(mv.Key)]
			if !known {
				continue
			}
			if err := checkDurations(mv.Value, ft, child(path, mv.Key)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if s, ok := n.(*ast.SequenceNode); ok {
			for i, v := range s.Values {
				if err := checkDurations(v, t.Elem(), index(path, i)); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if m, ok := n.(*ast.MappingNode); ok {
			for _, mv := range m.Values {
				if err := checkDurations(mv.Value, t.Elem(), child(path, mv.Key)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkDuration(n ast.Node, path string) error {
	p := posOf(n.GetToken())
	switch x := n.(type) {
	case *ast.NullNode:
		return nil
	case *ast.IntegerNode:
		if isZero(x.Value) {
			return nil
		}
		return errAt(p, path, fmt.Sprintf("%s: %s (a plain number has no unit; only 0 may be written without one)", shorten(escape(x.Token.Value), maxKeyText), durationHint), ErrDuration)
	case *ast.StringNode:
		if _, err := time.ParseDuration(x.Value); err != nil {
			return errAt(p, path, fmt.Sprintf("%s %s", strconv.Quote(shorten(x.Value, maxKeyText)), durationHint), ErrDuration)
		}
		return nil
	}
	return errAt(p, path, "must be a duration such as 30s, 10m or 2h, not a "+nodeKind(n), ErrDuration)
}

func isZero(v any) bool {
	switch x := v.(type) {
	case int64:
		return x == 0
	case uint64:
		return x == 0
	}
	return false
}

func nodeKind(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "mapping"
	case *ast.SequenceNode:
		return "list"
	case *ast.BoolNode:
		return "boolean"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "decimal number"
	}
	return "value"
}

// yamlFields maps the keys a struct accepts to their types, the way go-yaml
// names them: the yaml (else json) tag's name, else the lowercased field
// name; inline and embedded structs lend their fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" {
			tag = f.Tag.Get("json")
		}
		if tag == "-" || f.PkgPath != "" && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if (f.Anonymous && name == "" || strings.Contains(","+opts+",", ",inline,")) && ft.Kind() == reflect.Struct {
			for k, v := range yamlFields(ft) {
				if _, taken := out[k]; !taken {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func keyString(key ast.MapKeyNode) string {
	if s, ok := key.(*ast.StringNode); ok {
		return s.Value
	}
	if key != nil {
		if tk := key.GetToken(); tk != nil {
			return tk.Value
		}
	}
	return ""
}

// decodeDuration is go-yaml's custom decoder for time.Duration. The value
// has passed checkDurations; this turns it into the number.
func decodeDuration(d *time.Duration, b []byte) error {
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		parsed, err := time.ParseDuration(x)
		if err != nil {
			return fmt.Errorf("%s %s: %w", strconv.Quote(shorten(x, maxKeyText)), durationHint, ErrDuration)
		}
		*d = parsed
		return nil
	case uint64, int64, int:
		if fmt.Sprint(x) == "0" {
			*d = 0
			return nil
		}
	}
	return fmt.Errorf("%s: %w", durationHint, errors.Join(ErrDuration, ErrType))
}
