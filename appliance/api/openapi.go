package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/version"
)

// The OpenAPI 3.1 document is built from the same table the middleware
// enforces (rules, authz.go) and the routes' documentation (opDocs,
// openapi_routes.go); its schemas are reflected from the apitype bodies
// the handlers encode. The server serves the document of the routes it
// registered, no more, no fewer (TestOpenAPIMatchesRoutes);
// OpenAPIDocument is the document of every route in the table, as a
// fully wired omertad serves it.

// OpenAPIDocument returns the OpenAPI document of every route in the
// table, indented JSON.
func OpenAPIDocument() ([]byte, error) {
	keys := make([]string, 0, len(rules))
	for i := range rules {
		keys = append(keys, rules[i].key())
	}
	return buildOpenAPI(keys)
}

// serveOpenAPI builds the document of the routes registered so far, once,
// and mounts GET /openapi.json to serve it; call it after every other
// route is mounted. A route without documentation is a defect that
// TestOpenAPIMatchesRoutes catches; should one slip through, the document
// route answers 500 saying which, and the API serves on.
func (s *Server) serveOpenAPI(v1 fiber.Router) {
	var docErr error
	v1.Get("/openapi.json", func(c *fiber.Ctx) error {
		if docErr != nil {
			return docErr
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
		return c.Send(s.openapi)
	})
	s.openapi, docErr = buildOpenAPI(registeredKeys(s.app))
}

// registeredKeys lists app's routes as "METHOD /path", leaving out the
// HEAD route fiber adds to every GET (it answers as the GET does, without
// a body).
func registeredKeys(app *fiber.App) []string {
	var keys []string
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead {
			continue
		}
		keys = append(keys, r.Method+" "+r.Path)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// document is the top of an OpenAPI document; maps keep the output
// ordered (encoding/json sorts their keys).
type document = map[string]any

func buildOpenAPI(keys []string) ([]byte, error) {
	g := &schemaGen{components: map[string]any{}, roles: map[reflect.Type]bool{}}
	paths := map[string]map[string]any{}
	for _, k := range keys {
		method, path, _ := strings.Cut(k, " ")
		r := matchPattern(method, path)
		if r == nil {
			return nil, fmt.Errorf("openapi: route %s has no rule", k)
		}
		d, ok := opDocs[k]
		if !ok {
			return nil, fmt.Errorf("openapi: route %s has no documentation in opDocs", k)
		}
		op, err := g.operation(r, d)
		if err != nil {
			return nil, fmt.Errorf("openapi: %s: %w", k, err)
		}
		p := openAPIPath(path)
		if paths[p] == nil {
			paths[p] = map[string]any{}
		}
		paths[p][strings.ToLower(method)] = op
	}
	g.errorSchemas()
	doc := document{
		"openapi":           "3.1.0",
		"jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
		"info": map[string]any{
			"title":       "omertad API",
			"version":     version.Get().Version,
			"summary":     "The OMERTAOS appliance daemon's JSON API, served on its unix socket and forwarded by the console under /api/v1.",
			"description": apiDescription,
		},
		// Relative: where this document was fetched from, the console at
		// https://<appliance>/ or omertad's own unix socket.
		"servers": []any{map[string]any{"url": "/",
			"description": "the console that served this document (it forwards /api/v1 to omertad), or omertad's unix socket (daemon.socket, /run/omerta/omertad.sock by default)"}},
		"tags":  tagList(paths),
		"paths": paths,
		"components": map[string]any{"schemas": g.components, "securitySchemes": securitySchemes, "responses": map[string]any{
			"BodyTooLarge":    errorResponse("the request body is larger than omertad reads (64 KiB by default)"),
			"HeadersTooLarge": errorResponse("the request line and headers are larger than omertad reads (8 KiB by default)"),
		}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("openapi: encoding: %w", err)
	}
	return append(b, '\n'), nil
}

const apiDescription = `Every route names the action its caller's role must allow (x-omerta-action; the roles in x-omerta-roles), checked by omertad on every call; anything not described here answers 404.

Root on omertad's unix socket (the omerta CLI) needs no credentials and acts as an admin. Any other caller, the console included, presents a console session in X-Omerta-Session, with its CSRF token in X-Omerta-CSRF on every POST, PUT, PATCH and DELETE, or an API token as "Authorization: Bearer <token>". The console reports the browser's address in X-Omerta-Client-Addr, for rate limits and audit records.

Errors are {"error": "..."}: 401 without valid credentials, 403 for a role without the action (or a missing CSRF token), 429 with Retry-After when logins are limited; a 400 about fields lists them in "problems".`

// openAPIPath turns fiber's /users/:name into OpenAPI's /users/{name}.
func openAPIPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			segs[i] = "{" + name + "}"
		}
	}
	return strings.Join(segs, "/")
}

// matchPattern is the rule whose pattern is path exactly.
func matchPattern(method, path string) *rule {
	for i := range rules {
		if rules[i].method == method && rules[i].path == path {
			return &rules[i]
		}
	}
	return nil
}

