package registry

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/safeyaml"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// parseDoc reads one YAML or JSON document into plain values through
// manifest.ParseTree (safeyaml for YAML; a token-level JSON reader that
// refuses repeated keys), within lim. A refusal becomes one
// invalid-manifest finding naming the position and field where known.
func parseDoc(fs *findings, data []byte, lim safeyaml.Limits) (map[string]any, bool) {
	tree, err := manifest.ParseTree(data, lim)
	if err != nil {
		p := manifest.SyntaxProblem(err)
		fs.invalid(p.Path, p.Reason)
		return nil, false
	}
	top, ok := tree.(map[string]any)
	if !ok {
		fs.invalid("", "the document must be a mapping, not "+kindOf(tree))
		return nil, false
	}
	return top, true
}

// obj is one mapping of a document being checked: every accessor records
// a finding with the field's path when the value is missing or of the
// wrong kind, and done reports the keys nobody asked for.
type obj struct {
	fs   *findings
	path string
	m    map[string]any
	used map[string]bool
}

// asObj returns v as a mapping at path, or nil (with a finding) when it is
// not one.
func asObj(fs *findings, path string, v any) *obj {
	m, ok := v.(map[string]any)
	if !ok {
		fs.invalid(path, "must be a mapping, not "+kindOf(v))
		return nil
	}
	return &obj{fs: fs, path: path, m: m, used: map[string]bool{}}
}

func (o *obj) at(key string) string { return manifest.Key(o.path, key) }

func (o *obj) get(key string, required bool) (any, bool) {
	o.used[key] = true
	v, ok := o.m[key]
	if !ok && required {
		o.fs.invalid(o.at(key), "is required")
	}
	return v, ok
}

// str returns a string field; maxLen bounds it and a string holding
// control characters or invalid UTF-8 is refused.
func (o *obj) str(key string, required bool, maxLen int) (string, bool) {
	v, ok := o.get(key, required)
	if !ok {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		o.fs.invalid(o.at(key), "must be a string, not "+kindOf(v))
		return "", false
	}
	if required && s == "" {
		o.fs.invalid(o.at(key), "must not be empty")
		return "", false
	}
	if reason := badText(s, maxLen); reason != "" {
		o.fs.invalid(o.at(key), reason)
		return "", false
	}
	return s, true
}

// label is a str that must also be a name: letters, digits, ".", "_", "-".
func (o *obj) label(key string, required bool) (string, bool) {
	s, ok := o.str(key, required, maxLabel)
	if !ok || s == "" {
		return s, ok
	}
	if !labelRE.MatchString(s) {
		o.fs.invalid(o.at(key), quote(s)+" is not a name: use letters, digits, '.', '_' and '-', starting with a letter or digit")
		return "", false
	}
	return s, true
}

func (o *obj) boolean(key string) (bool, bool) {
	v, ok := o.get(key, false)
	if !ok {
		return false, false
	}
	b, isBool := v.(bool)
	if !isBool {
		o.fs.invalid(o.at(key), "must be true or false, not "+kindOf(v))
		return false, false
	}
	return b, true
}

// number returns a number field within [min, max].
func (o *obj) number(key string, required bool, min, max float64) (float64, bool) {
	v, ok := o.get(key, required)
	if !ok {
		return 0, false
	}
	n, isNum := v.(json.Number)
	if !isNum {
		o.fs.invalid(o.at(key), "must be a number, not "+kindOf(v))
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < min || f > max {
		o.fs.invalid(o.at(key), fmt.Sprintf("%s is outside %s to %s", string(n), fmtNum(min), fmtNum(max)))
		return 0, false
	}
	return f, true
}

// integer is a number that must be whole.
func (o *obj) integer(key string, required bool, min, max int64) (int64, bool) {
	f, ok := o.number(key, required, float64(min), float64(max))
	if !ok {
		return 0, false
	}
	if f != math.Trunc(f) {
		o.fs.invalid(o.at(key), fmtNum(f)+" is not a whole number")
		return 0, false
	}
	return int64(f), true
}

// list returns a list field of at most max items.
func (o *obj) list(key string, required bool, max int) ([]any, bool) {
	v, ok := o.get(key, required)
	if !ok {
		return nil, false
	}
	l, isList := v.([]any)
	if !isList {
		o.fs.invalid(o.at(key), "must be a list, not "+kindOf(v))
		return nil, false
	}
	if len(l) > max {
		o.fs.invalid(o.at(key), fmt.Sprintf("has %d items; at most %d", len(l), max))
		return nil, false
	}
	return l, true
}

// strs returns a list of short strings.
func (o *obj) strs(key string, max int) []string {
	l, ok := o.list(key, false, max)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(l))
	for i, v := range l {
		s, isStr := v.(string)
		p := manifest.Index(o.at(key), i)
		if !isStr {
			o.fs.invalid(p, "must be a string, not "+kindOf(v))
			continue
		}
		if reason := badText(s, maxText); reason != "" {
			o.fs.invalid(p, reason)
			continue
		}
		out = append(out, s)
	}
	return out
}

// child returns a nested mapping, nil when absent or not a mapping.
func (o *obj) child(key string, required bool) *obj {
	v, ok := o.get(key, required)
	if !ok {
		return nil
	}
	return asObj(o.fs, o.at(key), v)
}

// done reports every key no accessor asked for: decoding is strict, as
// everywhere in the appliance, so a misspelt "integrty" is not silently
// ignored.
func (o *obj) done() {
	if o == nil {
		return
	}
	var extra []string
	for k := range o.m {
		if !o.used[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		o.fs.invalid(o.at(k), "unknown field")
	}
}

// ignore marks keys whose values are free-form (upstream's "installed",
// "policies"): their size is already bounded by the parser limits.
func (o *obj) ignore(keys ...string) {
	for _, k := range keys {
		o.used[k] = true
	}
}

const (
	maxLabel = 128
	maxText  = 4096
	maxPath  = 1024
)

var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// badText says why s cannot be taken as text, "" when it can.
func badText(s string, maxLen int) string {
	if len(s) > maxLen {
		return fmt.Sprintf("is %d bytes long; at most %d", len(s), maxLen)
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return "holds a control character: " + quote(s)
		}
	}
	return ""
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("a %T", v)
}

// quote shows a foreign value in a detail: quoted (so control characters
// and bidi overrides are escaped) and cut to 80 bytes.
func quote(s string) string {
	const max = 80
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// checkRelPath says why p cannot name a file inside the registry, "" when
// it can: a relative, clean, slash-separated path with no "..", no
// backslash and no control character. The check is lexical; symlinks are
// dealt with when the file is opened (see openFile).
func checkRelPath(p string) string {
	switch {
	case p == "":
		return "is empty"
	case len(p) > maxPath:
		return fmt.Sprintf("is %d bytes long; at most %d", len(p), maxPath)
	case strings.HasPrefix(p, "/"):
		return quote(p) + " is absolute; paths are relative to the registry"
	case strings.ContainsRune(p, '\\'):
		return quote(p) + " holds a backslash; use '/'"
	case badText(p, maxPath) != "" || strings.ContainsAny(p, "\n\t"):
		return quote(p) + " holds a control character or invalid UTF-8"
	}
	if i, _ := terminal.FirstUnsafe(p); i >= 0 {
		// A bidi override would make the path read as another one.
		return quote(p) + " holds an invisible or formatting character"
	}
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "..":
			return quote(p) + " leaves the registry (\"..\")"
		case "", ".":
			return quote(p) + " is not a clean path (empty or \".\" component)"
		}
	}
	return ""
}
