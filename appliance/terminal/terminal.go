// Package terminal makes foreign strings safe to print on a terminal.
//
// A string read from a report, a file on the ESP or a probed device can hold
// bytes a terminal obeys rather than shows: CR and ESC sequences that erase
// or rewrite a line (a forged "VERIFIED" over a failed check), C1 controls
// that some terminals take as CSI, and Unicode bidi overrides that reorder
// what the reader sees. Escape shows each of them as a visible escape
// (\r, \x1b, \u202e) and leaves every other character as it is, so that
// ordinary text prints unchanged.
package terminal

import (
	"io"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Unsafe reports whether a terminal would act on r, or hide it, instead of
// showing it: C0 and C1 controls and DEL (Cc), invisible formatting
// characters including every bidi override, isolate and mark (Cf), and the
// line and paragraph separators (Zl, Zp), which some terminals break lines on.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f:
		return true
	case r < 0x7f:
		return false // the common case, without a table look-up
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}

// FirstUnsafe returns the byte offset of the first unsafe rune or invalid
// UTF-8 byte in s, and that rune (utf8.RuneError for an invalid byte), or
// -1 when s prints as it is.
func FirstUnsafe(s string) (int, rune) {
	for i, r := range s {
		if Unsafe(r) {
			return i, r
		}
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return i, r
			}
		}
	}
	return -1, 0
}

// Escape returns s with every unsafe rune (see Unsafe) and every invalid
// UTF-8 byte replaced by a visible escape: \t \n \r for those three,
// \xNN for other ASCII controls and invalid bytes, \uNNNN or \UNNNNNNNN for
// the rest. Everything else, backslashes included, is left as it is: the
// result is for a person to read, not to be parsed back.
func Escape(s string) string {
	i, _ := FirstUnsafe(s)
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	return string(appendEscaped(b, s[i:], false))
}

// appendEscaped appends s to b escaped; keepLines leaves \n and \t as they
// are, for text whose line structure is the writer's own.
// EscapeAll is Escape of each of ss; nil for none.
func EscapeAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = Escape(s)
	}
	return out
}

func appendEscaped(b []byte, s string, keepLines bool) []byte {
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			b = appendHex(b, s[0])
		case keepLines && (r == '\n' || r == '\t'):
			b = append(b, byte(r))
		case !Unsafe(r):
			b = append(b, s[:size]...)
		case r == '\t':
			b = append(b, `\t`...)
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r < utf8.RuneSelf:
			b = appendHex(b, byte(r))
		case r <= 0xffff:
			b = append(b, `\u`...)
			b = appendPadded(b, r, 4)
		default:
			b = append(b, `\U`...)
			b = appendPadded(b, r, 8)
		}
		s = s[size:]
	}
	return b
}

func appendHex(b []byte, c byte) []byte {
	const hex = "0123456789abcdef"
	return append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
}

func appendPadded(b []byte, r rune, width int) []byte {
	h := strconv.FormatInt(int64(r), 16)
	for range width - len(h) {
		b = append(b, '0')
	}
	return append(b, h...)
}

// NewWriter returns a writer that escapes, as Escape does, everything
// written through it except newlines and tabs. It is for output whose lines
// a function of another package composes from foreign strings: it stops
// control sequences, though not a newline inside a value; escape each value
// with Escape where the code that formats it allows. Each Write is escaped
// on its own, so a rune split across two writes shows as \xNN escapes.
func NewWriter(w io.Writer) io.Writer { return &writer{w: w} }

type writer struct{ w io.Writer }

func (w *writer) Write(p []byte) (int, error) {
	if _, err := w.w.Write(appendEscaped(nil, string(p), true)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// EscapeJSON rewrites JSON text, as encoding/json writes it, so that it
// prints safely and still decodes to the same values: every unsafe rune
// inside a string becomes its \uNNNN escape (a surrogate pair above U+FFFF).
// encoding/json already escapes the C0 controls and U+2028/U+2029 in
// strings, so the runes left are DEL, the C1 controls and the formatting
// characters; whitespace between tokens is kept. Invalid UTF-8, which
// encoding/json never writes, is replaced by U+FFFD.
func EscapeJSON(data []byte) []byte {
	out := make([]byte, 0, len(data))
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		switch {
		case r == utf8.RuneError && size == 1:
			out = append(out, `\ufffd`...)
		case r == '\n' || r == '\t' || r == '\r' || !Unsafe(r):
			out = append(out, data[:size]...)
		case r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			out = append(out, `\u`...)
			out = appendPadded(out, hi, 4)
			out = append(out, `\u`...)
			out = appendPadded(out, lo, 4)
		default:
			out = append(out, `\u`...)
			out = appendPadded(out, r, 4)
		}
		data = data[size:]
	}
	return out
}
