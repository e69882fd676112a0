package terminal

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"omerta-7f3a2c", "omerta-7f3a2c"},
		{`C:\path "quoted" 'x' <b>&`, `C:\path "quoted" 'x' <b>&`},
		{"grüße, 日本語, emoji 😀, NBSP\u00a0x", "grüße, 日本語, emoji 😀, NBSP\u00a0x"},
		{"a\tb\nc\rd", `a\tb\nc\rd`},
		{"\x1b[2K\rreport.json: VERIFIED", `\x1b[2K\rreport.json: VERIFIED`},
		{"nul\x00 bel\x07 del\x7f", `nul\x00 bel\x07 del\x7f`},
		{"c1 \u0085 csi \u009b", `c1 \u0085 csi \u009b`},
		{"rlo \u202eevil\u202c", `rlo \u202eevil\u202c`},
		{"isolates \u2066\u2067\u2068\u2069", `isolates \u2066\u2067\u2068\u2069`},
		{"marks \u200e\u200f\u061c", `marks \u200e\u200f\u061c`},
		{"embeddings \u202a\u202b\u202d", `embeddings \u202a\u202b\u202d`},
		{"zero width \u200b\u2060\ufeff soft\u00adhyphen", `zero width \u200b\u2060\ufeff soft\u00adhyphen`},
		{"separators \u2028\u2029", `separators \u2028\u2029`},
		{"tag \U000e0041", `tag \U000e0041`},
		{"invalid \xff\xfe end", `invalid \xff\xfe end`},
		{"truncated \xe2\x80", `truncated \xe2\x80`},
		{"surrogate \xed\xa0\x80", `surrogate \xed\xa0\x80`},
		{"literal replacement \ufffd stays", "literal replacement \ufffd stays"},
	}
	for _, tc := range cases {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFirstUnsafe(t *testing.T) {
	cases := []struct {
		in   string
		at   int
		rune rune
	}{
		{"plain", -1, 0},
		{"ab\rc", 2, '\r'},
		{"é\u202e", 2, '\u202e'},
		{"x\xff", 1, utf8.RuneError},
		{"x\ufffd", -1, 0},
	}
	for _, tc := range cases {
		if at, r := FirstUnsafe(tc.in); at != tc.at || r != tc.rune {
			t.Errorf("FirstUnsafe(%q) = %d, %U; want %d, %U", tc.in, at, r, tc.at, tc.rune)
		}
	}
}

func TestWriterKeepsLines(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if _, err := w.Write([]byte("STATUS\tCHECK\nok\tcpu \x1b[31mred\r\u202e\n")); err != nil {
		t.Fatal(err)
	}
	if want := "STATUS\tCHECK\nok\tcpu \\x1b[31mred\\r\\u202e\n"; buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestEscapeJSON(t *testing.T) {
	in := map[string]string{"id": "a\u202eb\u0085c\x7f\U000e0041 é\n\x1b"}
	enc, err := json.MarshalIndent(in, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	got := EscapeJSON(enc)
	for _, r := range string(got) {
		if Unsafe(r) && r != '\n' && r != '\t' {
			t.Errorf("unsafe rune %U left in %s", r, got)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(got, &back); err != nil || back["id"] != in["id"] {
		t.Errorf("decodes to %q (%v), want %q:\n%s", back["id"], err, in["id"], got)
	}
	if !strings.Contains(string(got), `\u202e`) || !strings.Contains(string(got), `\udb40\udc41`) {
		t.Errorf("escapes missing: %s", got)
	}
}

// FuzzEscape holds Escape to its promises for any input: the result is valid
// UTF-8 with no rune a terminal would obey, it is unchanged when the input
// had nothing to escape, every printable character of the input survives in
// order, and escaping twice changes nothing more.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[2K\rVERIFIED\n", "\u202e\u2066x", "\xff\xc0\x80", "\u0085\u009b[1m", "tab\tnl\n", "😀\U000e0001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Escape(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Escape(%q) = %q is not valid UTF-8", s, got)
		}
		for _, r := range got {
			if Unsafe(r) {
				t.Fatalf("Escape(%q) = %q holds %U", s, got, r)
			}
		}
		if at, _ := FirstUnsafe(s); (at < 0) != (got == s) {
			t.Fatalf("Escape(%q) = %q, FirstUnsafe says %d", s, got, at)
		}
		if Escape(got) != got {
			t.Fatalf("Escape is not idempotent on %q", s)
		}
		// The printable runes of s appear in got in the same order.
		rest := got
		for i, r := range s {
			if Unsafe(r) || (r == utf8.RuneError && !strings.HasPrefix(s[i:], "\ufffd")) {
				continue
			}
			j := strings.IndexRune(rest, r)
			if j < 0 {
				t.Fatalf("Escape(%q) = %q lost %q", s, got, r)
			}
			rest = rest[j+utf8.RuneLen(r):]
		}
		var buf bytes.Buffer
		if _, err := NewWriter(&buf).Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		for _, r := range buf.String() {
			if Unsafe(r) && r != '\n' && r != '\t' {
				t.Fatalf("NewWriter passed %U of %q", r, s)
			}
		}
	})
}
