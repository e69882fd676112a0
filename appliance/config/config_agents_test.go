package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAgentsDefaults(t *testing.T) {
	cfg, err := Parse(nil, "empty", Default())
	if err != nil {
		t.Fatal(err)
	}
	want := Agents{
		Containerd: "/run/containerd/containerd.sock", Namespace: "omerta",
		CatalogDir: "/usr/share/omerta/catalog", BundledDir: "/usr/share/omerta/agents",
		LogDir: "/var/log/omerta/agents", RunDir: "/run/omerta/runtime", TelemetryInterval: 10 * time.Second,
	}
	if cfg.Agents != want {
		t.Errorf("default agents section = %+v, want %+v", cfg.Agents, want)
	}
}

func TestAgentsSection(t *testing.T) {
	data := []byte(`agents:
  containerd: /run/omerta-test/containerd.sock
  namespace: omerta-test.1
  catalog_dir: /srv/catalog
  bundled_dir: /srv/archives
  log_dir: /srv/logs
  run_dir: /run/omerta-test
  runtime_root: /run/omerta-test/rt
  telemetry_interval: 30s
`)
	cfg, err := Parse(data, "agents.yaml", Default())
	if err != nil {
		t.Fatal(err)
	}
	want := Agents{Containerd: "/run/omerta-test/containerd.sock", Namespace: "omerta-test.1",
		CatalogDir: "/srv/catalog", BundledDir: "/srv/archives", LogDir: "/srv/logs", RunDir: "/run/omerta-test",
		RuntimeRoot: "/run/omerta-test/rt", TelemetryInterval: 30 * time.Second}
	if cfg.Agents != want {
		t.Fatalf("agents = %+v, want %+v", cfg.Agents, want)
	}
	// A partial section keeps the defaults of what it leaves out.
	cfg, err = Parse([]byte("agents:\n  namespace: lab\n"), "partial.yaml", Default())
	if err != nil || cfg.Agents.Namespace != "lab" || cfg.Agents.Containerd != DefaultContainerdSocket {
		t.Fatalf("partial section = %+v, %v", cfg.Agents, err)
	}
	// Marshal writes the section and reads it back.
	full, _ := Parse(data, "agents.yaml", Default())
	out, err := Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, "marshalled", Default())
	if err != nil || back.Agents != want {
		t.Fatalf("round trip = %+v, %v\n%s", back.Agents, err, out)
	}
}

// TestAgentsBad checks each bad agents section's one-line message against
// testdata/agents-bad.golden (-update rewrites it).
func TestAgentsBad(t *testing.T) {
	files, _ := filepath.Glob("testdata/agents-bad/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	var got strings.Builder
	for _, f := range files {
		_, err := Load(f)
		if err == nil {
			t.Errorf("%s: Load succeeded", f)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, f) || !strings.Contains(msg, "agents") {
			t.Errorf("%s: message is not one line naming the file and the field: %q", f, msg)
		}
		got.WriteString(msg + "\n")
	}
	golden := "testdata/agents-bad.golden"
	if *update {
		os.WriteFile(golden, []byte(got.String()), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("messages differ from %s (run with -update to accept):\n%s", golden, got.String())
	}
}
