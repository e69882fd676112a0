package report

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is how deeply arrays and objects may nest in a report. A v2
// report nests five levels deep; the bound keeps a hostile file from
// driving the recursive parser and canonicaliser through millions of levels.
const MaxDepth = 64

// DefaultMaxBytes is the largest report Verify reads unless told otherwise:
// a real report is tens of kilobytes, an enterprise one with every
// control and its evidence well under a megabyte.
const DefaultMaxBytes = 16 << 20

// bytesPerValue bounds how many JSON values a document of n bytes may hold
// (n/bytesPerValue): a real report spends over twenty bytes on each, even
// compacted, while "[[],[],…" spends three, each costing the parser many
// times that in memory.
const bytesPerValue = 8

// The limits a document can exceed; errors.Is matches a *LimitError to one.
var (
	ErrTooLarge  = errors.New("document is larger than the limit")
	ErrTooDeep   = errors.New("document nests deeper than the limit")
	ErrTooMany   = errors.New("document holds more values than the limit")
	errNotString = errors.New("object member name is not a string")
)

// LimitError says which limit a document went over, and where.
type LimitError struct {
	Err   error  // ErrTooLarge, ErrTooDeep or ErrTooMany
	Where string // the member path, "" for the whole document
	Limit int64
}

func (e *LimitError) Error() string {
	switch e.Err {
	case ErrTooDeep:
		return fmt.Sprintf("%s: nested deeper than %d levels", pathName(e.Where), e.Limit)
	case ErrTooMany:
		return fmt.Sprintf("%s: more than %d values in the document", pathName(e.Where), e.Limit)
	}
	return fmt.Sprintf("document is larger than the limit of %d bytes", e.Limit)
}

func (e *LimitError) Unwrap() error { return e.Err }

// parseStrict decodes one JSON value into the generic form (map[string]any,
// []any, string, json.Number, bool, nil). Unlike encoding/json it refuses a
// duplicated object member: two parsers that keep different duplicates
// (Go keeps the last, others the first) would let one document show an auditor
// one value while hashing another. It also refuses nesting beyond MaxDepth
// and more values than the size of data can honestly hold.
func parseStrict(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	p := &parser{dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	p.maxValues = max(int64(len(data))/bytesPerValue, 1024)
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, errors.New("data after the top-level value")
	}
	return v, nil
}

// parser walks the decoder's tokens. Its path is a stack of member names and
// indexes, formatted only for an error, so that a long or deep document costs
// no string building on the way down.
type parser struct {
	dec       *json.Decoder
	path      []pathElem
	values    int64
	maxValues int64
}

// pathElem is one step of a member path: an object member or an array index.
type pathElem struct {
	key   string
	index int // -1 for an object member
}

func formatPath(path []pathElem) string {
	var b strings.Builder
	for _, e := range path {
		if e.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.index))
			b.WriteByte(']')
		} else {
			b.WriteByte('.')
			b.WriteString(e.key)
		}
	}
	return b.String()
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{pathName(formatPath(p.path))}, args...)...)
}

func (p *parser) value() (any, error) {
	if p.values++; p.values > p.maxValues {
		return nil, &LimitError{Err: ErrTooMany, Where: formatPath(p.path), Limit: p.maxValues}
	}
	tok, err := p.dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, p.errorf("%w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if len(p.path) >= MaxDepth {
		return nil, &LimitError{Err: ErrTooDeep, Where: formatPath(p.path), Limit: MaxDepth}
	}
	switch d {
	case '{':
		return p.object()
	case '[':
		return p.array()
	}
	return nil, p.errorf("unexpected %v", d)
}

func (p *parser) object() (any, error) {
	obj := map[string]any{}
	for p.dec.More() {
		kt, err := p.dec.Token()
		if err != nil {
			return nil, p.errorf("%w", err)
		}
		key, ok := kt.(string)
		if !ok {
			return nil, p.errorf("%w", errNotString)
		}
		if _, dup := obj[key]; dup {
			return nil, p.errorf("member %q appears twice", key)
		}
		p.path = append(p.path, pathElem{key: key, index: -1})
		v, err := p.value()
		p.path = p.path[:len(p.path)-1]
		if err != nil {
			return nil, err
		}
		obj[key] = v
	}
	if _, err := p.dec.Token(); err != nil {
		return nil, p.errorf("%w", err)
	}
	return obj, nil
}

func (p *parser) array() (any, error) {
	arr := []any{}
	for i := 0; p.dec.More(); i++ {
		p.path = append(p.path, pathElem{index: i})
		v, err := p.value()
		p.path = p.path[:len(p.path)-1]
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	if _, err := p.dec.Token(); err != nil {
		return nil, p.errorf("%w", err)
	}
	return arr, nil
}

func pathName(p string) string {
	if p == "" {
		return "document"
	}
	return strings.TrimPrefix(p, ".")
}

// canonical appends the RFC 8785 (JSON Canonicalization Scheme) form of a
// generic value to b: no insignificant whitespace, object members sorted by
// the UTF-16 code units of their names, strings with only the escapes JSON
// requires, numbers as ECMAScript prints them.
func canonical(b []byte, v any) ([]byte, error) {
	return canonicalAt(b, v, 0)
}

// canonicalAt is canonical for a value nested depth levels deep; it refuses
// to go past MaxDepth, whoever built the value.
func canonicalAt(b []byte, v any, depth int) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if t {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case string:
		return canonicalString(b, t), nil
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s cannot be represented", t)
		}
		return append(b, es6Number(f)...), nil
	case []any:
		if depth >= MaxDepth {
			return nil, &LimitError{Err: ErrTooDeep, Limit: MaxDepth}
		}
		b = append(b, '[')
		for i, e := range t {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = canonicalAt(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		if depth >= MaxDepth {
			return nil, &LimitError{Err: ErrTooDeep, Limit: MaxDepth}
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = canonicalString(b, k)
			b = append(b, ':')
			var err error
			if b, err = canonicalAt(b, t[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, fmt.Errorf("cannot canonicalise %T", v)
}

// compareUTF16 orders names by their UTF-16 code units, as RFC 8785 asks,
// without converting them: a sort calls it n log n times.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			return cmp.Compare(utf16Key(ra), utf16Key(rb))
		}
		a, b = a[na:], b[nb:]
	}
	return cmp.Compare(len(a), len(b))
}

// utf16Key maps a rune to a number that orders as its first UTF-16 code
// unit, then its second: runes above U+FFFF become surrogate pairs, which
// sort below U+E000..U+FFFF.
func utf16Key(r rune) uint32 {
	if r < 0x10000 {
		return uint32(r) << 16
	}
	hi, lo := utf16.EncodeRune(r)
	return uint32(hi)<<16 | uint32(lo)
}

func canonicalString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch r {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if r < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
			} else {
				b = utf8.AppendRune(b, r)
			}
		}
	}
	return append(b, '"')
}

// es6Number formats f as ECMAScript's Number.prototype.toString does, which
// is what RFC 8785 prescribes.
func es6Number(f float64) string {
	if f == 0 {
		return "0"
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	// Shortest round-tripping digits and the decimal exponent.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, exps, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(exps)
	k, n := len(digits), exp+1
	switch {
	case k <= n && n <= 21:
		return sign + digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		return sign + digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		return sign + "0." + strings.Repeat("0", -n) + digits
	}
	m := digits[:1]
	if k > 1 {
		m += "." + digits[1:]
	}
	es := "+"
	if n-1 < 0 {
		es = "-"
	}
	return sign + m + "e" + es + strconv.Itoa(abs(n-1))
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}
