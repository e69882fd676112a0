package gpu

import (
	"fmt"
	"slices"
	"strings"
)

// Update replaces the inventory admission decides against and returns the
// agents whose GPUs drifted: a unit they hold is gone (a GPU lost, a MIG
// layout changed), a GPU they hold whole went into MIG mode, or the driver
// version changed under them. Their grants stay, marked with the problem,
// until the caller stops or flags the agent and calls Release; a marked
// grant is never handed out again by Admit.
func (a *Allocator) Update(inv Inventory) []Affected {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.inv
	a.inv = inv
	driverChanged := old.DriverVersion != "" && inv.DriverVersion != old.DriverVersion
	var out []Affected
	for _, agent := range sortedKeys(a.grants) {
		g := a.grants[agent]
		var reasons, lost []string
		if driverChanged {
			reasons = append(reasons, fmt.Sprintf("the NVIDIA driver changed from %s to %s", quote(old.DriverVersion), quote(inv.DriverVersion)))
		}
		for _, gu := range g.Units {
			u, ok := inv.Unit(gu.UUID)
			switch {
			case !ok:
				lost = append(lost, gu.UUID)
				reasons = append(reasons, fmt.Sprintf("%s (%s) is gone", gu.Label, gu.UUID))
			case u.MIGEnabled:
				reasons = append(reasons, fmt.Sprintf("%s (%s) is now in MIG mode", gu.Label, gu.UUID))
			}
		}
		if len(reasons) == 0 {
			continue
		}
		g.Problem = strings.Join(reasons, "; ")
		out = append(out, Affected{Agent: agent, Reason: g.Problem, Lost: lost})
	}
	return out
}

// Restore re-creates a grant after a restart, from what the agent's
// container was started with: the same units, mode and memory. It refuses
// a unit that is gone (ErrNotFound) or that the other grants already hold
// in a way this one cannot share (ErrConflict).
func (a *Allocator) Restore(g Grant) error {
	if g.Agent == "" || (g.Mode != Exclusive && g.Mode != Shared) || len(g.Units) == 0 {
		return fmt.Errorf("%w: a grant needs an agent, a mode and units", ErrInvalid)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.grants[g.Agent]; ok {
		return fmt.Errorf("%w: agent %s already holds a grant", ErrConflict, quote(g.Agent))
	}
	loads := a.loads()
	restored := Grant{Agent: g.Agent, Mode: g.Mode, MemoryBytes: g.MemoryBytes}
	for _, gu := range g.Units {
		u, ok := a.inv.Unit(gu.UUID)
		if !ok || !u.allocatable() {
			return fmt.Errorf("%w: restoring agent %s: GPU %s is not in the inventory", ErrNotFound, quote(g.Agent), quote(gu.UUID))
		}
		l := loads[u.UUID]
		if l.exclusive != "" || (g.Mode == Exclusive && l.sharers > 0) || slices.ContainsFunc(restored.Units, func(x GrantedGPU) bool { return x.UUID == u.UUID }) {
			return fmt.Errorf("%w: restoring agent %s: %s is already held", ErrConflict, quote(g.Agent), u.Label())
		}
		res := g.MemoryBytes
		if g.Mode == Exclusive {
			res = u.TotalBytes
		}
		restored.Units = append(restored.Units, GrantedGPU{UUID: u.UUID, Label: u.Label(), CDIName: u.CDIName(), Reserved: res})
	}
	a.grants[g.Agent] = &restored
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
