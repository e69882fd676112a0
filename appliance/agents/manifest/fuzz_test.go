package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParseManifest: any input is refused with problems or accepted; it
// never panics, finishes quickly, every problem names a reason, and an
// accepted manifest prints and parses back to the same text.
func FuzzParseManifest(f *testing.F) {
	for _, pattern := range []string{"testdata/good/*.yaml", "testdata/good/*.json", "testdata/bad/*.yaml", "testdata/bad/*.json"} {
		files, _ := filepath.Glob(pattern)
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		m, err := Parse(data)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Parse took %v", d)
		}
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %v is not Problems", err)
			}
			for _, p := range ps {
				if p.Reason == "" {
					t.Fatalf("problem at %q has no reason", p.Path)
				}
			}
			return
		}
		out, err := Marshal(m)
		if err != nil {
			t.Fatalf("accepted manifest does not print: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			if m.Spec.Config != nil && onlyConfig(err) {
				return // "(secret)" need not satisfy the secret's schema
			}
			t.Fatalf("printed manifest does not parse: %v\n%s", err, out)
		}
		if out2, _ := Marshal(again); string(out2) != string(out) {
			t.Fatalf("printing is not stable:\n%s\n---\n%s", out, out2)
		}
	})
}

func onlyConfig(err error) bool {
	var ps Problems
	if !errors.As(err, &ps) {
		return false
	}
	for _, p := range ps {
		if p.Code != CodeConfig {
			return false
		}
	}
	return true
}
