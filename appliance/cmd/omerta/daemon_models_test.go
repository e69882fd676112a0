package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/registry"
)

// modelManifest is a model manifest of this appliance's format, served by
// an agent (no artifact in the registry), needing vram GB of GPU memory.
func modelManifest(name, vram string) string {
	return "kind: model\nname: " + name + "\nprovider: omertaos\nversion: \"0.1.0\"\naccess: local\n" +
		"download: {url: \"agent://local-echo-model\", method: agent}\nresources: {vram_gb: " + vram + "}\n"
}

// TestModelGate: each routed model is verified against the signed
// registries and this machine's GPUs before the gateway may serve it; the
// refused ones are disabled in the registry the gateway is given, with the
// registry's reason, and every decision is audited and listed for the API.
func TestModelGate(t *testing.T) {
	reg := modelRegistry(t, map[string]string{
		"local": modelManifest("local", "0"),
		"fits":  modelManifest("fits", "8"),
		"big":   modelManifest("big", "80"),
	})
	trust := loadTrust(slog.New(slog.DiscardHandler), registryTrust(t))
	st := testStore(t)
	gpus := []registry.GPU{{Index: 0, Name: "GPU 0", TotalBytes: 24e9, FreeBytes: 10e9}}
	for _, c := range []struct {
		profile config.Profile
		trust   *registry.Keyring
		enabled []string
	}{
		{config.ProfileEnterprise, trust, []string{"local", "fits"}},
		// Unsigned (no trusted key): the user profile enables it, with a
		// warning; enterprise enables nothing.
		{config.ProfileUser, registry.NewKeyring(), []string{"local", "fits"}},
		{config.ProfileEnterprise, registry.NewKeyring(), nil},
	} {
		v := registry.NewVerifier(registry.VerifierConfig{Profile: c.profile, Trust: c.trust, Registries: []string{reg}})
		g := newModelGate(v, nil, st, slog.New(slog.DiscardHandler), time.Now)
		g.gpus = func(context.Context) []registry.GPU { return gpus }
		gc := config.Gateway{Backends: []config.GatewayBackend{{Name: "echo", URL: "http://127.0.0.1:9/v1", Kind: "local", Models: []string{"local", "fits", "big", "ghost"}}}}
		base, err := gatewayRegistry(gc)
		if err != nil {
			t.Fatal(err)
		}
		got := g.enable(context.Background(), base)
		var enabled []string
		for _, name := range got.Models() {
			if got.Model(name).Disabled == "" {
				enabled = append(enabled, name)
			}
		}
		if strings.Join(enabled, ",") != strings.Join(c.enabled, ",") {
			t.Errorf("%s, %d keys: enabled %v, want %v", c.profile, c.trust.Len(), enabled, c.enabled)
		}
		list := g.Models()
		if !list.Gateway || list.CheckedAt == nil || len(list.Models) != 4 {
			t.Fatalf("list %+v", list)
		}
		for _, m := range list.Models {
			if m.Enabled != (got.Model(m.Name).Disabled == "") || len(m.Backends) != 1 || m.Backends[0] != "echo" {
				t.Errorf("%s: listed %+v, registry disabled %q", m.Name, m, got.Model(m.Name).Disabled)
			}
			switch {
			case m.Name == "ghost" && (m.Code != string(registry.CodeNotFound) || !strings.Contains(m.Reason, "no configured registry lists it")):
				t.Errorf("an unlisted model: %+v", m)
			case m.Name == "big" && (m.Enabled || !strings.Contains(m.Reason, "needs 80 GB") || !strings.Contains(m.Reason, "10 GB")):
				t.Errorf("a model that does not fit: %+v", m)
			case m.Name == "local" && c.trust.Len() > 0 && (!m.Signed || m.KeyID != registryTestKeyID || m.VRAMGB == nil || m.Provider != "omertaos"):
				t.Errorf("a signed model: %+v", m)
			case m.Name == "local" && c.profile == config.ProfileUser && (m.Code != string(registry.CodeUnsigned) || len(m.Warnings) == 0):
				t.Errorf("unsigned in the user profile: %+v", m)
			}
		}
		if base.Model("big").Disabled != "" {
			t.Fatal("enable changed the registry it was given")
		}
	}
	recs, err := st.AuditLog(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var refused, enabled int
	for _, r := range recs {
		var d struct{ Code, Reason string }
		json.Unmarshal(r.Detail, &d)
		switch {
		case r.Action == "gateway.model.refused" && r.Target == "model/big" && strings.Contains(d.Reason, "needs 80 GB"):
			refused++
		case r.Action == "gateway.model.enabled":
			enabled++
		}
	}
	if refused != 3 || enabled != 4 {
		t.Errorf("audited %d refusals of big (want 3) and %d models enabled (want 4)", refused, enabled)
	}
}

// TestModelGateFailsClosed: the gateway is built with every model disabled
// until they are verified, so nothing is served on a name alone.
func TestModelGateFailsClosed(t *testing.T) {
	base, err := gatewayRegistry(config.Gateway{Backends: []config.GatewayBackend{{Name: "echo", URL: "http://127.0.0.1:9/v1", Kind: "local", Models: []string{"a"}}}})
	if err != nil {
		t.Fatal(err)
	}
	r := base.WithDisabled(map[string]string{"a": ""})
	if m := r.Model("a"); m == nil || m.Disabled == "" {
		t.Fatalf("a model disabled with no reason is enabled: %+v", m)
	}
}
