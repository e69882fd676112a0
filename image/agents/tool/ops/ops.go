// Package ops holds the structured tasks of the sample tool agent: text
// extraction, extractive summaries and JSON transforms. The web agent uses
// the same extraction, so it lives in a library rather than in package main.
//
// A task is one JSON object, {"op": "...", ...}. Its input is hostile: the
// caller caps its size, Run bounds nesting, refuses unknown fields (naming
// them) and caps what it produces, and every refusal is an *Error that names
// a stable code and, where one is at fault, the field.
package ops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// Limits on what a task may ask for. MaxInput is enforced by the caller
// (the agent reads at most that much of its standard input); Run checks it
// again so that a library caller cannot bypass it.
const (
	MaxInput  = 1 << 20 // bytes of task input
	MaxOutput = 4 << 20 // bytes of task output
	MaxDepth  = 64      // nesting of objects and arrays in the input
)

// Error codes. They are part of the agent's interface: callers match on
// them, never on the message.
const (
	CodeInputTooLarge  = "input_too_large"
	CodeInvalidJSON    = "invalid_json"
	CodeTooDeep        = "too_deep"
	CodeInvalidRequest = "invalid_request"
	CodeUnknownOp      = "unknown_op"
	CodeUnknownField   = "unknown_field"
	CodeInvalidField   = "invalid_field"
	CodeConflict       = "conflict"
	CodeOutputTooLarge = "output_too_large"
	CodeInternal       = "internal"
)

// Error is a refused or failed task. Field is a path into the request
// ("kinds[2]", "rename.a") or empty when no single field is at fault.
type Error struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return e.Code + ": " + e.Message
}

func errorf(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorBody is what the agent writes on standard output for a failed task.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// AsError returns err as an *Error, wrapping anything else as internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// Env is what the inspect op looks at: the root of the filesystem, the proc
// file system and the scratch directory. Tests point them at a temp dir.
type Env struct {
	Root string
	Proc string
	Tmp  string
}

// DefaultEnv is the agent's own view inside its container.
var DefaultEnv = Env{Root: "/", Proc: "/proc", Tmp: "/tmp"}

type opFunc func(env Env, raw []byte) (any, error)

type opSpec struct {
	fields []string // every field the op accepts, "op" included
	run    opFunc
}

var opTable = map[string]opSpec{
	"extract":   {fields: []string{"op", "text", "kinds"}, run: runExtract},
	"summarize": {fields: []string{"op", "text", "sentences"}, run: runSummarize},
	"transform": {fields: []string{"op", "input", "pick", "rename", "flatten", "separator"}, run: runTransform},
	"inspect":   {fields: []string{"op"}, run: runInspect},
}

// Ops lists the operations Run knows, sorted.
func Ops() []string {
	names := make([]string, 0, len(opTable))
	for name := range opTable {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Run performs one task and returns its JSON result (newline-terminated).
// Every error it returns is an *Error.
func Run(env Env, input []byte) ([]byte, error) {
	if len(input) > MaxInput {
		return nil, errorf(CodeInputTooLarge, "", "the task input is larger than %d bytes", MaxInput)
	}
	if err := checkJSON(input); err != nil {
		return nil, err
	}
	fields, err := topLevelFields(input)
	if err != nil {
		return nil, err
	}
	op, err := opName(fields)
	if err != nil {
		return nil, err
	}
	spec := opTable[op]
	if err := checkFields(op, spec.fields, fields); err != nil {
		return nil, err
	}
	result, err := spec.run(env, input)
	if err != nil {
		return nil, err
	}
	// The result is data for the runtime, not HTML: "&" stays "&".
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(result); err != nil {
		return nil, errorf(CodeInternal, "", "encoding the result: %v", err)
	}
	if buf.Len() > MaxOutput {
		return nil, errorf(CodeOutputTooLarge, "", "the result would be %d bytes, over the limit of %d", buf.Len(), MaxOutput)
	}
	return buf.Bytes(), nil
}

func opName(fields map[string]json.RawMessage) (string, error) {
	raw, ok := fields["op"]
	if !ok {
		return "", errorf(CodeInvalidRequest, "op", "missing; one of %v is required", Ops())
	}
	var op string
	if err := json.Unmarshal(raw, &op); err != nil {
		return "", errorf(CodeInvalidField, "op", "must be a string")
	}
	if _, ok := opTable[op]; !ok {
		return "", errorf(CodeUnknownOp, "op", "%q is not an operation; one of %v", op, Ops())
	}
	return op, nil
}

func checkFields(op string, allowed []string, fields map[string]json.RawMessage) error {
	var unknown []string
	for name := range fields {
		if !contains(allowed, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return errorf(CodeUnknownField, unknown[0], "op %q does not take this field; it takes %v", op, allowed)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// decodeStrict decodes the request into v, turning a type mismatch into an
// invalid_field error that names the field.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errorf(CodeInvalidField, te.Field, "must be %s, not a JSON %s", jsonKind(te.Type.Kind().String()), te.Value)
		}
		return errorf(CodeInvalidJSON, "", "decoding the request: %v", err)
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return "a " + goKind
}
