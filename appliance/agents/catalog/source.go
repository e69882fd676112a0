package catalog

import (
	"encoding/json"
	"sort"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// Action says what became of a field of a foreign format.
type Action string

// The actions lint reports.
const (
	// Dropped: the field has no counterpart here and is not kept.
	Dropped Action = "dropped"
	// Approximated: the field was mapped to something close but not equal.
	Approximated Action = "approximated"
	// Kept: the field is stored but nothing acts on it yet.
	Kept Action = "kept"
)

// Note is one field of a foreign document that did not map exactly.
type Note struct {
	Path   string `json:"path"`
	Action Action `json:"action"`
	Reason string `json:"reason"`
}

func (n Note) String() string { return string(n.Action) + " " + n.Path + ": " + n.Reason }

// importer collects what reading a foreign document finds: refusals,
// notes, and where each manifest field came from, so that Check's
// problems name the field of the document that was read.
type importer struct {
	probs  manifest.Problems
	notes  []Note
	origin map[string]string // manifest path -> source path
}

func newImporter() *importer { return &importer{origin: map[string]string{}} }

func (im *importer) note(path string, a Action, reason string) {
	im.notes = append(im.notes, Note{Path: path, Action: a, Reason: reason})
}

func (im *importer) problem(path string, code manifest.Code, reason string) {
	im.probs = append(im.probs, manifest.Problem{Path: path, Code: code, Reason: reason})
}

// obj is one mapping of the source document, with the keys read so far, so
// that every key never read is reported rather than silently lost.
type obj struct {
	im   *importer
	path string
	m    map[string]any
	used map[string]bool
}

func (im *importer) obj(path string, v any) *obj {
	m, ok := v.(map[string]any)
	if !ok && v != nil {
		im.problem(path, manifest.CodeType, "must be a mapping, not "+kindOf(v))
	}
	return &obj{im: im, path: path, m: m, used: map[string]bool{}}
}

func (o *obj) at(key string) string { return manifest.Key(o.path, key) }

func (o *obj) get(key string) (any, bool) {
	o.used[key] = true
	v, ok := o.m[key]
	return v, ok && v != nil
}

func (o *obj) has(key string) bool {
	_, ok := o.m[key]
	return ok
}

func (o *obj) str(key string) string {
	v, ok := o.get(key)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		o.im.problem(o.at(key), manifest.CodeType, "must be a string, not "+kindOf(v))
	}
	return s
}

func (o *obj) boolean(key string) (b, ok bool) {
	v, present := o.get(key)
	if !present {
		return false, false
	}
	b, ok = v.(bool)
	if !ok {
		o.im.problem(o.at(key), manifest.CodeType, "must be true or false, not "+kindOf(v))
	}
	return b, ok
}

func (o *obj) number(key string) (json.Number, bool) {
	v, present := o.get(key)
	if !present {
		return "", false
	}
	n, ok := v.(json.Number)
	if !ok {
		o.im.problem(o.at(key), manifest.CodeType, "must be a number, not "+kindOf(v))
	}
	return n, ok
}

func (o *obj) strs(key string) []string {
	v, ok := o.get(key)
	if !ok {
		return nil
	}
	l, isList := v.([]any)
	if !isList {
		o.im.problem(o.at(key), manifest.CodeType, "must be a list, not "+kindOf(v))
		return nil
	}
	out := make([]string, 0, len(l))
	for i, e := range l {
		s, isStr := e.(string)
		if !isStr {
			o.im.problem(manifest.Index(o.at(key), i), manifest.CodeType, "must be a string, not "+kindOf(e))
			continue
		}
		out = append(out, s)
	}
	return out
}

func (o *obj) child(key string) *obj {
	v, _ := o.get(key)
	return o.im.obj(o.at(key), v)
}

// drop marks key as read and notes it dropped when present.
func (o *obj) drop(key, reason string) {
	if _, ok := o.get(key); ok {
		o.im.note(o.at(key), Dropped, reason)
	}
}

// rest reports every key not read: one asking for host access is refused,
// any other is noted as dropped.
func (o *obj) rest() {
	var keys []string
	for k := range o.m {
		if !o.used[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if why, ok := manifest.HostAccess(k); ok {
			o.im.problem(o.at(k), manifest.CodeHostAccess, "refused: asks for host access ("+why+")")
			continue
		}
		o.im.note(o.at(k), Dropped, "not a field of this format that omerta knows")
	}
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "empty"
}

// set records that the manifest field mpath came from the source field.
func (im *importer) set(mpath, src string) { im.origin[mpath] = src }

// check runs the manifest's checks and renames each problem's path to the
// field of the source document it came from.
func (im *importer) check(m *manifest.Manifest) {
	for _, p := range manifest.Check(m) {
		p.Path = im.sourcePath(p.Path)
		im.probs = append(im.probs, p)
	}
}

func (im *importer) sourcePath(p string) string {
	best := ""
	for k := range im.origin {
		if (p == k || hasFieldPrefix(p, k)) && len(k) > len(best) {
			best = k
		}
	}
	if best == "" {
		return p
	}
	return im.origin[best] + p[len(best):]
}

func hasFieldPrefix(p, prefix string) bool {
	return len(p) > len(prefix) && p[:len(prefix)] == prefix && (p[len(prefix)] == '.' || p[len(prefix)] == '[')
}
