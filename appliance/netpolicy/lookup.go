package netpolicy

import "net/netip"

// AgentAddr is the address agent id holds on the agents' network, the
// reverse of AgentByAddr: how omertad reaches an agent that serves the
// others through the model gateway (a model backend). The host's
// connections to an agent pass: only what agents send is filtered, and
// their answers are established traffic.
func (m *Manager) AgentAddr(id string) (netip.Addr, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s, ok := m.agents[id]; ok {
		return s.addr, true
	}
	return netip.Addr{}, false
}

// ResolvConf is the /etc/resolv.conf the agents' containers get.
func (m *Manager) ResolvConf() []byte { return m.cfg.ResolvConf() }
