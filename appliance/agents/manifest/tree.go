package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// MaxManifestBytes bounds one manifest. A manifest is a page of YAML; the
// configuration schema inside it is the largest part.
const MaxManifestBytes = 128 << 10

// Limits returns the parser limits for one manifest.
func Limits() safeyaml.Limits {
	return safeyaml.Limits{MaxBytes: MaxManifestBytes, MaxDepth: 32, MaxNodes: 20000, MaxSeqLen: 256}
}

// ErrNotJSONValue is wrapped by ParseTree's error for a YAML value that has
// no JSON counterpart (NaN, infinity).
var ErrNotJSONValue = errors.New("value has no JSON form")

// ParseTree reads one YAML or JSON document into plain JSON values:
// map[string]any, []any, string, json.Number, bool and nil. JSON (a
// document starting with "{") is read as JSON, so that its numbers and
// escapes mean what JSON says; anything else goes through safeyaml, which
// refuses aliases, tags, several documents and documents over the limits.
// Duplicate keys are refused in both.
func ParseTree(data []byte, lim safeyaml.Limits) (any, error) {
	if len(data) > lim.MaxBytes {
		return nil, fmt.Errorf("larger than the limit of %d bytes: %w", lim.MaxBytes, safeyaml.ErrTooLarge)
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return parseJSON(data, lim)
	}
	var v any
	if err := safeyaml.Unmarshal(data, &v, lim); err != nil {
		return nil, err
	}
	return fromYAML(v)
}

// fromYAML turns go-yaml's values into JSON's: numbers become json.Number,
// so that one walk serves both inputs and JSON Schema sees exact numbers.
func fromYAML(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := fromYAML(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", Key("", k), err)
			}
			x[k] = c
		}
		return x, nil
	case []any:
		for i, e := range x {
			c, err := fromYAML(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			x[i] = c
		}
		return x, nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, ErrNotJSONValue
		}
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), nil
	case string, bool, nil:
		return x, nil
	}
	return nil, fmt.Errorf("a %T: %w", v, ErrNotJSONValue)
}

// ErrJSON is wrapped by ParseTree's error for JSON that is malformed,
// nested too deep, too large, or repeats a key.
var ErrJSON = errors.New("not accepted as JSON")

// parseJSON builds the tree from tokens, so that a repeated key (which
// encoding/json would silently overwrite) is refused and depth and size
// stay bounded.
func parseJSON(data []byte, lim safeyaml.Limits) (any, error) {
	p := jsonParser{dec: json.NewDecoder(bytes.NewReader(data)), lim: lim}
	p.dec.UseNumber()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON document: %w", ErrJSON)
	}
	return v, nil
}

type jsonParser struct {
	dec   *json.Decoder
	lim   safeyaml.Limits
	nodes int
}

func (p *jsonParser) value(depth int) (any, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sanitize(err.Error()), ErrJSON)
	}
	if p.nodes++; p.nodes > p.lim.MaxNodes {
		return nil, fmt.Errorf("more than %d values: %w", p.lim.MaxNodes, ErrJSON)
	}
	if n, ok := tok.(json.Number); ok {
		return n, checkNumber(n)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth >= p.lim.MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d: %w", p.lim.MaxDepth, ErrJSON)
	}
	if d == '{' {
		return p.object(depth)
	}
	return p.array(depth)
}

func (p *jsonParser) object(depth int) (any, error) {
	obj := map[string]any{}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sanitize(err.Error()), ErrJSON)
		}
		k, _ := tok.(string)
		if _, dup := obj[k]; dup {
			return nil, fmt.Errorf("key %s given twice: %w", quote(k), ErrJSON)
		}
		if obj[k], err = p.value(depth + 1); err != nil {
			return nil, err
		}
	}
	_, err := p.dec.Token() // '}'
	return obj, err
}

func (p *jsonParser) array(depth int) (any, error) {
	arr := []any{}
	for p.dec.More() {
		if len(arr) >= p.lim.MaxSeqLen {
			return nil, fmt.Errorf("a list longer than %d items: %w", p.lim.MaxSeqLen, ErrJSON)
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	_, err := p.dec.Token() // ']'
	return arr, err
}

// checkNumber refuses a JSON number that no float64 holds, or that is
// long: the schema validator turns numbers into exact rationals, and
// 1e-99999999 would take it minutes and gigabytes (1e99999999 crashed it).
func checkNumber(n json.Number) error {
	s := string(n)
	if len(s) > 40 {
		return fmt.Errorf("the number %s… has more than 40 characters: %w", s[:20], ErrJSON)
	}
	f, err := strconv.ParseFloat(s, 64)
	mantissa, _, _ := strings.Cut(strings.ToLower(s), "e")
	if err != nil || (f == 0 && strings.ContainsAny(mantissa, "123456789")) {
		return fmt.Errorf("the number %s is outside what a float64 holds: %w", s, ErrJSON)
	}
	return nil
}
