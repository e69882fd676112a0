package manifest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// Code classifies a Problem so that callers (the API, tests) can tell
// refusals apart without reading the message.
type Code string

// The problem codes.
const (
	CodeSyntax       Code = "syntax"        // not YAML or JSON, or over a parser limit
	CodeUnknownField Code = "unknown-field" // a key the format does not have
	CodeHostAccess   Code = "host-access"   // a key asking for host privileges
	CodeType         Code = "type"          // a value of the wrong kind
	CodeRequired     Code = "required"      // a required value is missing
	CodeInvalid      Code = "invalid"       // a value of the right kind but not allowed
	CodeRange        Code = "range"         // a number or size outside its bounds
	CodeTooMany      Code = "too-many"      // a list longer than its bound
	CodeDuplicate    Code = "duplicate"     // a name or number given twice
	CodeUnavailable  Code = "unavailable"   // a feature another issue builds
	CodeConfig       Code = "config"        // spec.config does not match spec.configSchema
)

// Problem is one refusal: the field it concerns and why. Reason quotes any
// value it repeats from the input (strconv.Quote), so it is safe to print.
type Problem struct {
	Path   string `json:"path"`
	Code   Code   `json:"code"`
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Reason
	}
	return p.Path + ": " + p.Reason
}

// Problems is every refusal found in one document. It is an error so that
// Parse can return it; errors.As recovers it.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error, or nil when it is empty.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

func (ps *Problems) add(path string, code Code, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Code: code, Reason: fmt.Sprintf(format, args...)})
}

// under reports whether some problem concerns path or a field above it,
// so that a value which failed to decode is not reported a second time as
// missing or invalid.
func (ps Problems) under(path string) bool {
	for _, p := range ps {
		if p.Path == path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") {
			return true
		}
	}
	return false
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// Key appends a mapping key to a field path; a key that is not a plain
// identifier is quoted, so that a hostile key cannot forge a path or reach
// the terminal raw.
func Key(path, key string) string {
	if !plainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// Index appends a list index to a field path.
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// quote shows a foreign value in a reason: quoted, escaped and cut short.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		cut := max
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// sanitize makes a message from a library (which may repeat input raw)
// safe to print on one line.
func sanitize(s string) string {
	return terminal.Escape(s)
}
