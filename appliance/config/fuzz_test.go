package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// Budgets for one Parse of at most MaxFileSize bytes. go-yaml alone took
// gigabytes and seconds for some 64 KiB inputs (deep nesting, long
// mappings, aliases); what is left is the lexer's few hundred bytes per
// token.
const (
	fuzzTimeBudget  = time.Second
	fuzzAllocBudget = 64 << 20
)

// FuzzParse drives the site-configuration path (Parse, ResolveLayers,
// Marshal) with arbitrary files: each run stays within the time and memory
// budget, never panics, answers in one line, and whatever it accepts it
// installs as a file that reads back to the same configuration.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		strings.Repeat("[", MaxFileSize),
		strings.Repeat("- ", MaxFileSize/2),
		strings.Repeat("{a: ", MaxFileSize/4),
		"\"x)\\nprofile: user\\n---\\n#\": 1\n",
		"probe:\n  interval: 0\n",
		"version: 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			cfg Config
			err error
		)
		alloc, took := budget(t, data, func() {
			cfg, err = Parse(data, "omerta.yaml", Default())
		})
		if took > fuzzTimeBudget*raceSlowdown || alloc > fuzzAllocBudget {
			t.Fatalf("Parse of %d bytes took %v and allocated %d MB", len(data), took, alloc>>20)
		}
		r := ResolveLayers(Layer{Path: "/efi/omerta.yaml", Present: true, Data: data})
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("message spans lines: %q", err)
			}
			if !Equal(r.Config, Default()) || len(r.Problems()) != 1 {
				t.Fatalf("a refused layer changed the configuration: %+v", r)
			}
			return
		}
		if !Equal(r.Config, cfg) {
			t.Fatalf("ResolveLayers and Parse disagree")
		}
		out, err := Marshal(cfg, "fuzz: "+string(data[:min(len(data), 200)]))
		if errors.Is(err, safeio.ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("Marshal of an accepted configuration: %v", err)
		}
		back, err := Parse(out, "installed", Default())
		if err != nil || !Equal(back, cfg) {
			t.Fatalf("installed file reads back as %+v, %v", back, err)
		}
	})
}

// budget runs f, failing the test with the input if it has not returned
// after ten times the time budget (a loop, not merely a slow run), and
// returns what it allocated and how long it took.
func budget(t *testing.T, data []byte, f func()) (alloc uint64, took time.Duration) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		f()
		done <- time.Since(start)
	}()
	select {
	case took = <-done:
	case <-time.After(10 * fuzzTimeBudget * raceSlowdown):
		t.Fatalf("Parse of %d bytes has not returned after %v: %q", len(data), 10*fuzzTimeBudget*raceSlowdown, data[:min(len(data), 512)])
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took
}
