package catalog

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// FuzzImportUpstream feeds any document to the catalog reader, as an
// operator's import would: it must not panic, must finish quickly, and an
// entry it accepts must print and read back as a manifest.
func FuzzImportUpstream(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{upstreamDir + "/*.yaml", upstreamDir + "/recipes/*.yaml", "testdata/templates/*.yml", "testdata/bad/*.y*ml"} {
		m, _ := filepath.Glob(pattern)
		seeds = append(seeds, m...)
	}
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		file := Parse("fuzz.yaml", data, DirReader(upstreamDir))
		for i := range file.Entries {
			if e := &file.Entries[i]; e.OK() {
				readBack(t, e)
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("import took %v", d)
		}
	})
}

func readBack(t *testing.T, e *Entry) {
	t.Helper()
	data, err := manifest.Marshal(e.Manifest)
	if err != nil {
		t.Fatalf("accepted entry does not print: %v", err)
	}
	again := Parse("again.yaml", data, nil)
	if len(again.Entries) != 1 {
		t.Fatalf("printed entry does not read back: %v\n%s", allProblems(again), data)
	}
	for _, p := range allProblems(again) {
		// Printing redacts secrets, and "(secret)" need not satisfy the
		// secret's own schema; nothing else may fail.
		if p.Code != manifest.CodeConfig || e.Manifest.Spec.Config == nil {
			t.Fatalf("printed entry does not read back: %v\n%s", p, data)
		}
	}
}
