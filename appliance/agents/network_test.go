package agents

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

func gatewayRequest(t *testing.T, isolation string) DeployRequest {
	t.Helper()
	text := strings.Replace(toolYAML, "  isolation: container\n", "  isolation: "+isolation+"\n  network: {mode: gateway}\n", 1)
	return DeployRequest{Manifest: parseManifest(t, text), Actor: testActor, Config: map[string]any{"mode": "fast"},
		Secrets: map[string]any{"api_key": testSecret}}
}

// TestNetworkGatewayDeploy: gateway mode deploys where the agents' network
// is up, and is refused with the reason, before anything is recorded,
// where it is not configured, down, or asked with a sandbox.
func TestNetworkGatewayDeploy(t *testing.T) {
	down := errors.New("creating the bridge: operation not permitted")
	for _, c := range []struct {
		name      string
		opts      []Option
		isolation string
		reason    string // "": deployed
	}{
		{"not configured", nil, "container", "not enabled"},
		{"down", []Option{WithNetwork(func() error { return down })}, "container", "operation not permitted"},
		{"sandbox", []Option{WithNetwork(func() error { return nil })}, "sandbox", "gVisor"},
		{"up", []Option{WithNetwork(func() error { return nil })}, "container", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opts...)
			a, err := e.s.Deploy(context.Background(), gatewayRequest(t, c.isolation))
			if c.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if sp, _ := e.rt.Spec("tool-g1"); sp.Network != manifest.NetworkGateway || a.Status.State != StateRunning {
					t.Fatalf("runtime spec network %q, state %s", sp.Network, a.Status.State)
				}
				return
			}
			var ie *InvalidError
			if !errors.As(err, &ie) || !hasPath(ie.Problems, "spec.network.mode") || ie.Problems[0].Code != manifest.CodeUnavailable ||
				!strings.Contains(err.Error(), c.reason) {
				t.Fatalf("error %v, want spec.network.mode unavailable naming %q", err, c.reason)
			}
			if as, _ := e.s.List(context.Background()); len(as) != 0 || len(e.rt.Calls()) != 0 {
				t.Fatalf("a refused deploy left %v, calls %v", as, e.rt.Calls())
			}
		})
	}
}

func TestNetworkAgentOfContainer(t *testing.T) {
	for _, c := range []struct {
		ctr, agent string
		gen        int64
		ok         bool
	}{
		{"tool-g1", "tool", 1, true},
		{"my-gw-agent-g12", "my-gw-agent", 12, true},
		{"a-g-g3", "a-g", 3, true},
		{"tool", "", 0, false},
		{"tool-g", "", 0, false},
		{"tool-g0", "", 0, false},
		{"tool-g01", "", 0, false},
		{"tool-g+1", "", 0, false},
		{"-g1", "", 0, false},
	} {
		agent, gen, ok := AgentOfContainer(c.ctr)
		if agent != c.agent || gen != c.gen || ok != c.ok {
			t.Errorf("AgentOfContainer(%q) = %q %d %v", c.ctr, agent, gen, ok)
		}
		if ok && ContainerOf(agent, gen) != c.ctr {
			t.Errorf("ContainerOf(%q, %d) != %q", agent, gen, c.ctr)
		}
	}
}
