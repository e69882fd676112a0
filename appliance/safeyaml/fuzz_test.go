package safeyaml

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzUnmarshal: no input makes Unmarshal panic (go-yaml's own panics
// included: they are recovered, and reported here), take long, or return a
// message on more than one line.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		"name: demo\nport: 8080\nevery: 0\ntags: [a, b]\ninner:\n  wait: 90s\n  items:\n    - id: one\n      waits: [1s, 0]\n",
		billionLaughs(),
		strings.Repeat("[", 1000),
		strings.Repeat("- ", 100) + "x",
		deepMapping(40),
		deepMixed(20),
		"a: 1\n---\nb: 2\n",
		"\"x)\\nprofile: user\\n---\\n#\": 1\n",
		"%YAML 1.2\n---\na: !!str 1\n",
		"a: |\n  text\n  more\nb: >-\n  folded\n",
		"? complex\n: value\n",
		"{a: [1, {b: c}], d: 'q''q'}",
		"inner:\n  <<: *x\n",
		"every: 300\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range []any{new(testDoc), new(any)} {
			err := withDeadline(t, 2*time.Second*raceSlowdown, data, func() error { return Unmarshal(data, v, DefaultLimits()) })
			if err == nil {
				continue
			}
			if errors.Is(err, errDecoderPanic) {
				t.Fatalf("go-yaml panicked: %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error: %v", err, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("message spans lines: %q", err)
			}
		}
	})
}

// withDeadline runs f, failing the test with the input once f has run past
// limit: an input that makes the decoder loop forever must be reported, not
// stall the fuzzer.
func withDeadline(t *testing.T, limit time.Duration, data []byte, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("no answer after %v on %d bytes: %q", limit, len(data), data)
		return nil
	}
}