var securitySchemes = map[string]any{
	"session": map[string]any{"type": "apiKey", "in": "header", "name": apitype.HeaderSession,
		"description": "a console session ID, from POST /api/v1/login or /api/v1/setup"},
	"csrf": map[string]any{"type": "apiKey", "in": "header", "name": apitype.HeaderCSRF,
		"description": "the session's CSRF token; required with a session on every POST, PUT, PATCH and DELETE"},
	"bearer": map[string]any{"type": "http", "scheme": "bearer",
		"description": "an API token an admin issued (POST /api/v1/tokens), scoped to a role"},
}

// operation documents one route.
func (g *schemaGen) operation(r *rule, d opDoc) (map[string]any, error) {
	if d.summary == "" || d.tag == "" {
		return nil, fmt.Errorf("summary and tag are required")
	}
	op := map[string]any{
		"operationId": operationID(r),
		"summary":     d.summary,
		"tags":        []string{d.tag},
		"security":    security(r),
	}
	if d.description != "" {
		op["description"] = d.description
	}
	if r.public {
		op["x-omerta-public"] = true
	} else {
		op["x-omerta-action"] = r.action
		op["x-omerta-roles"] = rolesOf(r)
	}
	if r.rootOnly {
		op["x-omerta-root-only"] = true
	}
	if params := parameters(r, d); len(params) > 0 {
		op["parameters"] = params
	}
	if d.request != nil {
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
			fiber.MIMEApplicationJSON: map[string]any{"schema": g.ref(reflect.TypeOf(d.request), true)}}}
	}
	resp, err := g.responses(r, d)
	if err != nil {
		return nil, err
	}
	op["responses"] = resp
	return op, nil
}

