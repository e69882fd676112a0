package auth

import (
	"bufio"
	_ "embed"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Password bounds. Length is counted in characters; the byte bound keeps
// hashing cost and request sizes sane. There are no composition rules:
// length and a refusal list do more for strength (NIST SP 800-63B 3.1.1.2).
const (
	MinPasswordChars = 12
	MaxPasswordBytes = 1024
)

//go:embed common-passwords.txt
var commonPasswordsText string

var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	set := map[string]struct{}{}
	sc := bufio.NewScanner(strings.NewReader(commonPasswordsText))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			set[l] = struct{}{}
		}
	}
	return set
})

// contextWords are words of this product and this screen that people use
// as or in their passwords.
var contextWords = []string{"omerta", "omertaos", "appliance", "console", "admin", "password"}

// CheckPassword is the password policy. username is the account's name;
// a password that contains it is refused.
func CheckPassword(username, password string) error {
	switch {
	case len(password) > MaxPasswordBytes:
		return invalid("password", "must be at most 1024 bytes")
	case !utf8.ValidString(password):
		return invalid("password", "must be valid UTF-8")
	case strings.ContainsFunc(password, unicode.IsControl):
		return invalid("password", "must not contain control characters")
	case utf8.RuneCountInString(password) < MinPasswordChars:
		return invalid("password", "must be at least 12 characters")
	}
	lower := strings.ToLower(password)
	if u := strings.ToLower(username); len(u) >= 3 && strings.Contains(lower, u) {
		return invalid("password", "must not contain the username")
	}
	if isCommon(lower) {
		return invalid("password", "is too common (it, or its letters without the digits and symbols around them, is on the list of common passwords)")
	}
	if isPattern(lower) {
		return invalid("password", "is a repetition or a keyboard or alphabet sequence")
	}
	return nil
}

// isCommon reports whether a lower-case password is on the list, either as
// is or once the digits and symbols people pad a common word with
// ("Password1234!", "2024dragon") and the usual letter swaps (p@ssw0rd) are
// taken away, or whether it is a product word padded the same way.
func isCommon(lower string) bool {
	set := commonPasswords()
	for _, cand := range candidates(lower) {
		if _, ok := set[cand]; ok {
			return true
		}
		for _, w := range contextWords {
			if cand == w || strings.Repeat(w, 2) == cand {
				return true
			}
		}
	}
	return false
}

// candidates are the forms of a password checked against the list: as
// typed, without spaces, without the non-letters around it, with leet
// swaps undone, and combinations of these.
func candidates(lower string) []string {
	var out []string
	for _, f := range []string{lower, strings.ReplaceAll(lower, " ", "")} {
		for _, g := range []string{f, trimPadding(f)} {
			for _, h := range []string{g, unleetI.Replace(g), unleetL.Replace(g)} {
				out = append(out, h, trimPadding(h))
			}
		}
	}
	return out
}

// trimPadding removes what is not a letter from both ends.
func trimPadding(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return !unicode.IsLetter(r) })
}

var (
	unleetI = strings.NewReplacer("0", "o", "1", "i", "3", "e", "4", "a", "5", "s", "7", "t", "@", "a", "$", "s", "!", "i")
	unleetL = strings.NewReplacer("0", "o", "1", "l", "3", "e", "4", "a", "5", "s", "7", "t", "@", "a", "$", "s", "!", "l")
)

// sequences are what people walk along on a keyboard or in the alphabet.
var sequences = []string{
	"abcdefghijklmnopqrstuvwxyz",
	"0123456789",
	"qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertyuiopasdfghjklzxcvbnm",
	"1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "1q2w3e4r5t6y7u8i9o0p", "qazwsxedcrfvtgbyhnujmikolp",
	"azertyuiop", "qwertzuiop", "!@#$%^&*()",
}

// isPattern reports whether a lower-case password is made of few distinct
// characters ("aaaaaaaaaaaa", "abababababab"), is a text shorter than
// MinPasswordChars repeated ("x7kpx7kpx7kp", "tangerinetangerine"), or is a run along one of the
// sequences, forwards or backwards, wrapping around ("123456789012").
func isPattern(lower string) bool {
	distinct := map[rune]bool{}
	for _, r := range lower {
		distinct[r] = true
	}
	if len(distinct) < 4 || repeatsShortUnit([]rune(lower)) {
		return true
	}
	for _, seq := range sequences {
		for _, s := range []string{seq, reverse(seq)} {
			// Enough copies that any run of len(lower) that wraps is inside.
			n := len(lower)/len(s) + 2
			if strings.Contains(strings.Repeat(s, n), lower) {
				return true
			}
		}
	}
	return false
}

// repeatsShortUnit reports whether r is a unit of fewer than
// MinPasswordChars characters repeated at least twice (the last copy may
// be cut short): such a password is as strong as its unit.
func repeatsShortUnit(r []rune) bool {
	for p := 1; p < MinPasswordChars && p <= len(r)/2; p++ {
		periodic := true
		for i := p; i < len(r); i++ {
			if r[i] != r[i-p] {
				periodic = false
				break
			}
		}
		if periodic {
			return true
		}
	}
	return false
}

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}
