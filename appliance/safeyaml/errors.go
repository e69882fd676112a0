package safeyaml

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// The refusals, for errors.Is. A plain syntax or type error unwraps to
// ErrSyntax or ErrType.
var (
	ErrTooLarge          = errors.New("document is larger than the limit")
	ErrTooDeep           = errors.New("document nests deeper than the limit")
	ErrTooManyNodes      = errors.New("document holds more values than the limit")
	ErrSequenceTooLong   = errors.New("sequence is longer than the limit")
	ErrMappingTooLong    = errors.New("mapping has more entries than the limit")
	ErrAlias             = errors.New("anchors, aliases and merge keys are not accepted")
	ErrTag               = errors.New("tags are not accepted")
	ErrDirective         = errors.New("directives are not accepted")
	ErrMultipleDocuments = errors.New("more than one document")
	ErrSyntax            = errors.New("not valid YAML")
	ErrType              = errors.New("value of the wrong type")
	ErrUnknownField      = errors.New("unknown field")
	ErrDuration          = errors.New("not a duration")
)

// Error is one problem with a document, on one line.
type Error struct {
	// Line and Column are 1-based; 0 when the position is not known.
	Line, Column int
	// Field is the dotted path of the value, e.g. "network.interfaces[0].name";
	// empty when not known or at the top.
	Field string
	// Reason says what is wrong, with any text from the document escaped.
	Reason string
	// Err is the class of the problem (ErrTooDeep, ...) or go-yaml's error.
	Err error
}

// Error renders "LINE:COL: field "F": REASON", leaving out what is unknown,
// so that a caller can put "FILE:" in front.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Column)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %s: ", strconv.Quote(e.Field))
	}
	b.WriteString(e.Reason)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// HasPosition reports whether the error names a line and column, so that a
// caller can write "FILE:LINE:COL: ..." rather than "FILE: ...".
func (e *Error) HasPosition() bool { return e.Line > 0 }

// OneLine turns an error from go-yaml (multi-line, quoting the source, and
// copying the document's text raw) into an *Error: one line, with the
// position and any foreign text escaped. Other errors are escaped and
// wrapped the same way; nil stays nil.
func OneLine(err error) error { return oneLine(err, nil) }

type tokenPos struct{ line, col int }

func posOf(tk *token.Token) tokenPos {
	if tk == nil || tk.Position == nil {
		return tokenPos{}
	}
	return tokenPos{tk.Position.Line, tk.Position.Column}
}

func errAt(p tokenPos, field, reason string, class error) *Error {
	return &Error{Line: p.line, Column: p.col, Field: field, Reason: reason, Err: class}
}

// oneLine converts err; body, when given, is searched for the field path of
// the token the error points at.
func oneLine(err error, body ast.Node) error {
	if err == nil {
		return nil
	}
	var own *Error
	if errors.As(err, &own) {
		return own
	}
	var ye yaml.Error
	if !errors.As(err, &ye) {
		e := &Error{Reason: shorten(escape(err.Error()), maxMessage), Err: err}
		if errors.Is(err, yaml.ErrExceededMaxDepth) {
			e.Err = ErrTooDeep
		}
		return e
	}
	tk := ye.GetToken()
	e := errAt(posOf(tk), "", shorten(escape(ye.GetMessage()), maxMessage), err)
	if body != nil && tk != nil {
		e.Field = fieldAt(body, tk)
	}
	var (
		te *yaml.TypeError
		ue *yaml.UnknownFieldError
		se *yaml.SyntaxError
	)
	switch {
	case errors.As(err, &te):
		e.Reason = fmt.Sprintf("must be a %s, not a %s", kindName(te.DstType), kindName(te.SrcType))
		e.Err = errors.Join(ErrType, err)
	case errors.As(err, &ue):
		// go-yaml writes the key raw inside quotes; quote it properly.
		e.Reason = "unknown field " + strconv.Quote(shorten(tokenText(tk), maxKeyText))
		e.Field = parentField(e.Field)
		e.Err = errors.Join(ErrUnknownField, err)
	case errors.As(err, &se):
		e.Err = errors.Join(ErrSyntax, err)
	}
	return e
}

func tokenText(tk *token.Token) string {
	if tk == nil {
		return ""
	}
	return tk.Value
}

// parentField drops the last element of a dotted path: an unknown key's
// path names the key itself, the message names where it was found.
func parentField(f string) string {
	if i := strings.LastIndexAny(f, ".["); i >= 0 {
		return f[:i]
	}
	return ""
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	if t == durationType {
		return "duration such as 30s, 10m or 2h"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "number"
	case reflect.Float32, reflect.Float64:
		return "decimal number"
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "mapping"
	case reflect.Pointer:
		return kindName(t.Elem())
	}
	return t.String()
}

// escape makes text from a document safe for one line of a log, a terminal
// or a comment in a generated file: control characters (C0, DEL, C1),
// line and paragraph separators, bidirectional overrides and invalid UTF-8
// are written as Go escapes; everything printable stays as it is.
func escape(s string) string {
	clean := true
	for _, r := range s {
		if !safeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case safeRune(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// maxKeyText bounds a key quoted in a message or a path: a 60 KiB key must
// not make a 60 KiB message.
const maxKeyText = 64

// maxMessage bounds go-yaml's own messages, which may quote the document.
const maxMessage = 200

// shorten cuts s to at most n bytes, on a character boundary, marking the
// cut with "...".
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Escape is escape for callers that write text from a document into a
// message of their own.
func Escape(s string) string { return escape(s) }

func safeRune(r rune) bool {
	return r == ' ' || r != utf8.RuneError && strconv.IsPrint(r)
}
