package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Transform limits. Picking the whole document many times, or flattening a
// deep document with long keys, could multiply a 1 MiB input into gigabytes;
// maxTransformBytes bounds what a transform builds before it is encoded.
const (
	maxPicks          = 256
	maxPointer        = 1024
	maxRenames        = 256
	maxSeparator      = 8
	maxTransformBytes = MaxOutput
)

type transformRequest struct {
	Input     json.RawMessage   `json:"input"`
	Pick      []string          `json:"pick"`
	Rename    map[string]string `json:"rename"`
	Flatten   bool              `json:"flatten"`
	Separator *string           `json:"separator"`
}

// Missing lists the pick paths and rename keys that matched nothing, so
// that nothing a caller asked for is dropped silently.
type Missing struct {
	Pick   []string `json:"pick,omitempty"`
	Rename []string `json:"rename,omitempty"`
}

// TransformResult holds the transformed document.
type TransformResult struct {
	Op      string   `json:"op"`
	Output  any      `json:"output"`
	Missing *Missing `json:"missing,omitempty"`
}

// runTransform applies, in this order: pick (the document becomes an object
// from each found JSON pointer to its value), rename (top-level keys), and
// flatten (nested keys joined by the separator).
func runTransform(_ Env, raw []byte) (any, error) {
	var req transformRequest
	if err := decodeStrict(raw, &req); err != nil {
		return nil, err
	}
	sep, err := checkTransform(&req)
	if err != nil {
		return nil, err
	}
	doc, err := decodeValue(req.Input)
	if err != nil {
		return nil, err
	}
	var missing Missing
	if req.Pick != nil {
		if doc, missing.Pick, err = pick(doc, req.Pick); err != nil {
			return nil, err
		}
	}
	if req.Rename != nil {
		if doc, missing.Rename, err = rename(doc, req.Rename); err != nil {
			return nil, err
		}
	}
	if req.Flatten {
		if doc, err = flatten(doc, sep); err != nil {
			return nil, err
		}
	}
	res := &TransformResult{Op: "transform", Output: doc}
	if len(missing.Pick)+len(missing.Rename) > 0 {
		res.Missing = &missing
	}
	return res, nil
}

func checkTransform(req *transformRequest) (string, error) {
	if req.Input == nil {
		return "", errorf(CodeInvalidRequest, "input", "missing; the JSON document to transform is required")
	}
	if len(req.Pick) > maxPicks {
		return "", errorf(CodeInvalidField, "pick", "has %d paths, more than the limit of %d", len(req.Pick), maxPicks)
	}
	for i, p := range req.Pick {
		if _, err := parsePointer(p); err != nil {
			return "", errorf(CodeInvalidField, fmt.Sprintf("pick[%d]", i), "%v", err)
		}
	}
	if len(req.Rename) > maxRenames {
		return "", errorf(CodeInvalidField, "rename", "has %d keys, more than the limit of %d", len(req.Rename), maxRenames)
	}
	sep := "."
	if req.Separator != nil {
		sep = *req.Separator
		if sep == "" || len(sep) > maxSeparator {
			return "", errorf(CodeInvalidField, "separator", "must be 1 to %d bytes long", maxSeparator)
		}
		if !req.Flatten {
			return "", errorf(CodeInvalidField, "separator", "is used only with \"flatten\": true")
		}
	}
	return sep, nil
}

func decodeValue(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errorf(CodeInvalidJSON, "input", "%v", err)
	}
	return v, nil
}

// parsePointer splits an RFC 6901 JSON pointer ("" is the whole document).
func parsePointer(p string) ([]string, error) {
	if len(p) > maxPointer {
		return nil, fmt.Errorf("a path longer than %d bytes", maxPointer)
	}
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("%q must start with \"/\" (a JSON pointer)", p)
	}
	parts := strings.Split(p[1:], "/")
	for i, part := range parts {
		for j := 0; j < len(part); j++ {
			if part[j] == '~' && (j+1 == len(part) || (part[j+1] != '0' && part[j+1] != '1')) {
				return nil, fmt.Errorf("%q: \"~\" must be followed by 0 or 1", p)
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

func resolve(doc any, parts []string) (any, bool) {
	for _, part := range parts {
		switch v := doc.(type) {
		case map[string]any:
			next, ok := v[part]
			if !ok {
				return nil, false
			}
			doc = next
		case []any:
			i, ok := arrayIndex(part, len(v))
			if !ok {
				return nil, false
			}
			doc = v[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// arrayIndex accepts what RFC 6901 does: decimal digits, no leading zero.
func arrayIndex(s string, n int) (int, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i < n
}

// pick encodes each found value at once, so that its size counts against
// the budget before the next pick can copy it again.
func pick(doc any, paths []string) (any, []string, error) {
	out := map[string]any{}
	var missing []string
	total := 0
	for i, p := range paths {
		parts, _ := parsePointer(p) // checked in checkTransform
		v, ok := resolve(doc, parts)
		if !ok {
			missing = append(missing, p)
			continue
		}
		enc, err := json.Marshal(v)
		if err != nil {
			return nil, nil, errorf(CodeInternal, fmt.Sprintf("pick[%d]", i), "encoding the value: %v", err)
		}
		if total += len(enc) + len(p); total > maxTransformBytes {
			return nil, nil, errorf(CodeOutputTooLarge, fmt.Sprintf("pick[%d]", i), "the picked values exceed %d bytes", maxTransformBytes)
		}
		out[p] = json.RawMessage(enc)
	}
	return out, missing, nil
}

func rename(doc any, renames map[string]string) (any, []string, error) {
	obj, err := asObject(doc, "rename")
	if err != nil {
		return nil, nil, err
	}
	olds := make([]string, 0, len(renames))
	for old := range renames {
		olds = append(olds, old)
	}
	sort.Strings(olds)
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		if _, moving := renames[k]; !moving {
			out[k] = v
		}
	}
	var missing []string
	for _, old := range olds {
		v, ok := obj[old]
		if !ok {
			missing = append(missing, old)
			continue
		}
		to := renames[old]
		if _, taken := out[to]; taken {
			return nil, nil, errorf(CodeConflict, "rename."+old, "the new name %q is already a key", to)
		}
		out[to] = v
	}
	return out, missing, nil
}

func asObject(doc any, field string) (map[string]any, error) {
	if m, ok := doc.(map[string]any); ok {
		return m, nil
	}
	return nil, errorf(CodeInvalidField, field, "needs the document to be an object, not %s", describe(doc))
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "a JSON value"
}
