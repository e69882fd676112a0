package auth

import (
	"strings"
	"testing"
)

func TestNormalizeUsername(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		reason   string // "" means accepted
	}{
		{"alice", "alice", ""},
		{"Alice.Smith", "alice.smith", ""},
		{"ops-1_backup@site", "ops-1_backup@site", ""},
		{"9lives", "9lives", ""},
		{strings.Repeat("a", 64), strings.Repeat("a", 64), ""},
		{"", "", "is required"},
		{strings.Repeat("a", 65), "", "at most 64"},
		{"ali\x00ce", "", "control"},
		{"ali\nce", "", "control"},
		{"\x1b[31mred", "", "control"},
		{"ali ce", "", "only letters"},
		{"alice/../root", "", "only letters"},
		{"\u212Aelvin", "", "only letters"}, // KELVIN SIGN lowers to ASCII k
		{"ålice", "", "only letters"},
		{"alice\xff", "", "only letters"},
		{".hidden", "", "start with"},
		{"-rf", "", "start with"},
		{"@admin", "", "start with"},
	} {
		got, err := NormalizeUsername(tc.in)
		if tc.reason == "" {
			if err != nil || got != tc.want {
				t.Errorf("NormalizeUsername(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		ie, ok := err.(*InvalidError)
		if !ok || ie.Field != "username" || !strings.Contains(ie.Reason, tc.reason) {
			t.Errorf("NormalizeUsername(%q) = %q, %v; want a refusal of username saying %q", tc.in, got, err, tc.reason)
		}
	}
}

func TestCheckTokenName(t *testing.T) {
	for name, ok := range map[string]bool{
		"ci deploy":             true,
		"Backup-Job_2:nightly":  true,
		"grafana/metrics":       true,
		"":                      false,
		" lead":                 false,
		"trail ":                false,
		"tab\there":             false,
		"\u212Aelvin":           false,
		"quote\"":               false,
		strings.Repeat("n", 65): false,
	} {
		err := checkTokenName(name)
		if ok != (err == nil) {
			t.Errorf("checkTokenName(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil {
			wantInvalidNoFatal(t, err, "name")
		}
	}
}
