package ui

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func schemaOf(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

const testSchema = `{"type":"object","required":["name","n"],"properties":{
 "name":{"type":"string","minLength":2,"maxLength":10,"title":"Name","description":"who"},
 "n":{"type":"integer","minimum":1,"maximum":5,"default":3},
 "f":{"type":"number","minimum":-1.5},
 "on":{"type":"boolean","default":true},
 "pick":{"enum":["a",2,true]},
 "key":{"type":"string","format":"secret","default":"never shown"},
 "mail":{"type":"string","format":"email"},
 "obj":{"type":"object"},
 "any":{}}}`

func TestSchemaFields(t *testing.T) {
	fields := schemaFields(schemaOf(t, testSchema), nil, false)
	byName := map[string]formField{}
	for _, f := range fields {
		byName[f.Name] = f
	}
	want := map[string]formField{
		"name": {Name: "name", Input: "cfg.name", Label: "Name", Help: "who", Kind: "input", Type: "text", JSONType: "string", Required: true, MinLen: "2", MaxLen: "10"},
		"n":    {Name: "n", Input: "cfg.n", Label: "n", Kind: "input", Type: "number", JSONType: "integer", Required: true, Min: "1", Max: "5", Step: "1", Value: "3"},
		"f":    {Name: "f", Input: "cfg.f", Label: "f", Kind: "input", Type: "number", JSONType: "number", Min: "-1.5", Step: "any"},
		"on":   {Name: "on", Input: "cfg.on", Label: "on", Kind: "checkbox", Type: "text", JSONType: "boolean", Checked: true},
		"pick": {Name: "pick", Input: "cfg.pick", Label: "pick", Kind: "select", Type: "text",
			Options: []option{{Value: `"a"`, Label: "a"}, {Value: "2", Label: "2"}, {Value: "true", Label: "true"}}},
		"key":  {Name: "key", Input: "cfg.key", Label: "key", Kind: "input", Type: "password", JSONType: "string", Secret: true},
		"mail": {Name: "mail", Input: "cfg.mail", Label: "mail", Kind: "input", Type: "email", JSONType: "string"},
		"obj":  {Name: "obj", Input: "cfg.obj", Label: "obj", Kind: "json", Type: "text"},
		"any":  {Name: "any", Input: "cfg.any", Label: "any", Kind: "json", Type: "text"},
	}
	if diff := cmp.Diff(want, byName, cmp.AllowUnexported(formField{}, option{})); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if fields[0].Name != "any" || fields[len(fields)-1].Name != "pick" {
		t.Errorf("fields are not in a stable (sorted) order")
	}
}

func TestReadForm(t *testing.T) {
	fields := schemaFields(schemaOf(t, testSchema), nil, false)
	values := map[string]string{"cfg.name": "bob", "cfg.n": " 4 ", "cfg.f": "0.25", "cfg.pick": "2", "cfg.key": "s3cret", "cfg.obj": `{"x": 12345678901234567890}`}
	config, secrets, problems := readForm(fields, func(k string) string { return values[k] }, false)
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	got, _ := json.Marshal(config)
	if string(got) != `{"f":0.25,"n":4,"name":"bob","obj":{"x":12345678901234567890},"on":false,"pick":2}` {
		t.Errorf("config = %s", got)
	}
	if secrets["key"] != "s3cret" || config["key"] != nil {
		t.Errorf("secret not kept apart: config %v, secrets %v", config, secrets)
	}

	bad := map[string]string{"cfg.n": "4.5", "cfg.f": "NaN", "cfg.pick": "{", "cfg.obj": "[1] [2]", "cfg.name": strings.Repeat("x", maxFieldValue+1)}
	_, _, problems = readForm(fields, func(k string) string { return bad[k] }, false)
	for _, name := range []string{"n", "f", "pick", "obj", "name"} {
		if problems[name] == "" {
			t.Errorf("no problem for %s (%q)", name, bad["cfg."+name])
		}
	}
	_, _, problems = readForm(fields, func(string) string { return "" }, false)
	if problems["name"] != "is required" || problems["n"] != "is required" {
		t.Errorf("blank required fields: %v", problems)
	}
	// In a patch nothing is required and a blank secret keeps its value.
	config, secrets, problems = readForm(schemaFields(schemaOf(t, testSchema), map[string]any{"name": "x"}, true), func(string) string { return "" }, true)
	if len(problems) > 0 || len(secrets) > 0 || len(config) != 1 {
		t.Errorf("blank patch: config %v secrets %v problems %v", config, secrets, problems)
	}
}

func TestSecretNeverFilledIn(t *testing.T) {
	for _, f := range schemaFields(schemaOf(t, testSchema), map[string]any{"key": "(secret)", "name": "x"}, true) {
		if f.Secret && f.Value != "" {
			t.Errorf("secret %s filled with %q", f.Name, f.Value)
		}
	}
}

// TestHTMLPatternMeansTheSchemasPattern: JSON Schema's pattern searches,
// HTML's must match the whole value; the translation keeps the meaning.
func TestHTMLPatternMeansTheSchemasPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		in      []string
		out     []string
	}{
		{"^[a-z]+$", []string{"abc"}, []string{"ab1", ""}},
		{"[0-9]", []string{"a1b", "9"}, []string{"abc"}},
		{"^v", []string{"v1"}, []string{"1v"}},
		{"a|b", []string{"xa", "b"}, []string{"c"}},
	} {
		// The browser anchors the attribute: ^(?:pattern)$.
		re := regexp.MustCompile(`^(?:` + htmlPattern(tc.pattern) + `)$`)
		for _, s := range tc.in {
			if !re.MatchString(s) {
				t.Errorf("%q: %q refused, the schema accepts it", tc.pattern, s)
			}
		}
		for _, s := range tc.out {
			if re.MatchString(s) {
				t.Errorf("%q: %q accepted, the schema refuses it", tc.pattern, s)
			}
		}
	}
}

func TestAttachProblems(t *testing.T) {
	fields := schemaFields(schemaOf(t, testSchema), nil, false)
	rest := attachProblems(fields, map[string]string{"n": "is bad"}, []problemView{
		{Path: "config.name", Reason: "too short"}, {Path: "/mail", Reason: "not an address"}, {Path: "spec.image", Reason: "missing"}})
	got := map[string]string{}
	for _, f := range fields {
		if f.Problem != "" {
			got[f.Name] = f.Problem
		}
	}
	if diff := cmp.Diff(map[string]string{"n": "is bad", "name": "too short", "mail": "not an address"}, got); diff != "" {
		t.Errorf("problems beside fields (-want +got):\n%s", diff)
	}
	if len(rest) != 1 || rest[0].Path != "spec.image" {
		t.Errorf("the rest = %v", rest)
	}
}
