package agents

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// Bounds on the configuration an operator sends (the manifest's own bound,
// 128 KiB for the whole manifest, applies on top).
const (
	maxConfigDepth = 16
	maxConfigKeys  = 1000
)

// mergeConfig returns a copy of base with over merged in: maps merge key by
// key, a nil value removes the key, anything else replaces. depth bounds the
// recursion on hostile input.
func mergeConfig(base, over map[string]any) map[string]any {
	out := manifest.CopyConfig(base)
	if out == nil {
		out = map[string]any{}
	}
	mergeInto(out, over, 0)
	return out
}

func mergeInto(dst, src map[string]any, depth int) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, ok := v.(map[string]any)
		dm, dok := dst[k].(map[string]any)
		if ok && dok && depth < maxConfigDepth {
			dm = manifest.CopyConfig(dm)
			mergeInto(dm, sm, depth+1)
			dst[k] = dm
			continue
		}
		dst[k] = manifest.CopyValue(v)
	}
}

// checkInputShape bounds an operator's configuration before anything walks
// it: depth and number of keys.
func checkInputShape(path string, m map[string]any) error {
	n := 0
	var walk func(v any, depth int) bool
	walk = func(v any, depth int) bool {
		if depth > maxConfigDepth {
			return false
		}
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				if n++; n > maxConfigKeys || !walk(e, depth+1) {
					return false
				}
			}
		case []any:
			for _, e := range x {
				if n++; n > maxConfigKeys || !walk(e, depth+1) {
					return false
				}
			}
		}
		return true
	}
	if !walk(m, 0) {
		return invalid(path, manifest.CodeRange, "nested deeper than %d or holding more than %d values", maxConfigDepth, maxConfigKeys)
	}
	return nil
}

// checkSecretKeys refuses a value in secrets that the schema does not mark
// secret: stored with the public configuration it would be shown.
func checkSecretKeys(secrets map[string]any, secretPaths []string) error {
	marked := map[string]bool{}
	prefixes := map[string]bool{}
	for _, p := range secretPaths {
		marked[p] = true
		for i := 1; i < len(p); i++ {
			if p[i] == '/' {
				prefixes[p[:i]] = true
			}
		}
	}
	var ps manifest.Problems
	var walk func(m map[string]any, ptr, path string)
	walk = func(m map[string]any, ptr, path string) {
		for _, k := range sortedKeys(m) {
			p, fp := ptr+"/"+escapePointer(k), manifest.Key(path, k)
			switch sub, isMap := m[k].(map[string]any); {
			case marked[p]:
			case isMap && prefixes[p]:
				walk(sub, p, fp)
			default:
				ps = append(ps, manifest.Problem{Path: fp, Code: manifest.CodeInvalid,
					Reason: "is not marked format: secret in spec.configSchema; give it with the configuration"})
			}
		}
	}
	walk(secrets, "", "secrets")
	if len(ps) > 0 {
		return &InvalidError{Problems: ps}
	}
	return nil
}

func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// redactProblems keeps secret values out of refusals: a problem under a
// secret's path gets a reason of its own, and any reason that repeats a
// secret string is replaced, since a validator's message may quote the value.
func redactProblems(ps manifest.Problems, secretPaths []string, values []string) manifest.Problems {
	out := make(manifest.Problems, len(ps))
	for i, p := range ps {
		out[i] = p
		if underSecret(p.Path, secretPaths) || containsAny(p.Reason, values) {
			out[i].Reason = "the secret value does not match spec.configSchema (not shown)"
		}
	}
	return out
}

// underSecret reports whether a problem path ("spec.config.a.b") names a
// secret pointer ("/a/b") or something inside it.
func underSecret(path string, secretPaths []string) bool {
	for _, sp := range secretPaths {
		fp := "spec.config"
		for _, tok := range strings.Split(sp[1:], "/") {
			fp = manifest.Key(fp, strings.NewReplacer("~1", "/", "~0", "~").Replace(tok))
		}
		if path == fp || strings.HasPrefix(path, fp+".") || strings.HasPrefix(path, fp+"[") {
			return true
		}
	}
	return false
}

func containsAny(s string, values []string) bool {
	for _, v := range values {
		if len(v) >= 3 && strings.Contains(s, v) {
			return true
		}
	}
	return false
}

// stringLeaves lists the strings (and numbers' text) inside v.
func stringLeaves(v any, out []string) []string {
	switch x := v.(type) {
	case string:
		return append(out, x)
	case json.Number:
		return append(out, x.String())
	case float64, int, int64:
		return append(out, fmt.Sprint(x))
	case map[string]any:
		for _, e := range x {
			out = stringLeaves(e, out)
		}
	case []any:
		for _, e := range x {
			out = stringLeaves(e, out)
		}
	}
	return out
}
