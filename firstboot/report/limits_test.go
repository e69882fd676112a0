package report

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// measure runs f and returns the bytes it allocated and how long it took.
func measure(f func()) (uint64, time.Duration) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, d
}

// Hostile documents fail fast, with bounded memory, and say which limit they
// hit. Before the limits, 200 KB of '[' grew the verifier to 20 GB.
func TestVerifyBoundsHostileDocuments(t *testing.T) {
	cases := []struct {
		name string
		doc  []byte
		want error
	}{
		{"200 KB of [", bytes.Repeat([]byte("["), 200<<10), ErrTooDeep},
		{"deep object", []byte(strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_000)), ErrTooDeep},
		{"deep inside a report", []byte(`{"header":{"schema_version":"` + SchemaVersion + `","x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}}`), ErrTooDeep},
		{"a million empty arrays", []byte("[" + strings.Repeat("[],", 1_000_000) + "[]]"), ErrTooMany},
		{"a million empty objects", []byte(`{"header":[` + strings.Repeat("{},", 1_000_000) + "{}]}"), ErrTooMany},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			var v *Verification
			alloc, took := measure(func() { v, err = Verify(tc.doc, nil) })
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if v.OK() || v.Trusted || v.Checks[0].Name != "json" {
				t.Errorf("verification: %+v", v.Checks)
			}
			if alloc > 64<<20 || took > 5*time.Second {
				t.Errorf("allocated %d MB in %v refusing %d bytes", alloc>>20, took, len(tc.doc))
			}
			t.Logf("%v: %d KB allocated, %v", err, alloc>>10, took)
		})
	}
}

func TestVerifyRefusesOversize(t *testing.T) {
	_, data := sealed(t)
	pub := testKey(t).Public().(ed25519.PublicKey)
	_, err := VerifyWith(data, VerifyOptions{PublicKey: pub, MaxBytes: int64(len(data) - 1)})
	var le *LimitError
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &le) || le.Limit != int64(len(data)-1) {
		t.Errorf("one byte over MaxBytes: err = %v", err)
	}
	if _, err := VerifyWith(data, VerifyOptions{PublicKey: pub, MaxBytes: int64(len(data))}); err != nil {
		t.Errorf("exactly MaxBytes: %v", err)
	}
	big := append(bytes.Repeat([]byte(" "), DefaultMaxBytes), data...)
	if _, err := Verify(big, pub); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the default limit: err = %v", err)
	}
}

// The error path names where the limit was hit without having built a path
// string at every level on the way down.
func TestParseStrictNamesTheDeepPath(t *testing.T) {
	doc := `{"header":{"steps":[` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `]}}`
	_, err := parseStrict([]byte(doc))
	var le *LimitError
	if !errors.As(err, &le) || le.Err != ErrTooDeep || !strings.HasPrefix(le.Where, ".header.steps[0][0]") {
		t.Fatalf("err = %v (%#v)", err, le)
	}
	if strings.Count(le.Where, "[0]") != MaxDepth-2 {
		t.Errorf("path %s is not at depth %d", le.Where, MaxDepth)
	}
	// Exactly MaxDepth levels parse.
	ok := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if _, err := parseStrict([]byte(ok)); err != nil {
		t.Errorf("%d levels: %v", MaxDepth, err)
	}
}

// canonical refuses depth on its own, for values that did not come from
// parseStrict.
func TestCanonicalBoundsDepth(t *testing.T) {
	var v any = "leaf"
	for range MaxDepth {
		v = []any{v}
	}
	if _, err := canonical(nil, v); err != nil {
		t.Fatalf("%d levels: %v", MaxDepth, err)
	}
	if _, err := canonical(nil, map[string]any{"a": v}); !errors.Is(err, ErrTooDeep) {
		t.Errorf("%d levels: err = %v", MaxDepth+1, err)
	}
}

func refCompareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

var utf16Names = []string{"", "a", "b", "ab", "a\x00", "\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud7ff", "\ue000", "\ufb33", "\uffff", "\U00010000", "\U0001F600", "\U0001F601", "\U0010FFFF", "\U0001F600a", "\ufb33\U0001F600"}

func TestCompareUTF16(t *testing.T) {
	for _, a := range utf16Names {
		for _, b := range utf16Names {
			if got, want := compareUTF16(a, b), refCompareUTF16(a, b); got != want {
				t.Errorf("compareUTF16(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}

// FuzzCanonical: for any input parseStrict accepts, the canonical form
// parses back to itself, and name ordering agrees with converting to UTF-16.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":[],"a":{"d":1,"c":2}}`, `["\u2028",1e21,-0.0]`, `{"\ud83d\ude00":1,"\ufb33":2}`, strings.Repeat("[", 70), `{"a":1,"a":2}`} {
		f.Add([]byte(s), "\ufb33", "\U0001F600")
	}
	f.Fuzz(func(t *testing.T, data []byte, a, b string) {
		if got, want := compareUTF16(a, b), refCompareUTF16(a, b); got != want {
			t.Fatalf("compareUTF16(%q, %q) = %d, want %d", a, b, got, want)
		}
		v, err := parseStrict(data)
		if err != nil {
			return
		}
		c1, err := canonical(nil, v)
		if err != nil {
			return // a number out of range
		}
		v2, err := parseStrict(c1)
		if err != nil {
			t.Fatalf("canonical form %s does not parse: %v", c1, err)
		}
		c2, err := canonical(nil, v2)
		if err != nil || !bytes.Equal(c1, c2) {
			t.Fatalf("canonical form is not stable:\n%s\n%s (%v)", c1, c2, err)
		}
	})
}

// FuzzVerify: no input makes the verifier panic, hang or trust it, and a
// failed verification always says which check failed.
func FuzzVerify(f *testing.F) {
	_, data := sealed(f)
	_, pending := sealedPending(f)
	f.Add(data)
	f.Add(pending)
	f.Add(data[:len(data)/2])
	f.Add(bytes.Replace(data, []byte(`"attempts": 2`), []byte(`"attempts": 1`), 1))
	f.Add(bytes.Repeat([]byte("["), 1000))
	f.Add([]byte(`{"header":{"schema_version":"` + SchemaVersion + `"},"records":[{}]}`))
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err == nil {
		f.Add(compact.Bytes())
	}
	pub := testKey(f).Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, doc []byte) {
		start := time.Now()
		v, err := Verify(doc, pub)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Verify took %v on %d bytes", d, len(doc))
		}
		if err != nil && (v.OK() || v.Trusted || len(v.Failed()) == 0) {
			t.Fatalf("failed (%v) yet OK=%v trusted=%v", err, v.OK(), v.Trusted)
		}
		if err == nil && (!v.Trusted || v.Audit == nil) {
			t.Fatalf("verified against the supplied key yet trusted=%v, audit %+v", v.Trusted, v.Audit)
		}
		var buf bytes.Buffer
		if err := WriteVerification(&buf, "r.json", v, true); err != nil {
			t.Fatal(err)
		}
		if v.Report != nil {
			if err := WriteSummary(&buf, v.Report, v); err != nil {
				t.Fatal(err)
			}
		}
		assertTerminalSafe(t, buf.String())
	})
}

func BenchmarkVerifyDeepNesting(b *testing.B) {
	doc := bytes.Repeat([]byte("["), 200<<10)
	for b.Loop() {
		if _, err := Verify(doc, nil); !errors.Is(err, ErrTooDeep) {
			b.Fatal(err)
		}
	}
}
