package netpolicy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// Attachment is an agent's place on the agents' network.
type Attachment struct {
	AgentID string
	Address netip.Prefix // the agent's address on eth0, with the subnet's length
	Gateway netip.Addr   // its default route, resolver and model gateway
	Link    string       // the host end of its link
	Created bool         // the link was made now; false: it was there and right
}

// Attach gives agent id, whose network namespace is at netnsPath (the
// container's /proc/<pid>/ns/net), its link, address and default route. An
// agent seen for the first time gets an address (kept in SQLite until
// Release) and a policy that allows nothing but the gateway and the
// resolver. Calling it again for a namespace that already has the right
// link changes nothing; for another namespace (the agent's task was
// restarted) it moves the agent there.
func (m *Manager) Attach(ctx context.Context, id, netnsPath string) (Attachment, error) {
	if err := checkAgentID(id); err != nil {
		return Attachment{}, err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if !m.running.Load() {
		return Attachment{}, fmt.Errorf("attaching agent %s: %w", id, ErrUnavailable)
	}
	ns, err := openAgentNetns(netnsPath, m.hostNS)
	if err != nil {
		return Attachment{}, fmt.Errorf("attaching agent %s: %w", id, err)
	}
	defer ns.Close()
	s, err := m.ensureAgentLocked(ctx, id, SystemActor)
	if err != nil {
		return Attachment{}, err
	}
	created, err := m.links.attach(ns, s.veth, s.addr, id)
	if err != nil {
		return Attachment{}, fmt.Errorf("attaching agent %s: %w", id, err)
	}
	at := Attachment{AgentID: id, Address: netip.PrefixFrom(s.addr, m.cfg.Subnet.Bits()), Gateway: m.cfg.Gateway(), Link: s.veth, Created: created}
	if created {
		if err := m.st.Audit(ctx, store.AuditEntry{Actor: SystemActor, Action: "netpolicy.agent.attached", Target: id,
			Detail: map[string]any{"address": s.addr.String(), "link": s.veth}}); err != nil {
			return at, err
		}
	}
	return at, nil
}

// ensureAgentLocked returns id's state, adding the agent (row, memory,
// kernel objects) when it is new. opMu held.
func (m *Manager) ensureAgentLocked(ctx context.Context, id, actor string) (*agentState, error) {
	if s, ok := m.agent(id); ok {
		return s, nil
	}
	var row agentRow
	err := m.st.Write(ctx, func(tx *sql.Tx) error {
		var err error
		row, _, err = m.getOrAddAgent(ctx, tx, id, actor)
		return err
	})
	if err != nil {
		return nil, err
	}
	rules, err := compileEgress(row.Egress)
	if err != nil {
		rules, _ = compileEgress(Egress{})
	}
	return m.addAgentLocked(row, rules)
}

// addAgentLocked puts a stored agent into memory and the kernel.
func (m *Manager) addAgentLocked(row agentRow, rules *egressRules) (*agentState, error) {
	s := m.newAgentState(row, rules)
	m.nftMu.Lock()
	defer m.nftMu.Unlock()
	m.mu.Lock()
	m.agents[s.id], m.byAddr[s.addr] = s, s
	m.mu.Unlock()
	sp := m.specLocked(s)
	if err := m.nft.addAgent(&sp); err != nil {
		m.log.Warn("adding an agent's rules failed; rebuilding the tables", "agent", s.id, "error", err)
		if err := m.rebuildLocked(); err != nil {
			m.mu.Lock()
			delete(m.agents, s.id)
			delete(m.byAddr, s.addr)
			m.mu.Unlock()
			return nil, fmt.Errorf("adding the rules of agent %s: %w", s.id, err)
		}
	}
	return s, nil
}

// Detach removes agent id's link (its address and policy stay). An agent
// whose namespace is gone has lost its link already; Detach is then a
// no-op.
func (m *Manager) Detach(ctx context.Context, id string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if !m.running.Load() {
		return fmt.Errorf("detaching agent %s: %w", id, ErrUnavailable)
	}
	s, ok := m.agent(id)
	if !ok {
		return fmt.Errorf("detaching agent %s: %w", quote(id), ErrNotFound)
	}
	removed, err := m.links.remove(s.veth)
	if err != nil || !removed {
		return err
	}
	return m.st.Audit(ctx, store.AuditEntry{Actor: SystemActor, Action: "netpolicy.agent.detached", Target: id,
		Detail: map[string]any{"link": s.veth}})
}

// Release forgets agent id (deleted): its link, rules and resolved
// addresses go, and its address is free again.
func (m *Manager) Release(ctx context.Context, id, actor string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if !m.running.Load() {
		return fmt.Errorf("releasing agent %s: %w", id, ErrUnavailable)
	}
	if _, ok := m.agent(id); !ok {
		return fmt.Errorf("releasing agent %s: %w", quote(id), ErrNotFound)
	}
	return m.releaseLocked(ctx, id, actor, "released")
}

func (m *Manager) releaseLocked(ctx context.Context, id, actor, why string) error {
	s, _ := m.agent(id)
	if _, err := m.links.remove(s.veth); err != nil {
		return fmt.Errorf("releasing agent %s: %w", id, err)
	}
	if _, err := m.deleteAgent(ctx, id, actor, map[string]any{"address": s.addr.String(), "link": s.veth, "why": why}); err != nil {
		return err
	}
	m.nftMu.Lock()
	defer m.nftMu.Unlock()
	m.mu.Lock()
	delete(m.agents, id)
	delete(m.byAddr, s.addr)
	m.mu.Unlock()
	if err := m.nft.removeAgent(id, s.addr, s.veth); err != nil {
		m.log.Warn("removing an agent's rules failed; rebuilding the tables", "agent", id, "error", err)
		return m.rebuildLocked()
	}
	return nil
}

// SetPolicy puts agent id's egress policy in force at once: its networks
// are replaced, the addresses resolved for names it no longer allows are
// closed, and, when anything was taken away, every open connection of the
// agent is checked again against the new policy (connections it no longer
// allows are rejected from their next packet on). An agent not seen yet is
// added. Without a running network the policy is stored and applied at
// Start.
func (m *Manager) SetPolicy(ctx context.Context, id string, e Egress, actor string) error {
	if err := checkAgentID(id); err != nil {
		return err
	}
	rules, err := compileEgress(e)
	if err != nil {
		return err
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	old := m.storedRules(ctx, id)
	recheck := old != nil && rules.removedFrom(old)
	row, err := m.storePolicy(ctx, id, actor, rules, recheck)
	if err != nil {
		return err
	}
	if !m.running.Load() {
		return nil
	}
	s, ok := m.agent(id)
	if !ok {
		_, err := m.addAgentLocked(row, rules)
		return err
	}
	return m.applyPolicyLocked(s, rules, row.Mark, recheck)
}

// storedRules is the policy in force for id, nil when there is none.
func (m *Manager) storedRules(ctx context.Context, id string) *egressRules {
	if s, ok := m.agent(id); ok {
		return s.rules.Load()
	}
	row, err := scanAgent(m.st.Read().QueryRowContext(ctx, "SELECT agent_id, address, veth, egress, mark FROM netpolicy_agents WHERE agent_id = ?", id))
	if err != nil {
		return nil
	}
	rules, err := compileEgress(row.Egress)
	if err != nil {
		return nil
	}
	return rules
}

func (m *Manager) applyPolicyLocked(s *agentState, rules *egressRules, mark uint32, recheck bool) error {
	m.nftMu.Lock()
	defer m.nftMu.Unlock()
	s.rules.Store(rules)
	if recheck {
		s.mark = mark
		for a, e := range s.resolved {
			if !anyAllowed(rules, e.names) {
				delete(s.resolved, a)
			}
		}
	}
	sp := m.specLocked(s)
	if err := m.nft.setPolicy(&sp, recheck); err != nil {
		m.log.Warn("applying a policy failed; rebuilding the tables", "agent", s.id, "error", err)
		return m.rebuildLocked()
	}
	return nil
}

// Policy is the egress policy in force for agent id, normalised.
func (m *Manager) Policy(ctx context.Context, id string) (Egress, error) {
	if s, ok := m.agent(id); ok {
		return s.rules.Load().norm, nil
	}
	row, err := scanAgent(m.st.Read().QueryRowContext(ctx, "SELECT agent_id, address, veth, egress, mark FROM netpolicy_agents WHERE agent_id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Egress{}, fmt.Errorf("reading the policy of agent %s: %w", quote(id), ErrNotFound)
	}
	if err != nil {
		return Egress{}, err
	}
	return row.Egress, nil
}

// Errors of allowResolved, each a reason the resolver states.
var (
	errGone     = errors.New("the agent left the network while its query was answered")
	errDeniedNw = errors.New("the policy changed while the query was answered and no longer allows the name")
	errSetFull  = errors.New("the agent's set of resolved addresses is full")
)

// allowResolved opens addrs, resolved for name, to agent s for ttl plus
// the grace period, before the agent is told the answer. An address
// already open for longer is left alone, so repeated answers cost no
// kernel write.
func (m *Manager) allowResolved(s *agentState, name string, addrs []netip.Addr, ttl time.Duration) error {
	m.nftMu.Lock()
	defer m.nftMu.Unlock()
	if m.nft == nil {
		return ErrUnavailable
	}
	if cur, ok := m.agent(s.id); !ok || cur != s {
		return errGone
	}
	if !s.rules.Load().allows(name) {
		return errDeniedNw
	}
	now := m.now()
	timeout := ttl + m.cfg.Grace
	want := now.Add(timeout)
	slack := max(m.cfg.Grace/2, time.Second)
	var add []resolvedElem
	for _, a := range addrs {
		e := s.resolved[a]
		if e != nil && !e.expires.Before(want.Add(-slack)) {
			e.names = withName(e.names, name)
			continue
		}
		if e == nil && len(s.resolved)+len(add) >= m.cfg.Limits.ResolvedPerAgent {
			m.pruneLocked(s, now)
			if len(s.resolved)+len(add) >= m.cfg.Limits.ResolvedPerAgent {
				return fmt.Errorf("%w (%d addresses)", errSetFull, m.cfg.Limits.ResolvedPerAgent)
			}
		}
		var names []string
		if e != nil {
			names = e.names
		}
		add = append(add, resolvedElem{addr: a, timeout: timeout, names: withName(names, name)})
	}
	if len(add) == 0 {
		return nil
	}
	if err := m.nft.addResolved(s.id, add); err != nil {
		return err
	}
	for _, r := range add {
		s.resolved[r.addr] = &resolvedEntry{expires: want, names: r.names}
	}
	m.stats.opened.Add(uint64(len(add)))
	return nil
}

// pruneLocked forgets addresses whose time is up (the kernel has dropped
// them already).
func (m *Manager) pruneLocked(s *agentState, now time.Time) {
	for a, e := range s.resolved {
		if !e.expires.After(now) {
			delete(s.resolved, a)
		}
	}
}

func withName(names []string, name string) []string {
	if slices.Contains(names, name) || len(names) >= maxNamesPerAddr {
		return names
	}
	return append(slices.Clip(names), name)
}
