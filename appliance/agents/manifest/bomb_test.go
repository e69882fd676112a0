package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSchemaRefBomb: 24 definitions, each referring twice to the next,
// made validating one value take minutes (2^24 paths). References are
// refused, so it is refused at once.
func TestSchemaRefBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"apiVersion": "omertaos.dev/v1", "kind": "Agent", "metadata": {"id": "a", "name": "A"}, "spec": {"config": {"x": 1}, "configSchema": {"$ref": "#/$defs/d0", "$defs": {`)
	const n = 24
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `"d%d": {"anyOf": [{"$ref": "#/$defs/d%d"}, {"$ref": "#/$defs/d%d"}, {"type": "string"}]},`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `"d%d": {"type": "boolean"}}}}}`, n)
	start := time.Now()
	_, err := Parse([]byte(b.String()))
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("got %v", err)
	}
	for _, p := range ps {
		if p.Path == `spec.configSchema["$ref"]` && p.Code == CodeInvalid {
			return
		}
	}
	t.Errorf("no refusal of spec.configSchema[\"$ref\"] in:\n%v", ps)
}

// TestHugeExponent: 1e99999999 in a configuration crashed the validator
// (nil *big.Rat), and 1e-99999999 would make it build a number with a
// hundred million digits; such numbers are refused when read.
func TestHugeExponent(t *testing.T) {
	for _, num := range []string{"1e99999999", "1e-99999999", "-1E400", strings.Repeat("1", 41)} {
		s := `{"apiVersion": "omertaos.dev/v1", "kind": "Agent", "metadata": {"id": "a", "name": "A"}, "spec": {"config": {"x": ` + num + `}, "configSchema": {"properties": {"x": {"minimum": 1, "multipleOf": 3}}}}}`
		start := time.Now()
		_, err := Parse([]byte(s))
		var ps Problems
		if !errors.As(err, &ps) || ps[0].Code != CodeSyntax || !errors.Is(checkNumber(jsonNumber(num)), ErrJSON) {
			t.Errorf("%s: got %v", num, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v", num, d)
		}
	}
	for _, ok := range []string{"0", "-0.0", "0e-400", "1.5e300", "12345678901234567890"} {
		if err := checkNumber(jsonNumber(ok)); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

// TestSchemaSizeBounded: a configuration or schema over its bound is
// refused before the validator sees it.
func TestSchemaSizeBounded(t *testing.T) {
	props := map[string]any{}
	for i := 0; i < maxSchemaNodes; i++ {
		props[fmt.Sprint("p", i)] = map[string]any{}
	}
	if cs, ps := CompileConfigSchema(map[string]any{"properties": props}, "spec.configSchema"); cs != nil || len(ps) != 1 || ps[0].Code != CodeRange {
		t.Errorf("big schema: %v", ps)
	}
	cs, ps := CompileConfigSchema(map[string]any{"type": "object"}, "spec.configSchema")
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	list := make([]any, maxConfigNodes)
	if ps := cs.Validate(map[string]any{"l": list}, "spec.config"); len(ps) != 1 || ps[0].Code != CodeRange {
		t.Errorf("big config: %v", ps)
	}
}

func jsonNumber(s string) json.Number { return json.Number(s) }
