package ui

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// FuzzMatchRoute: the allow-list never panics, never matches a path that
// is not exactly a listed pattern, and hands omertad only checked
// parameters.
func FuzzMatchRoute(f *testing.F) {
	for _, s := range []string{"/api/v1/agents", "/api/v1/agents/a-1/logs", "/api/v1/agents/..%2Fx", "/api/v1//agents", "/api/v1/tokens/12",
		"/api/v1/users/a%40b/role", "/api/v1/agents/%", "/api/v1/" + strings.Repeat("a/", 50)} {
		f.Add("GET", s)
		f.Add("PUT", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		rt, params, ok := matchRoute(method, path)
		if !ok {
			return
		}
		if rt.method != method {
			t.Fatalf("%s %s matched %s %s", method, path, rt.method, rt.pattern)
		}
		for k, v := range params {
			if !validParam(v) || !strings.Contains(rt.pattern, "{"+k+"}") {
				t.Fatalf("%s: param %s = %q", path, k, v)
			}
		}
		if strings.Contains(path, "//") || strings.HasSuffix(path, "/") {
			t.Fatalf("%q matched %s", path, rt.pattern)
		}
	})
}

// FuzzSchemaForm: a configSchema is omertad's, but came from a catalog
// file; whatever it holds, the form is bounded and reading it back does
// not panic.
func FuzzSchemaForm(f *testing.F) {
	f.Add(testSchema, "cfg.n", "3")
	f.Add(`{"properties":{"a":{"enum":[null,{"x":1}]},"b":{"type":["string","null"]},"c":{"minimum":"x","pattern":7}}}`, "cfg.a", "null")
	f.Add(`{"properties":[]}`, "", "")
	f.Fuzz(func(t *testing.T, schema, key, value string) {
		var m map[string]any
		if json.Unmarshal([]byte(schema), &m) != nil {
			return
		}
		fields := schemaFields(m, nil, false)
		if len(fields) > maxFormFields {
			t.Fatalf("%d fields", len(fields))
		}
		readForm(fields, func(k string) string {
			if k == key {
				return value
			}
			return ""
		}, false)
	})
}

// FuzzSafeNext: wherever next points, sign-in returns to this console.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/agents", "//evil", "/\\evil", "https://x", "/%2F%2Fevil", "/a\r\nLocation: x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		u, err := url.Parse(got)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n") || err != nil || u.Host != "" || u.Scheme != "" {
			t.Fatalf("safeNext(%q) = %q", next, got)
		}
	})
}
