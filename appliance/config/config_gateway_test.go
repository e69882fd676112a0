package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestGatewayDefaults(t *testing.T) {
	cfg, err := Parse(nil, "empty", Default())
	if err != nil {
		t.Fatal(err)
	}
	want := Gateway{Bridge: "omerta0", Subnet: "10.88.0.0/24", Port: 8080}
	if !reflect.DeepEqual(cfg.Gateway, want) || cfg.Gateway.Enabled {
		t.Errorf("default gateway section = %+v, want %+v (disabled)", cfg.Gateway, want)
	}
	if p := cfg.Gateway.SubnetPrefix(); p.String() != "10.88.0.0/24" {
		t.Errorf("subnet prefix %s", p)
	}
}

func TestGatewaySection(t *testing.T) {
	data := []byte(`gateway:
  enabled: true
  bridge: agents0
  subnet: 10.99.0.0/24
  port: 8081
  upstreams: ["192.0.2.53:53"]
  backends:
    - name: echo
      agent: local-echo-model
      port: 8080
      models: [local-echo]
    - name: openai
      url: https://api.example.com/v1
      kind: cloud
      credential: openai-key
      timeout: 30s
      models: [gpt-4o-mini, local-echo]
`)
	cfg, err := Parse(data, "gateway.yaml", Default())
	if err != nil {
		t.Fatal(err)
	}
	want := Gateway{Enabled: true, Bridge: "agents0", Subnet: "10.99.0.0/24", Port: 8081, Upstreams: []string{"192.0.2.53:53"},
		Backends: []GatewayBackend{
			{Name: "echo", Agent: "local-echo-model", Port: 8080, Kind: "local", Models: []string{"local-echo"}},
			{Name: "openai", URL: "https://api.example.com/v1", Kind: "cloud", Credential: "openai-key", Timeout: 30 * time.Second,
				Models: []string{"gpt-4o-mini", "local-echo"}},
		}}
	if !reflect.DeepEqual(cfg.Gateway, want) {
		t.Fatalf("gateway = %+v, want %+v", cfg.Gateway, want)
	}
	// A partial section keeps the defaults of what it leaves out.
	cfg, err = Parse([]byte("gateway:\n  enabled: true\n"), "partial.yaml", Default())
	if err != nil || !cfg.Gateway.Enabled || cfg.Gateway.Subnet != DefaultGatewaySubnet || cfg.Gateway.Port != DefaultGatewayPort {
		t.Fatalf("partial section = %+v, %v", cfg.Gateway, err)
	}
	full, _ := Parse(data, "gateway.yaml", Default())
	out, err := Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out, "marshalled", Default())
	if err != nil || !reflect.DeepEqual(back.Gateway, want) {
		t.Fatalf("round trip = %+v, %v\n%s", back.Gateway, err, out)
	}
	// Decoding into a base never writes through to the base's lists.
	base := full
	if _, err := Parse([]byte("gateway:\n  upstreams: [\"192.0.2.1:53\"]\n"), "over.yaml", base); err != nil {
		t.Fatal(err)
	}
	if base.Gateway.Upstreams[0] != "192.0.2.53:53" {
		t.Fatalf("Parse changed its base: %v", base.Gateway.Upstreams)
	}
}

// TestGatewayBad checks each bad gateway section's one-line message against
// testdata/gateway-bad.golden (-update rewrites it).
func TestGatewayBad(t *testing.T) {
	files, _ := filepath.Glob("testdata/gateway-bad/*.yaml")
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
		if strings.Contains(msg, "\n") || !strings.Contains(msg, f) || !strings.Contains(msg, "gateway") {
			t.Errorf("%s: message is not one line naming the file and the field: %q", f, msg)
		}
		if strings.Contains(msg, "secret@") {
			t.Errorf("%s: message repeats a URL's user info: %q", f, msg)
		}
		got.WriteString(msg + "\n")
	}
	golden := "testdata/gateway-bad.golden"
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
