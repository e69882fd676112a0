package auth

import (
	"strings"
	"unicode"
)

// MaxUsernameBytes and MaxTokenNameBytes bound names shown in lists, audit
// records and URLs.
const (
	MaxUsernameBytes  = 64
	MaxTokenNameBytes = 64
)

// NormalizeUsername returns the stored form of a username (ASCII lower
// case), or an *InvalidError naming the rule it breaks. Usernames are
// restricted to a-z, 0-9 and . _ - @ so that one never needs quoting in a
// URL, a log line or a terminal, and two that look alike are the same.
func NormalizeUsername(s string) (string, error) {
	switch {
	case s == "":
		return "", invalid("username", "is required")
	case len(s) > MaxUsernameBytes:
		return "", invalid("username", "must be at most 64 bytes")
	case strings.ContainsFunc(s, unicode.IsControl):
		return "", invalid("username", "must not contain control characters")
	}
	// Lower case by hand: strings.ToLower maps some non-ASCII letters
	// (U+212A KELVIN SIGN) to ASCII ones, which would let a look-alike in.
	b := []byte(s)
	for i, c := range b {
		c = asciiLower(c)
		if c >= 0x80 || !isNameChar(rune(c)) {
			return "", invalid("username", "must use only letters a-z, digits and . _ - @")
		}
		b[i] = c
	}
	u := string(b)
	if !isAlnum(rune(u[0])) {
		return "", invalid("username", "must start with a letter or a digit")
	}
	return u, nil
}

func asciiLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func isAlnum(r rune) bool { return ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') }

func isNameChar(r rune) bool { return isAlnum(r) || strings.ContainsRune("._-@", r) }

// checkTokenName bounds an API token's name: printable, one line, no
// leading or trailing space.
func checkTokenName(s string) error {
	switch {
	case s == "":
		return invalid("name", "is required")
	case len(s) > MaxTokenNameBytes:
		return invalid("name", "must be at most 64 bytes")
	case strings.TrimSpace(s) != s:
		return invalid("name", "must not start or end with a space")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(rune(asciiLower(c))) && !strings.ContainsRune("._-@ :/", rune(c)) {
			return invalid("name", "must use only letters a-z or A-Z, digits, spaces and . _ - @ : /")
		}
	}
	return nil
}
