package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// openAPIOps lists a document's operations as "METHOD /fiber/:path".
func openAPIOps(t *testing.T, doc []byte) []string {
	t.Helper()
	var d struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatalf("the OpenAPI document is not JSON: %v", err)
	}
	if d.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", d.OpenAPI)
	}
	var ops []string
	for p, methods := range d.Paths {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if name, ok := strings.CutPrefix(s, "{"); ok {
				segs[i] = ":" + strings.TrimSuffix(name, "}")
			}
		}
		for m := range methods {
			ops = append(ops, strings.ToUpper(m)+" "+strings.Join(segs, "/"))
		}
	}
	slices.Sort(ops)
	return ops
}

// TestOpenAPIMatchesRoutes: the document the API serves lists exactly the
// routes it registered, each with its method, both ways.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := wiredEnv(t)
	a := e.root.do("GET", "/api/v1/openapi.json", nil, nil)
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/v1/openapi.json = %s", a)
	}
	got, want := openAPIOps(t, a.body), registeredKeys(e.srv.app)
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("route %s is registered but not in the OpenAPI document", k)
		}
	}
	for _, k := range got {
		if !slices.Contains(want, k) {
			t.Errorf("the OpenAPI document describes %s, which is not registered", k)
		}
	}
	// A server with fewer domains documents fewer routes.
	small := serve(t, Deps{})
	doc, err := small.c.OpenAPI(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ops := openAPIOps(t, doc); slices.Contains(ops, "GET /api/v1/probe") || slices.Contains(ops, "GET /api/v1/users") || !slices.Contains(ops, "GET /api/v1/whoami") {
		t.Errorf("document of a server without probe and auth = %v", ops)
	}
}

// TestOpenAPIDocumentCoversTable: OpenAPIDocument, the document a fully
// wired omertad serves, has every rule of the table, no more.
func TestOpenAPIDocumentCoversTable(t *testing.T) {
	doc, err := OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := range rules {
		keys = append(keys, rules[i].key())
	}
	slices.Sort(keys)
	if got := openAPIOps(t, doc); !slices.Equal(got, keys) {
		t.Errorf("document operations:\n %v\nrules:\n %v", got, keys)
	}
}

// TestEveryRuleIsDocumented: opDocs and the table name the same routes.
func TestEveryRuleIsDocumented(t *testing.T) {
	for i := range rules {
		if _, ok := opDocs[rules[i].key()]; !ok {
			t.Errorf("%s has no opDocs entry", rules[i].key())
		}
	}
	for k := range opDocs {
		method, path, _ := strings.Cut(k, " ")
		if matchPattern(method, path) == nil {
			t.Errorf("opDocs documents %s, which has no rule", k)
		}
	}
}

// TestOpenAPIOperationsDescribeAccess: each operation says what it needs
// as the table does, and its operationId is unique.
func TestOpenAPIOperationsDescribeAccess(t *testing.T) {
	doc, err := OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]struct {
			OperationID string   `json:"operationId"`
			Action      string   `json:"x-omerta-action"`
			Roles       []string `json:"x-omerta-roles"`
			Public      bool     `json:"x-omerta-public"`
			Security    []any    `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for i := range rules {
		r := &rules[i]
		op := d.Paths[openAPIPath(r.path)][strings.ToLower(r.method)]
		if ids[op.OperationID] {
			t.Errorf("operationId %q twice", op.OperationID)
		}
		ids[op.OperationID] = true
		if op.Public != r.public || op.Action != r.action || (len(op.Security) == 0) != r.public || (!r.public && len(op.Roles) == 0 && !r.rootOnly) {
			t.Errorf("%s: operation says public %v action %q roles %v security %v", r.key(), op.Public, op.Action, op.Roles, op.Security)
		}
	}
}

// openAPIChecker validates answers against the document: the status must
// be documented (or fall under default), a JSON body must be valid
// against the schema for it, and the media type one the document lists.
func openAPIChecker(t *testing.T, doc []byte) func(r *rule, a answer) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Content map[string]json.RawMessage `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	const base = "mem:///openapi.json"
	if err := c.AddResource(base, inst); err != nil {
		t.Fatal(err)
	}
	cache := map[string]*jsonschema.Schema{}
	return func(r *rule, a answer) {
		t.Helper()
		p := openAPIPath(r.path)
		m := strings.ToLower(r.method)
		code := fmt.Sprint(a.status)
		resp, ok := d.Paths[p][m].Responses[code]
		if !ok {
			if resp, ok = d.Paths[p][m].Responses["default"]; !ok || a.status < 400 {
				t.Errorf("%s answered %d, which its operation does not document", r.key(), a.status)
				return
			}
			code = "default"
		}
		ct, _, _ := mime.ParseMediaType(a.header.Get("Content-Type"))
		if len(a.body) == 0 {
			return
		}
		if _, ok := resp.Content[ct]; !ok {
			t.Errorf("%s %d: Content-Type %q is not one the document lists", r.key(), a.status, ct)
			return
		}
		if ct != "application/json" {
			return
		}
		loc := base + "#/paths/" + pointerToken(p) + "/" + m + "/responses/" + code + "/content/" + pointerToken("application/json") + "/schema"
		sch, ok := cache[loc]
		if !ok {
			if sch, err = c.Compile(loc); err != nil {
				t.Fatalf("compiling %s: %v", loc, err)
			}
			cache[loc] = sch
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(a.body))
		if err != nil {
			t.Errorf("%s %d: body is not JSON: %v", r.key(), a.status, err)
			return
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s %d: the answer does not match the document: %v\n%s", r.key(), a.status, err, a.body)
		}
	}
}

// pointerToken escapes s as one token of a JSON pointer in a URI fragment.
func pointerToken(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
	return url.PathEscape(s)
}
