package agents

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// quote shows a foreign string in a message: quoted, escaped, cut short.
func quote(s string) string {
	const max = 128
	if len(s) > max {
		return strconv.Quote(cut(s, max)) + "…"
	}
	return strconv.Quote(s)
}

// oneLine makes an error or stderr text safe to store and show as one line:
// controls (newlines included) escaped, at most max bytes.
func oneLine(s string, max int) string {
	s = terminal.Escape(s)
	if len(s) > max {
		return cut(s, max) + "…"
	}
	return s
}

// cut shortens s to at most n bytes without splitting a rune.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// newID is a random identifier with a prefix ("t-" for tasks).
func newID(prefix string) string {
	b := make([]byte, 10)
	rand.Read(b) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b)
}
