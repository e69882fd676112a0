package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// checkJSON walks the input token by token before anything decodes it, so
// that nesting is bounded (encoding/json alone allows 10000 levels, and the
// transforms recurse) and trailing data after the one value is refused.
func checkJSON(input []byte) error {
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.UseNumber()
	depth := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if depth != 0 {
				return errorf(CodeInvalidJSON, "", "the input ends inside an object or array")
			}
			return errorf(CodeInvalidJSON, "", "the input is empty; a JSON object is expected")
		}
		if err != nil {
			return errorf(CodeInvalidJSON, "", "at byte %d: %v", dec.InputOffset(), err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
				if depth > MaxDepth {
					return errorf(CodeTooDeep, "", "objects and arrays nest deeper than %d levels", MaxDepth)
				}
			} else {
				depth--
			}
		}
		if depth == 0 {
			break
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(CodeInvalidJSON, "", "at byte %d: data after the JSON value", dec.InputOffset())
	}
	return nil
}

// topLevelFields returns the request object's members undecoded.
func topLevelFields(input []byte) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimLeft(input, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errorf(CodeInvalidRequest, "", "the task input must be a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(input, &fields); err != nil {
		return nil, errorf(CodeInvalidJSON, "", "decoding the request: %v", err)
	}
	return fields, nil
}
