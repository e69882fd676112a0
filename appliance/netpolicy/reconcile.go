package netpolicy

import (
	"context"
	"fmt"
	"slices"

	"github.com/omertaos/omertaos/appliance/store"
)

// ReconcileReport says what Reconcile removed.
type ReconcileReport struct {
	Released     []string // agents that no longer exist: link, rules and address gone
	RemovedLinks []string // links named like an agent's that no agent owns
}

// Reconcile makes the network agree with the agents that exist (live, the
// agents domain's ids, deleted ones left out): every other agent is
// released, every stray agent link is removed, the bridge is made again if
// it went, and both nftables tables are rebuilt from the stored state,
// which also undoes any change made to them behind omertad's back.
func (m *Manager) Reconcile(ctx context.Context, live []string) (ReconcileReport, error) {
	var rep ReconcileReport
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if !m.running.Load() {
		return rep, fmt.Errorf("reconciling the agents' network: %w", ErrUnavailable)
	}
	if _, err := m.links.ensureBridge(); err != nil {
		return rep, err
	}
	m.mu.RLock()
	var gone []string
	owned := map[string]bool{}
	for id, s := range m.agents {
		if !slices.Contains(live, id) {
			gone = append(gone, id)
		} else {
			owned[s.veth] = true
		}
	}
	m.mu.RUnlock()
	slices.Sort(gone)
	for _, id := range gone {
		if err := m.releaseLocked(ctx, id, SystemActor, "reconcile: the agent no longer exists"); err != nil {
			return rep, err
		}
		rep.Released = append(rep.Released, id)
	}
	names, err := m.links.agentLinks()
	if err != nil {
		return rep, err
	}
	for _, n := range names {
		if owned[n] {
			continue
		}
		if _, err := m.links.remove(n); err != nil {
			return rep, err
		}
		rep.RemovedLinks = append(rep.RemovedLinks, n)
	}
	m.nftMu.Lock()
	err = m.rebuildLocked()
	m.nftMu.Unlock()
	if err != nil {
		return rep, err
	}
	if len(rep.Released)+len(rep.RemovedLinks) == 0 {
		return rep, nil
	}
	return rep, m.st.Audit(ctx, store.AuditEntry{Actor: SystemActor, Action: "netpolicy.reconciled", Target: m.cfg.Bridge,
		Detail: map[string]any{"released": nonNil(rep.Released), "removed_links": nonNil(rep.RemovedLinks)}})
}
