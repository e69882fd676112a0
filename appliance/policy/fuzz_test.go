package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse: any input is refused with problems or accepted; it never
// panics, finishes quickly, every problem has a reason, and an accepted
// document prints and parses back to the same document, which compiles
// and evaluates.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/good/*.yaml", "testdata/good/*.json", "testdata/bad/*"} {
		files, _ := filepath.Glob(pattern)
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(`{"apiVersion":"omertaos.dev/v1","kind":"Tenant","name":"a","quotas":{"usdPerMonth":1e308}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		doc, err := Parse(data)
		_, terr := ParseTenant(data)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("parsing took %v", d)
		}
		for _, e := range []error{err, terr} {
			if e == nil {
				continue
			}
			var ie *InvalidError
			if !errors.As(e, &ie) || len(ie.Problems) == 0 {
				t.Fatalf("error %v is not an *InvalidError with problems", e)
			}
			for _, p := range ie.Problems {
				if p.Reason == "" {
					t.Fatalf("problem at %q has no reason", p.Path)
				}
			}
		}
		if err != nil {
			return
		}
		out, err := json.Marshal(doc)
		if err != nil {
			t.Fatalf("accepted document does not encode: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("printed document does not parse: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); string(out2) != string(out) {
			t.Fatalf("printing is not stable:\n%s\n---\n%s", out, out2)
		}
		set := NewSet("enterprise", []Policy{{Subject: doc.Subject, Version: 1, Spec: doc.Spec}}, nil)
		Evaluate(set, Request{Op: OpDeploy, Agent: doc.Subject.Name, Tenant: doc.Subject.Name, Category: doc.Subject.Name})
	})
}
