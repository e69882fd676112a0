package gateway

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/safeio"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestLoadRegistry(t *testing.T) {
	r, err := LoadRegistry("testdata/models.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Models(), ","); got != "local-echo,chat" {
		t.Fatalf("models %s", got)
	}
	chat := r.Model("chat")
	if chat.Estimate != 512 || len(chat.Route) != 2 {
		t.Fatalf("chat %+v", chat)
	}
	echo, cloud := chat.Route[0], chat.Route[1]
	if echo.Backend.URL != "http://10.89.0.2:8080/v1" || echo.Model != "local-echo" || echo.Cloud() || echo.Timeout != 30*time.Second {
		t.Fatalf("first target %+v %+v", echo, echo.Backend)
	}
	if !cloud.Cloud() || cloud.Backend.Credential != "openai-api-key" || cloud.PromptNano1K != 150_000 ||
		cloud.CompletionNano1K != 600_000 || cloud.Timeout != 90*time.Second {
		t.Fatalf("second target %+v %+v", cloud, cloud.Backend)
	}
	if le := r.Model("local-echo"); le.Route[0].Model != "local-echo" || le.Estimate != defaultEstimate {
		t.Fatalf("local-echo %+v", le)
	}
}

// TestRegistryProblems: every problem of a bad file is named at once, by
// field, with foreign text escaped (testdata/bad-models.golden).
func TestRegistryProblems(t *testing.T) {
	_, err := LoadRegistry("testdata/bad-models.yaml")
	var ie *InvalidError
	if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want an *InvalidError", err)
	}
	var b strings.Builder
	for _, p := range ie.Problems {
		b.WriteString(p.String() + "\n")
	}
	golden := "testdata/bad-models.golden"
	if *update {
		os.WriteFile(golden, []byte(b.String()), 0o644)
	}
	want, _ := os.ReadFile(golden)
	if b.String() != string(want) {
		t.Fatalf("problems:\n%s\nwant (%s):\n%s", b.String(), golden, want)
	}
	if strings.ContainsRune(err.Error(), 0x1b) {
		t.Fatal("the error carries a raw escape character")
	}
}

func TestRegistryRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, field string
	}{
		{"unknown field", "backends: []\nmodels: []\nextra: 1\n", "extra"},
		{"alias", "backends: &a []\nmodels: *a\n", "alias"},
		{"duration without unit", "backends: [{name: a, url: 'http://x/v1', kind: local, timeout: 30}]\nmodels: []\n", "timeout"},
		{"too many targets", "backends: [{name: a, url: 'http://x/v1', kind: local}]\nmodels: [{name: m, route: [" +
			strings.Repeat("{backend: a},", 9) + "]}]\n", "route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRegistry([]byte(tc.yaml), "t.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want one naming %s", err, tc.field)
			}
		})
	}
	dir := t.TempDir()
	if _, err := LoadRegistry(dir); !errors.Is(err, safeio.ErrNotRegular) {
		t.Fatalf("a directory: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, make([]byte, maxRegistryBytes+1), 0o644)
	if _, err := LoadRegistry(big); !errors.Is(err, safeio.ErrTooLarge) {
		t.Fatalf("a large file: %v", err)
	}
}
