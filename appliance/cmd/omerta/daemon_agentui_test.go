package main

import (
	"errors"
	"testing"

	"github.com/omertaos/omertaos/appliance/api"
)

// Without the agents' network there is no way to agents' UIs; with it
// down, a dial says why, as the API's ErrAgentUnreachable.
func TestAgentUIDialerDown(t *testing.T) {
	var none *agentNetwork
	if none.agentUI() != nil {
		t.Fatal("no network: the API must get a nil AgentUINetwork, not a typed nil")
	}
	n := &agentNetwork{started: make(chan struct{})}
	n.fail(errors.New("nf_tables is missing"))
	_, err := n.agentUI().DialAgent(t.Context(), "web", 8080)
	if !errors.Is(err, api.ErrAgentUnreachable) {
		t.Errorf("dial on a network that is down = %v, want ErrAgentUnreachable", err)
	}
}
