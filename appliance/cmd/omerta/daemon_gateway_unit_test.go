package main

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/gateway"
	"github.com/omertaos/omertaos/appliance/netpolicy"
	"github.com/omertaos/omertaos/appliance/policy"
)

func layer(origin string, names, suffixes, prefixes []string) policy.Allow[*policy.Egress] {
	e := &policy.Egress{Names: names, Suffixes: suffixes}
	for _, p := range prefixes {
		e.Prefixes = append(e.Prefixes, netip.MustParsePrefix(p))
	}
	return policy.Allow[*policy.Egress]{Items: e, Origin: origin}
}

// TestEgressOf: what netpolicy is given is what every layer of the
// policy allows; the profiles' empty list gives nothing.
func TestEgressOf(t *testing.T) {
	for _, c := range []struct {
		name   string
		layers []policy.Allow[*policy.Egress]
		want   netpolicy.Egress
	}{
		{"profile default: nothing", []policy.Allow[*policy.Egress]{layer("profile:user", nil, nil, nil)}, netpolicy.Egress{}},
		{"no layer: nothing", nil, netpolicy.Egress{}},
		{"one layer", []policy.Allow[*policy.Egress]{layer("policy:agent/a@v1", []string{"api.example.com"}, []string{".example.org"}, []string{"192.0.2.0/24", "2001:db8::/32"})},
			netpolicy.Egress{Names: []string{"api.example.com", "*.example.org"}, CIDRs: []string{"192.0.2.0/24"}}},
		{"intersection", []policy.Allow[*policy.Egress]{
			layer("policy:tenant/t@v1", nil, []string{".example.com"}, []string{"192.0.2.0/24"}),
			layer("policy:agent/a@v1", []string{"api.example.com", "other.net"}, []string{".example.com"}, []string{"192.0.2.128/25", "198.51.100.0/24"}),
		}, netpolicy.Egress{Names: []string{"*.example.com", "api.example.com"}, CIDRs: []string{"192.0.2.128/25"}}},
		{"wildcard narrowed by a name", []policy.Allow[*policy.Egress]{
			layer("policy:tenant/t@v1", []string{"api.example.com"}, nil, nil),
			layer("policy:agent/a@v1", nil, []string{".example.com"}, nil),
		}, netpolicy.Egress{Names: []string{"api.example.com"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := egressOf(&policy.Effective{Egress: c.layers})
			if !slices.Equal(got.Names, c.want.Names) || !slices.Equal(got.CIDRs, c.want.CIDRs) {
				t.Fatalf("egress %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestRulesOf(t *testing.T) {
	e := &policy.Effective{
		Models:     []policy.Allow[[]string]{{Items: []string{"*"}, Origin: "profile:user"}, {Items: []string{"local-*"}, Origin: "policy:agent/a@v1"}},
		AllowCloud: policy.Flag{Value: true},
		Tokens:     policy.Limit{Value: 1000, Set: true},
		USDMicros:  policy.Limit{Value: 2_500_000, Set: true},
	}
	tokens, usd := int64(50000), 20.0
	r := rulesOf(e, policy.Quotas{TokensPerMonth: &tokens, USDPerMonth: &usd}, []string{"local-echo", "gpt-4o", "local-other"})
	if !slices.Equal(r.Models, []string{"local-echo", "local-other"}) || !r.AllowCloud || r.Agent.MonthlyTokens != 1000 || r.Agent.MonthlyCostUSD != 2.5 ||
		r.Tenant.MonthlyTokens != 50000 || r.Tenant.MonthlyCostUSD != 20 {
		t.Fatalf("rules %+v", r)
	}
	if r := rulesOf(&policy.Effective{Models: []policy.Allow[[]string]{{Items: []string{}}}}, policy.Quotas{}, []string{"local-echo"}); len(r.Models) != 0 || r.Models == nil || r.Tenant != (gateway.Limits{}) {
		t.Fatalf("a policy allowing no model gave %+v (nil would mean the same, but say it)", r.Models)
	}
}

func TestGatewayRegistry(t *testing.T) {
	reg, err := gatewayRegistry(config.Gateway{Backends: []config.GatewayBackend{
		{Name: "echo", Agent: "local-echo-model", Port: 8080, Kind: "local", Models: []string{"local-echo", "chat"}},
		{Name: "cloud", URL: "https://api.example.com/v1", Kind: "cloud", Credential: "key", Timeout: 20 * time.Second, Models: []string{"chat"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(reg.Models(), []string{"local-echo", "chat"}) {
		t.Fatalf("models %v", reg.Models())
	}
	m := reg.Model("chat")
	if len(m.Route) != 2 || m.Route[0].Backend.Name != "echo" || m.Route[0].Backend.URL != "http://local-echo-model.agent.omerta:8080/v1" ||
		m.Route[1].Backend.Name != "cloud" || !m.Route[1].Cloud() {
		t.Fatalf("route of chat: %+v %+v", m.Route[0].Backend, m.Route[1].Backend)
	}
	// More fallbacks than the gateway takes: refused, named.
	var many []config.GatewayBackend
	for i := range 9 {
		many = append(many, config.GatewayBackend{Name: "b" + string(rune('a'+i)), URL: "https://x.example/v1", Kind: "local", Models: []string{"m"}})
	}
	if _, err := gatewayRegistry(config.Gateway{Backends: many}); err == nil || !strings.Contains(err.Error(), "route") {
		t.Fatalf("nine fallbacks: %v", err)
	}
}

func TestFileSecrets(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "key"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "big"), make([]byte, maxSecretBytes+1), 0o600)
	os.Symlink(filepath.Join(dir, "key"), filepath.Join(dir, "link"))
	sec := fileSecrets(dir)
	ctx := context.Background()
	if v, err := sec.Secret(ctx, "key"); err != nil || string(v) != "s3cret" {
		t.Fatalf("key: %q %v", v, err)
	}
	for _, name := range []string{"../key", "a/key", "..", "", "missing", "big", "link"} {
		v, err := sec.Secret(ctx, name)
		if err == nil {
			t.Errorf("%q: read %q", name, v)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: the error holds the secret: %v", name, err)
		}
	}
}

func TestNetpolicyConfig(t *testing.T) {
	gc := config.DefaultGateway()
	gc.Upstreams = []string{"192.0.2.53:53"}
	cfg, err := netpolicyConfig(gc)
	if err != nil || cfg.Bridge != "omerta0" || cfg.Subnet.String() != "10.88.0.0/24" || !slices.Equal(cfg.GatewayPorts, []uint16{8080}) ||
		!slices.Equal(cfg.Upstreams, gc.Upstreams) {
		t.Fatalf("config %+v, %v", cfg, err)
	}
	// An agentNetwork that failed says why, at once.
	n := &agentNetwork{started: make(chan struct{})}
	n.fail(errors.New("no nf_tables"))
	if err := n.Ready(); err == nil || err.Error() != "no nf_tables" {
		t.Fatalf("Ready = %v", err)
	}
	var none *agentNetwork
	if none.readyFunc() != nil || none.runtimeOptions() != nil || none.services(daemon.Deps{}, nil, nil, nil, nil) != nil || none.collectors() != nil {
		t.Fatal("a disabled network gave the wiring something")
	}
}
