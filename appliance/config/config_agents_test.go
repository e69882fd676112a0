package config

import (
	"os"
	"path/filepath"
	"reflect"
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
		Registries: []string{"/usr/share/omerta"}, TrustDir: "/etc/omerta/trust",
	}
	if !reflect.DeepEqual(cfg.Agents, want) {
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
  registries: [/srv/registry, /var/lib/omerta/registries/acme]
  trust_dir: /srv/trust
`)
	cfg, err := Parse(data, "agents.yaml", Default())
	if err != nil {
		t.Fatal(err)
	}
	want := Agents{Containerd: "/run/omerta-test/containerd.sock", Namespace: "omerta-test.1",
		CatalogDir: "/srv/catalog", BundledDir: "/srv/archives", LogDir: "/srv/logs", RunDir: "/run/omerta-test",
		RuntimeRoot: "/run/omerta-test/rt", TelemetryInterval: 30 * time.Second,
		Registries: []string{"/srv/registry", "/var/lib/omerta/registries/acme"}, TrustDir: "/srv/trust"}
	if !reflect.DeepEqual(cfg.Agents, want) {
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
	if err != nil || !reflect.DeepEqual(back.Agents, want) {
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

// TestAgentsRegistries: agents.registries and agents.trust_dir, accepted
// or refused naming the field, with no list shared between a base and
// what Parse returns.
func TestAgentsRegistries(t *testing.T) {
	many := func(n int) string {
		var b strings.Builder
		b.WriteString("agents:\n  registries:\n")
		for i := range n {
			b.WriteString("    - /srv/registry/" + string(rune('a'+i)) + "\n")
		}
		return b.String()
	}
	for _, c := range []struct {
		name, data string
		registries []string // want, when accepted
		trust      string
		err        string // want in the message, when refused
	}{
		{name: "absent", data: "agents:\n  namespace: lab\n", registries: []string{DefaultRegistryDir}, trust: DefaultTrustDir},
		{name: "null keeps the default", data: "agents:\n  registries: null\n", registries: []string{DefaultRegistryDir}, trust: DefaultTrustDir},
		{name: "empty consults none", data: "agents:\n  registries: []\n", registries: []string{}, trust: DefaultTrustDir},
		{name: "in order", data: "agents:\n  registries: [/srv/b, /usr/share/omerta, /srv/a]\n  trust_dir: /srv/trust\n",
			registries: []string{"/srv/b", "/usr/share/omerta", "/srv/a"}, trust: "/srv/trust"},
		{name: "at most 16", data: many(MaxRegistries), registries: func() []string {
			var out []string
			for i := range MaxRegistries {
				out = append(out, "/srv/registry/"+string(rune('a'+i)))
			}
			return out
		}(), trust: DefaultTrustDir},
		{name: "17", data: many(MaxRegistries + 1), err: "agents.registries: lists 17 entries; at most 16 are accepted"},
		{name: "relative", data: "agents:\n  registries: [/srv/a, /srv/b, srv/c]\n", err: `agents.registries[2]: "srv/c": must be an absolute path`},
		{name: "empty path", data: "agents:\n  registries: [\"\"]\n", err: "agents.registries[0]: must be an absolute path"},
		{name: "unclean", data: "agents:\n  registries: [/srv/./a]\n", err: `agents.registries[0]: "/srv/./a": must be a clean path`},
		{name: "trailing slash", data: "agents:\n  registries: [/srv/a/]\n", err: `agents.registries[0]: "/srv/a/": must be a clean path`},
		{name: "twice", data: "agents:\n  registries: [/srv/a, /srv/b, /srv/a]\n", err: `agents.registries[2]: "/srv/a": is listed twice`},
		{name: "control", data: "agents:\n  registries: [\"/srv/a\\r/etc\"]\n", err: "agents.registries[0]: \"/srv/a\\r/etc\": must be a path of at most 4096 bytes without control characters"},
		{name: "a string", data: "agents:\n  registries: /srv/a\n", err: `field "agents.registries": string was used where sequence is expected`},
		{name: "trust relative", data: "agents:\n  trust_dir: trust\n", err: `agents.trust_dir: "trust": must be an absolute path`},
		{name: "trust empty", data: "agents:\n  trust_dir: \"\"\n", err: "agents.trust_dir: must be an absolute path"},
		{name: "trust unclean", data: "agents:\n  trust_dir: /etc//trust\n", err: `agents.trust_dir: "/etc//trust": must be a clean path`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.data), "omerta.yaml", Default())
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "omerta.yaml") {
					t.Fatalf("Parse = %v, want a refusal naming the file and saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Agents.Registries, c.registries) || cfg.Agents.TrustDir != c.trust {
				t.Fatalf("registries %#v, trust_dir %q; want %#v, %q", cfg.Agents.Registries, cfg.Agents.TrustDir, c.registries, c.trust)
			}
			// What is accepted is installed as a file that reads back the same.
			out, err := Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out, "installed", Default())
			if err != nil || !Equal(back, cfg) || len(back.Agents.Registries) != len(c.registries) {
				t.Fatalf("installed file reads back as %#v, %v\n%s", back.Agents.Registries, err, out)
			}
		})
	}
	// Decoding into a base never writes through to the base's list, and
	// the defaults are a new list each time.
	base := Default()
	got, err := Parse([]byte("agents:\n  registries: [/srv/a]\n"), "over.yaml", base)
	if err != nil {
		t.Fatal(err)
	}
	if base.Agents.Registries[0] != DefaultRegistryDir || got.Agents.Registries[0] != "/srv/a" {
		t.Fatalf("Parse changed its base: %v", base.Agents.Registries)
	}
	got.Agents.Registries[0] = "/elsewhere"
	if d := DefaultAgents(); d.Registries[0] != DefaultRegistryDir {
		t.Fatalf("DefaultAgents shares its list: %v", d.Registries)
	}
	cfg, err := Parse(nil, "empty", base)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agents.Registries[0] = "/elsewhere"
	if base.Agents.Registries[0] != DefaultRegistryDir {
		t.Fatalf("an empty file's configuration shares its base's list: %v", base.Agents.Registries)
	}
}
