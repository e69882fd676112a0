package main

// Agents' own UIs through omertad (api's agentui.go): the API dials the
// port an agent's manifest declares at the address its running
// container holds on the agents' network, from the namespace that
// network lives in, as the model gateway dials an agent backend
// (backendTransport). The host's connections to agents pass netpolicy's
// rules: only what agents send is filtered.

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/api"
)

// agentUIDialTimeout bounds one connection to an agent's UI port.
const agentUIDialTimeout = 5 * time.Second

// agentUIDialer is api.AgentUINetwork over the agents' network.
type agentUIDialer struct{ n *agentNetwork }

// agentUI is the API's way to agents' UIs; nil without the agents'
// network (the route then answers 503 with the reason).
func (n *agentNetwork) agentUI() api.AgentUINetwork {
	if n == nil {
		return nil
	}
	return agentUIDialer{n: n}
}

// DialAgent connects to port on agent's container attached last.
func (d agentUIDialer) DialAgent(ctx context.Context, agent string, port int) (net.Conn, error) {
	if err := d.n.Ready(); err != nil {
		return nil, fmt.Errorf("%w: %w", api.ErrAgentUnreachable, err)
	}
	a, ok := d.n.agentAddr(agent)
	if !ok {
		return nil, fmt.Errorf("%w: %s has no address on it", api.ErrAgentUnreachable, gwQuote(agent))
	}
	dialer := &net.Dialer{Timeout: agentUIDialTimeout}
	var c net.Conn
	err := inNetns(d.n.ns, func() (err error) {
		c, err = dialer.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), strconv.Itoa(port)))
		return err
	})
	return c, err
}
