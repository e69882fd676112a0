package manifest

import "github.com/omertaos/omertaos/appliance/config"

// DefaultIsolation is the isolation an agent gets when its manifest leaves
// spec.isolation out: the enterprise profile runs every agent under gVisor.
func DefaultIsolation(p config.Profile) Isolation {
	if p == config.ProfileEnterprise {
		return IsolationSandbox
	}
	return IsolationContainer
}

// EffectiveIsolation is the isolation s runs with under profile p.
func (s Spec) EffectiveIsolation(p config.Profile) Isolation {
	if s.Isolation != "" {
		return s.Isolation
	}
	return DefaultIsolation(p)
}
