package auth

import (
	"slices"
	"strings"
	"testing"
	"unicode"
)

func TestCheckPassword(t *testing.T) {
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"alice", "tangerine orbit quietly", true},
		{"alice", "Vx9#mQ2!pL7z", true},
		{"alice", "kettle drum on mars", true},
		{"alice", "日本語のとても長いパスワードです", true},
		{"alice", "", false},
		{"alice", "short", false},
		{"alice", "elevenchars", false},                           // 11
		{"alice", "ébènedébène", false},                           // 11 characters, 17 bytes
		{"alice", strings.Repeat("x7Kp", 257), false},             // 1028 bytes
		{"alice", "good long pass\x00word", false},                // control character
		{"alice", "good long pass\nword", false},                  // control character
		{"alice", "good long pass\xffword", false},                // invalid UTF-8
		{"alice", "alice-tangerine-orbit", false},                 // contains the username
		{"alice", "my name is ALICE and hi", false},               // case-insensitively
		{"bo", "bo tangerine orbit quiet", true},                  // names under 3 bytes are not matched
		{"alice", "password1234", false},                          // list, padded
		{"alice", "Password1234!", false},                         // list, padded, case
		{"alice", "p@ssw0rd2024", false},                          // leet
		{"alice", "iloveyou2024!", false},                         // list
		{"alice", "qwertyuiop12", false},                          // list core
		{"alice", "2024dragon2024", false},                        // padded both sides
		{"alice", "correct horse battery staple", false},          // famous, spaces ignored
		{"alice", "l1verp00l1892", false},                         // leet with 1 as l
		{"alice", "omertaomerta", false},                          // product word
		{"alice", "omerta123456", false},                          // product word padded
		{"alice", "123456789012", false},                          // sequence
		{"alice", "098765432109", false},                          // sequence backwards
		{"alice", "abcdefghijklm", false},                         // alphabet
		{"alice", "aaaaaaaaaaaa", false},                          // repetition
		{"alice", "abababababab", false},                          // few characters
		{"alice", "asdfghjklasd", false},                          // keyboard row, wrapping
		{"alice", "1qaz2wsx3edc", false},                          // keyboard columns
		{"alice", "847362910573", true},                           // random digits: long enough, no pattern
		{"alice", strings.Repeat("x7Kp", 256), false},             // a short unit repeated
		{"alice", "x7Kpx7Kpx7Kp", false},                          // a short unit repeated
		{"alice", "tangerinetangerine", false},                    // a short unit repeated
		{"alice", "x7Kp" + strings.Repeat("q9Zm", 3) + "!", true}, // not periodic
	} {
		err := CheckPassword(tc.user, tc.pw)
		if tc.ok && err != nil {
			t.Errorf("CheckPassword(%q, %q) = %v, want ok", tc.user, tc.pw, err)
		}
		if !tc.ok {
			if err == nil {
				t.Errorf("CheckPassword(%q, %q) = ok, want refused", tc.user, tc.pw)
				continue
			}
			wantInvalidNoFatal(t, err, "password")
		}
	}
}

func wantInvalidNoFatal(t *testing.T, err error, field string) {
	t.Helper()
	ie, ok := err.(*InvalidError)
	if !ok || ie.Field != field || ie.Reason == "" {
		t.Errorf("err = %#v, want an InvalidError on %q with a reason", err, field)
	}
}

func TestCommonPasswordListShape(t *testing.T) {
	var entries []string
	for _, l := range strings.Split(commonPasswordsText, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		entries = append(entries, l)
		if strings.ToLower(l) != l || strings.ContainsFunc(l, unicode.IsSpace) || len(l) < 4 {
			t.Errorf("entry %q: want lower case, no spaces, at least 4 bytes", l)
		}
	}
	if len(entries) < 2500 {
		t.Errorf("%d entries; the list should hold a few thousand", len(entries))
	}
	if !slices.IsSorted(entries) || len(slices.Compact(slices.Clone(entries))) != len(entries) {
		t.Error("the list is not sorted and unique (regenerate it with LC_ALL=C sort -u)")
	}
	if len(commonPasswords()) != len(entries) {
		t.Errorf("loaded %d entries of %d", len(commonPasswords()), len(entries))
	}
}