// operationID is the route's method and path in camel case:
// POST /api/v1/users/:name/disable is postUsersByNameDisable.
func operationID(r *rule) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(r.method))
	for _, s := range strings.Split(strings.TrimPrefix(r.path, "/api/v1"), "/") {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			b.WriteString("By")
			s = name
		}
		for _, w := range strings.FieldsFunc(s, func(c rune) bool { return c == '.' || c == '-' || c == '_' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

func security(r *rule) []any {
	if r.public {
		return []any{}
	}
	sess := map[string]any{"session": []string{}}
	if mutating(r.method) {
		sess["csrf"] = []string{}
	}
	return []any{sess, map[string]any{"bearer": []string{}}}
}

func rolesOf(r *rule) []string {
	var out []string
	for _, role := range auth.Roles() {
		if auth.Allowed(role, r.action) {
			out = append(out, string(role))
		}
	}
	return out
}

func parameters(r *rule, d opDoc) []any {
	var out []any
	for _, s := range r.segs {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			out = append(out, map[string]any{"name": name, "in": "path", "required": true,
				"description": pathParamDocs[name], "schema": map[string]any{"type": "string"}})
		}
	}
	for _, q := range d.query {
		out = append(out, map[string]any{"name": q.name, "in": "query", "required": false, "description": q.desc, "schema": q.schema})
	}
	return out
}

var pathParamDocs = map[string]string{
	"name": "a username",
	"id":   "the id of the agent, task, catalog entry or token the path names",
}

// responses are the route's answer and the errors it can give.
func (g *schemaGen) responses(r *rule, d opDoc) (map[string]any, error) {
	ok := d.ok
	if ok == 0 {
		ok = fiber.StatusOK
	}
	success := map[string]any{"description": d.okDesc}
	if d.okDesc == "" {
		success["description"] = "done"
	}
	switch {
	case d.response != nil:
		success["content"] = map[string]any{fiber.MIMEApplicationJSON: map[string]any{"schema": g.ref(reflect.TypeOf(d.response), false)}}
	case len(d.content) > 0:
		content := map[string]any{}
		for _, ct := range d.content {
			content[ct] = map[string]any{"schema": map[string]any{"type": "string"}}
		}
		success["content"] = content
	case ok != fiber.StatusNoContent:
		return nil, fmt.Errorf("a %d answer needs a response type or content types", ok)
	}
	// Any request may be too large; the listener refuses it before
	// routing.
	out := map[string]any{fmt.Sprint(ok): success,
		"413":     map[string]any{"$ref": "#/components/responses/BodyTooLarge"},
		"431":     map[string]any{"$ref": "#/components/responses/HeadersTooLarge"},
		"default": errorResponse("omertad, or a domain it needs, failed (5xx)")}
	for _, code := range errorCodes(r, d) {
		out[fmt.Sprint(code)] = errorResponseFor(code)
	}
	return out, nil
}

// errorCodes are the 4xx answers a route can give: 400 when it takes
// input, 401 and 403 unless it is public, 404 when its path names
// something, and those its documentation lists.
func errorCodes(r *rule, d opDoc) []int {
	var codes []int
	if d.request != nil || len(d.query) > 0 || strings.Contains(r.path, ":") || slices.Contains(d.errors, fiber.StatusBadRequest) {
		codes = append(codes, fiber.StatusBadRequest)
	}
	if !r.public {
		codes = append(codes, fiber.StatusUnauthorized, fiber.StatusForbidden)
	}
	if strings.Contains(r.path, ":") {
		codes = append(codes, fiber.StatusNotFound)
	}
	for _, c := range d.errors {
		if !slices.Contains(codes, c) {
			codes = append(codes, c)
		}
	}
	slices.Sort(codes)
	return codes
}

var errorDescriptions = map[int]string{
	fiber.StatusBadRequest:          "the request is malformed, or a field is refused (problems names it)",
	fiber.StatusUnauthorized:        "no valid session or token",
	fiber.StatusForbidden:           "the caller's role does not allow this, or a session's CSRF token is missing",
	fiber.StatusNotFound:            "nothing by that name or id",
	fiber.StatusConflict:            "the request contradicts the current state",
	fiber.StatusUnprocessableEntity: "the stored document cannot be used",
	fiber.StatusTooManyRequests:     "too many attempts from this address or on this account; Retry-After says when to try again",
	fiber.StatusServiceUnavailable:  "not available now",
}

func errorResponseFor(code int) map[string]any {
	resp := errorResponse(errorDescriptions[code])
	switch code {
	case fiber.StatusBadRequest:
		resp["content"] = map[string]any{fiber.MIMEApplicationJSON: map[string]any{"schema": map[string]any{
			"anyOf": []any{schemaRef("Invalid"), schemaRef("Error")}}}}
	case fiber.StatusTooManyRequests:
		resp["headers"] = map[string]any{"Retry-After": map[string]any{"description": "seconds until an attempt is allowed again",
			"schema": map[string]any{"type": "integer", "minimum": 1}}}
	}
	return resp
}

func errorResponse(desc string) map[string]any {
	return map[string]any{"description": desc, "content": map[string]any{
		fiber.MIMEApplicationJSON: map[string]any{"schema": schemaRef("Error")}}}
}

func schemaRef(name string) map[string]any {
	return map[string]any{"$ref": "#/components/schemas/" + name}
}

// tagList describes each tag the paths use.
func tagList(paths map[string]map[string]any) []any {
	used := map[string]bool{}
	for _, ops := range paths {
		for _, op := range ops {
			for _, t := range op.(map[string]any)["tags"].([]string) {
				used[t] = true
			}
		}
	}
	var out []any
	for _, t := range tagDocs {
		if used[t.name] {
			out = append(out, map[string]any{"name": t.name, "description": t.desc})
		}
	}
	return out
}

// schemaGen reflects JSON Schemas from the apitype bodies, each named type
// once, under components.schemas.
type schemaGen struct {
	components map[string]any
	// roles: whether a named type was reflected as a request body (true)
	// or an answer; one type is never both, since they differ in what is
	// required.
	roles map[reflect.Type]bool
}

func (g *schemaGen) errorSchemas() {
	g.ref(reflect.TypeOf(apitype.Error{}), false)
	g.ref(reflect.TypeOf(apitype.Invalid{}), false)
}

var timeType = reflect.TypeOf(time.Time{})
var rawType = reflect.TypeOf(json.RawMessage{})

// ref is the schema of t: a $ref for a named struct, inline otherwise.
// In a request body every member is optional and no other is accepted
// (the handlers decode strictly and check each field themselves); in an
// answer, the members without omitempty are always there.
func (g *schemaGen) ref(t reflect.Type, request bool) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{"description": "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.ref(t.Elem(), request)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Interface:
		return map[string]any{"description": "any JSON value"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.ref(t.Elem(), request)}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			panic("openapi: map key of " + t.String() + " is not a string")
		}
		return map[string]any{"type": "object", "additionalProperties": g.ref(t.Elem(), request)}
	case reflect.Struct:
		return g.structRef(t, request)
	}
	panic("openapi: no schema for " + t.String())
}

func (g *schemaGen) structRef(t reflect.Type, request bool) map[string]any {
	name := t.Name()
	if was, seen := g.roles[t]; seen {
		if was != request {
			panic("openapi: " + t.String() + " is both a request body and an answer")
		}
		return schemaRef(name)
	}
	g.roles[t] = request
	props, required := map[string]any{}, []string{}
	g.fields(t, request, props, &required)
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		slices.Sort(required)
		s["required"] = required
	}
	if request {
		s["additionalProperties"] = false
	}
	if other, clash := g.components[name]; clash && !reflect.DeepEqual(other, s) {
		panic("openapi: two types are named " + name)
	}
	g.components[name] = s
	return schemaRef(name)
}

// fields adds t's JSON members to props, those of embedded structs too.
func (g *schemaGen) fields(t reflect.Type, request bool, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, request, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
		s := g.ref(f.Type, request)
		if f.Type.Kind() == reflect.Pointer && (!optional || request) {
			// A nil pointer without omitempty is null; a request may
			// send null for any pointer.
			s = map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
		}
		props[name] = s
		if !request && !optional {
			*required = append(*required, name)
		}
	}
}
