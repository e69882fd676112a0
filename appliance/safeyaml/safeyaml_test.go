package safeyaml

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

type testDoc struct {
	Name    string        `yaml:"name"`
	Port    int           `yaml:"port"`
	Every   time.Duration `yaml:"every"`
	Tags    []string      `yaml:"tags"`
	Enabled *bool         `yaml:"enabled"`
	Inner   struct {
		Wait  time.Duration   `yaml:"wait"`
		Items []testItem      `yaml:"items"`
		More  map[string]bool `yaml:"more"`
	} `yaml:"inner"`
}

type testItem struct {
	ID      string          `yaml:"id"`
	Timeout time.Duration   `yaml:"timeout"`
	Waits   []time.Duration `yaml:"waits"`
}

func TestUnmarshalGood(t *testing.T) {
	src := `# comment
name: demo
port: 8080
every: 0
tags: [a, b]
enabled: true
inner:
  wait: 90s
  items:
    - id: one
      timeout: 2m
      waits: [1s, 0]
  more: {x: true}
`
	var d testDoc
	if err := Unmarshal([]byte(src), &d, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	if d.Name != "demo" || d.Port != 8080 || d.Every != 0 || len(d.Tags) != 2 || d.Enabled == nil || !*d.Enabled ||
		d.Inner.Wait != 90*time.Second || len(d.Inner.Items) != 1 || d.Inner.Items[0].Timeout != 2*time.Minute ||
		len(d.Inner.Items[0].Waits) != 2 || d.Inner.Items[0].Waits[1] != 0 || !d.Inner.More["x"] {
		t.Errorf("decoded %+v", d)
	}
	for _, src := range []string{"", "\n\n", "# only a comment\n", "---\n", "---\nname: x\n", "name: x\n...\n"} {
		d := testDoc{Name: "keep"}
		if err := Unmarshal([]byte(src), &d, DefaultLimits()); err != nil {
			t.Errorf("%q: %v", src, err)
		}
		if src != "---\nname: x\n" && src != "name: x\n...\n" && d.Name != "keep" {
			t.Errorf("%q changed the value: %+v", src, d)
		}
	}
}

// TestUnmarshalRefusals: each refusal has its class, one line, and the
// position and field where they can be known.
func TestUnmarshalRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      error
		msg       string // a part of the message
	}{
		{"unknown field", "name: x\ninner:\n  wiat: 1s\n", ErrUnknownField, `3:3: field "inner": unknown field "wiat"`},
		{"unknown field escaped", "\"x)\\nprofile: user\\n---\\n#\": 1\n", ErrUnknownField, `unknown field "x)\nprofile: user\n---\n#"`},
		{"wrong type", "inner:\n  items:\n    - id: [1]\n", ErrType, `field "inner.items[0].id": must be a string, not a list`},
		{"wrong type port", "port: eighty\n", ErrType, `1:7: field "port": must be a number, not a string`},
		{"duration without unit", "inner:\n  wait: 300\n", ErrDuration, `2:9: field "inner.wait": 300: is not a duration such as 30s, 10m or 2h (a plain number has no unit; only 0 may be written without one)`},
		{"bad duration", "every: soon\n", ErrDuration, `1:8: field "every": "soon" is not a duration`},
		{"duration in list", "inner:\n  items:\n    - waits: [1s, 7]\n", ErrDuration, `field "inner.items[0].waits[1]"`},
		{"duration mapping", "every: {a: 1}\n", ErrDuration, `field "every": must be a duration such as 30s, 10m or 2h, not a mapping`},
		{"syntax", "tags: [a, b\n", ErrSyntax, "1:"},
		{"duplicate key", "name: a\nname: b\n", nil, "2:1:"},
		{"second document", "name: a\n---\nport: 1\n", ErrMultipleDocuments, "2:1: a second YAML document"},
		{"injected document", "\"x)\": 1\nprofile: user\n---\n#\n", ErrMultipleDocuments, "3:1:"},
		{"after end", "name: a\n...\nport: 1\n", ErrMultipleDocuments, "3:1:"},
		{"two headers", "---\n---\n", ErrMultipleDocuments, "2:1:"},
		{"anchor", "name: &a x\ntags: [*a]\n", ErrAlias, "1:7: anchors and aliases"},
		{"merge key", "inner:\n  <<: {wait: 1s}\n", ErrAlias, "2:3: merge keys"},
		{"tag", "name: !!binary aGk=\n", ErrTag, "1:7: tags"},
		{"custom tag", "name: !foo x\n", ErrTag, "1:7: tags"},
		{"directive", "%YAML 1.2\n---\nname: x\n", ErrDirective, "1:1: directives"},
		{"long list", "tags: [" + strings.Repeat("a,", 256) + "a]\n", ErrSequenceTooLong, `1:7: field "tags": a list of 257 items is not accepted; at most 256`},
		{"long block list", "tags:\n" + strings.Repeat("  - a\n", 257), ErrSequenceTooLong, `field "tags"`},
		{"deep flow", "tags: " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n", ErrTooDeep, "nesting deeper than 32 levels"},
		{"deep block", strings.Repeat("- ", 40) + "x\n", ErrTooDeep, "nesting deeper than 32 levels"},
		{"deep mapping", deepMapping(40), ErrTooDeep, "nesting deeper than 32 levels"},
		{"deep mixed", deepMixed(20), ErrTooDeep, "nesting deeper than 32 levels"},
		{"too large", strings.Repeat("#", 64<<10+1), ErrTooLarge, "larger than the limit of 65536 bytes"},
		{"control in key", "\"a\\x1b[2Kb\": 1\n", ErrUnknownField, `unknown field "a\x1b[2Kb"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d testDoc
			err := Unmarshal([]byte(tc.src), &d, DefaultLimits())
			if err == nil {
				t.Fatalf("accepted: %+v", d)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not an *Error: %v", err, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %v", err, tc.want)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r\x1b") || !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q: want one line containing %q", msg, tc.msg)
			}
		})
	}
}

func TestDepthLimitIsExact(t *testing.T) {
	lim := DefaultLimits()
	for _, tc := range []struct {
		name string
		src  func(int) string
	}{
		{"mapping", deepMapping},
		{"flow", func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }},
		{"block sequence", func(n int) string { return strings.Repeat("- ", n) + "x\n" }},
	} {
		var v any
		if err := Unmarshal([]byte(tc.src(lim.MaxDepth)), &v, lim); err != nil {
			t.Errorf("%s at depth %d: %v", tc.name, lim.MaxDepth, err)
		}
		if err := Unmarshal([]byte(tc.src(lim.MaxDepth+1)), &v, lim); !errors.Is(err, ErrTooDeep) {
			t.Errorf("%s at depth %d: %v, want ErrTooDeep", tc.name, lim.MaxDepth+1, err)
		}
	}
}

func TestNodeLimit(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxNodes = 50
	var b strings.Builder
	for i := range 30 {
		b.WriteString("k" + strings.Repeat("x", i) + ": v\n")
	}
	var v map[string]string
	if err := Unmarshal([]byte(b.String()), &v, lim); !errors.Is(err, ErrTooManyNodes) {
		t.Fatalf("err = %v, want ErrTooManyNodes", err)
	}
}

func TestNotAPointer(t *testing.T) {
	var d testDoc
	if err := Unmarshal([]byte("name: x\n"), d, DefaultLimits()); err == nil {
		t.Fatal("decoding into a value succeeded")
	}
}

// billionLaughs is the classic: ten levels of ten aliases each, a billion
// "lol"s once expanded, in under 500 bytes.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		b.WriteString(n + ": &" + n + " [")
		for i := range 9 {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = n
	}
	return b.String()
}

func deepMapping(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	b.WriteString(strings.Repeat(" ", n) + "v\n")
	return b.String()
}

// deepMixed alternates mappings and sequences written at the same
// indentation, which YAML allows ("k:" then "- ..." below it).
func deepMixed(n int) string {
	var b strings.Builder
	for i := range n {
		ind := strings.Repeat(" ", 2*i)
		b.WriteString(ind + "k:\n" + ind + "- ")
		b.WriteString("\n")
	}
	return b.String()
}

// TestBombsAreCheap: each hostile input is refused within a small time and
// memory budget (today's go-yaml alone needs gigabytes for some).
func TestBombsAreCheap(t *testing.T) {
	big := DefaultLimits()
	big.MaxBytes = 1 << 20
	for _, tc := range []struct {
		name string
		src  string
		lim  Limits
		want error
	}{
		{"billion laughs", billionLaughs(), DefaultLimits(), ErrAlias},
		{"200 KB of [", strings.Repeat("[", 200<<10), DefaultLimits(), ErrTooLarge},
		{"200 KB of [ under a 1 MiB cap", strings.Repeat("[", 200<<10), big, ErrTooDeep},
		{"200 KB of {a: under a 1 MiB cap", strings.Repeat("{a: ", 50<<10), big, ErrTooDeep},
		{"block nesting under a 1 MiB cap", strings.Repeat("- ", 100<<10) + "x", big, ErrTooDeep},
		{"a long flat list under a 1 MiB cap", "a: [" + strings.Repeat("x,", 100<<10) + "x]", big, ErrSequenceTooLong},
		{"many keys under a 1 MiB cap", manyKeys(20000), big, ErrMappingTooLong},
		{"many values under a 1 MiB cap", manyMappings(200, 200), big, ErrTooManyNodes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v any
			alloc, took, err := measure(func() error { return Unmarshal([]byte(tc.src), &v, tc.lim) })
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// The lexer keeps a few hundred bytes per token; everything
			// beyond that would be the attack working.
			if limit := uint64(400*len(tc.src)) + 8<<20; alloc > limit {
				t.Errorf("allocated %d MB (limit %d MB)", alloc>>20, limit>>20)
			}
			if took > 2*time.Second*raceSlowdown {
				t.Errorf("took %v", took)
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("k")
		b.WriteString(strings.Repeat("x", i%50))
		b.WriteString(string(rune('a'+i%26)) + strconv.Itoa(i) + ": 1\n")
	}
	return b.String()
}

// manyMappings writes n mappings of m keys each, in a list.
func manyMappings(n, m int) string {
	var b strings.Builder
	for range n {
		for j := range m {
			if j == 0 {
				b.WriteString("- ")
			} else {
				b.WriteString("  ")
			}
			b.WriteString("k" + strconv.Itoa(j) + ": v\n")
		}
	}
	return b.String()
}

func measure(f func() error) (alloc uint64, took time.Duration, err error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	err = f()
	took = time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took, err
}

func TestOneLine(t *testing.T) {
	if OneLine(nil) != nil {
		t.Error("OneLine(nil) != nil")
	}
	err := OneLine(errors.New("line one\nline two\x1b[2K"))
	if strings.ContainsAny(err.Error(), "\n\x1b") {
		t.Errorf("OneLine = %q", err)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: ok": "plain text: ok",
		"a\nb":           `a\nb`,
		"\r\x1b[2KOK":    `\r\x1b[2KOK`,
		"bidi\u202etxt":  `bidi\u202etxt`,
		"sep\u2028x":     `sep\u2028x`,
		"bad\xffutf8":    `bad\xffutf8`,
		"c1\u0085x":      `c1\u0085x`,
		"ünïcödé – fine": "ünïcödé – fine",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
