// Package safeyaml decodes YAML that may be hostile: a site configuration an
// administrator dropped on the ESP, an agent manifest uploaded to the API.
//
// go-yaml on its own expands aliases (a 500-byte "billion laughs" file
// exhausts memory), and its parser needs time and memory that grow with the
// square of the nesting depth (64 KiB of "[" took 6 GB and 14 s). Unmarshal
// therefore checks the token stream before parsing and the syntax tree before
// decoding: one document, no anchors, aliases, merge keys, tags or
// directives, and the size, depth, value count and the length of every
// sequence and mapping within Limits. Nothing is expanded or allocated in proportion to an attack before
// those checks pass.
package safeyaml

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

// Limits bound what one document may hold.
type Limits struct {
	// MaxBytes is the largest input accepted.
	MaxBytes int
	// MaxDepth is the deepest nesting of mappings and sequences; a
	// top-level mapping of scalars has depth 1.
	MaxDepth int
	// MaxNodes is the most values (scalars, mappings, sequences, keys
	// included) in the document.
	MaxNodes int
	// MaxSeqLen is the most items in any one sequence.
	MaxSeqLen int
	// MaxMapLen is the most entries in any one mapping (go-yaml's parser
	// recurses once per entry of a mapping, so its cost grows with the
	// square of this). 0 means DefaultLimits' value, like the others.
	MaxMapLen int
}

// DefaultLimits fit a configuration file or a manifest with room to spare.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 64 << 10, MaxDepth: 32, MaxNodes: 10000, MaxSeqLen: 256, MaxMapLen: 256}
}

// Unmarshal decodes exactly one YAML document from data into v, which must
// be a non-nil pointer. Decoding is strict: a key that names no field of a
// struct is an error, and so is a duplicate key. An empty document (only
// whitespace and comments) leaves v untouched.
//
// A time.Duration field takes a string such as "30s" or "2h", or the bare
// integer 0; any other number is refused, because it has no unit.
//
// Every error is an *Error: one line, naming the position (when known), the
// field and the reason, with foreign text escaped. errors.Is tells the
// refusals apart (ErrTooLarge, ErrTooDeep, ErrAlias, ...).
func Unmarshal(data []byte, v any, lim Limits) (err error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &Error{Reason: fmt.Sprintf("cannot decode into %T: need a non-nil pointer", v)}
	}
	lim = lim.withDefaults()
	if len(data) > lim.MaxBytes {
		return &Error{Reason: fmt.Sprintf("larger than the limit of %d bytes", lim.MaxBytes), Err: ErrTooLarge}
	}
	// go-yaml is third-party code fed hostile input; a panic in it must
	// not take the caller (first boot, omertad) down with it.
	defer func() {
		if p := recover(); p != nil {
			err = &Error{Reason: escape(fmt.Sprintf("the YAML decoder failed on this input: %v", p)), Err: errors.Join(ErrSyntax, errDecoderPanic)}
		}
	}()
	tokens := lexer.Tokenize(string(data))
	if err := checkTokens(tokens, lim); err != nil {
		return err
	}
	file, err := parser.Parse(tokens, 0)
	if err != nil {
		return oneLine(err, nil)
	}
	body, err := document(file)
	if err != nil || body == nil {
		return err
	}
	if err := checkTree(body, lim); err != nil {
		return err
	}
	if err := checkDurations(body, rv.Type(), ""); err != nil {
		return err
	}
	opts := []yaml.DecodeOption{yaml.DisallowUnknownField(), yaml.CustomUnmarshaler[time.Duration](decodeDuration)}
	if err := yaml.NodeToValue(body, v, opts...); err != nil {
		return oneLine(err, body)
	}
	return nil
}

// errDecoderPanic marks a panic inside go-yaml, recovered; the fuzz test
// looks for it.
var errDecoderPanic = errors.New("decoder panicked")

// withDefaults fills unset limits from DefaultLimits, so that a zero Limits
// is not "nothing allowed" by accident.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxNodes <= 0 {
		l.MaxNodes = d.MaxNodes
	}
	if l.MaxSeqLen <= 0 {
		l.MaxSeqLen = d.MaxSeqLen
	}
	if l.MaxMapLen <= 0 {
		l.MaxMapLen = d.MaxMapLen
	}
	return l
}

// document returns the body of the file's only document, nil when it is
// empty.
func document(f *ast.File) (ast.Node, error) {
	var body ast.Node
	n := 0
	for _, d := range f.Docs {
		if d == nil {
			continue
		}
		n++
		if n > 1 {
			return nil, errAt(docToken(d), "", "a second YAML document is not accepted; the file must hold one document", ErrMultipleDocuments)
		}
		body = d.Body
	}
	if _, ok := body.(*ast.CommentNode); ok {
		return nil, nil
	}
	if _, ok := body.(*ast.CommentGroupNode); ok {
		return nil, nil
	}
	return body, nil
}

func docToken(d *ast.DocumentNode) tokenPos {
	if d.Start != nil {
		return posOf(d.Start)
	}
	if d.Body != nil {
		return posOf(d.Body.GetToken())
	}
	return tokenPos{}
}
