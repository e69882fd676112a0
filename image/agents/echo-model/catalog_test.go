package main

import (
	"os"
	"slices"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// TestCatalogEntry checks the shipped catalog entry
// (image/catalog/local-echo-model.yaml) with the manifest's own rules, and
// that it runs this program the way run expects, in gateway mode.
func TestCatalogEntry(t *testing.T) {
	data, err := os.ReadFile("../../catalog/local-echo-model.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Spec.Network.Mode != manifest.NetworkGateway {
		t.Fatalf("network mode %q: the gateway reaches the backend on the agents' network", m.Spec.Network.Mode)
	}
	if !slices.Equal(m.Spec.Command, []string{"/agent", "serve"}) {
		t.Fatalf("command %q", m.Spec.Command)
	}
	env := map[string]string{}
	for _, e := range m.Spec.Env {
		env[e.Name] = e.Value
	}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil || len(m.Spec.Ports) != 1 || m.Spec.Ports[0].Port != cfg.port {
		t.Fatalf("the entry's environment %v gives %+v, %v; its ports %+v", env, cfg, err, m.Spec.Ports)
	}
}
