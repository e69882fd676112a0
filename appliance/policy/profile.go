package policy

import (
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
)

// ProfileDefaults is the bottom layer of every agent's policy under
// profile p: every field is set, so that an agent with no policy of its
// own is still judged on each rule. doc.go explains the choices.
func ProfileDefaults(p config.Profile) Spec {
	switch p {
	case config.ProfileEnterprise:
		return Spec{
			Isolation: manifest.IsolationSandbox,
			Network:   &Network{Modes: []string{manifest.NetworkNone, manifest.NetworkGateway}, Egress: []string{}},
			GPU:       &GPU{Allowed: ptr(false)},
			Max:       &Max{CPU: "4", Memory: "16Gi", PIDs: ptr[int64](1024), GPUs: ptr[int64](1)},
			Images:    &Images{RequireSigned: ptr(true)},
			Models:    &Models{Allowed: []string{"*"}, AllowCloud: ptr(false)},
			Secrets:   []string{"*"},
			Tasks:     &Tasks{PerMinute: ptr[int64](60)},
			Budget:    &Budget{TokensPerMonth: ptr[int64](10_000_000), USDPerMonth: ptr(100.0)},
		}
	case config.ProfilePro:
		return Spec{
			Isolation: manifest.IsolationContainer,
			Network:   &Network{Modes: []string{manifest.NetworkNone, manifest.NetworkGateway}, Egress: []string{}},
			GPU:       &GPU{Allowed: ptr(true)},
			Max:       &Max{CPU: "8", Memory: "32Gi", PIDs: ptr[int64](4096), GPUs: ptr[int64](2)},
			Images:    &Images{RequireSigned: ptr(false)},
			Models:    &Models{Allowed: []string{"*"}, AllowCloud: ptr(true)},
			Secrets:   []string{"*"},
			Tasks:     &Tasks{PerMinute: ptr[int64](120)},
			Budget:    &Budget{USDPerMonth: ptr(200.0)},
		}
	}
	return Spec{
		Isolation: manifest.IsolationContainer,
		Network:   &Network{Modes: []string{manifest.NetworkNone, manifest.NetworkGateway}, Egress: []string{}},
		GPU:       &GPU{Allowed: ptr(true)},
		Max:       &Max{PIDs: ptr[int64](8192)},
		Images:    &Images{RequireSigned: ptr(false)},
		Models:    &Models{Allowed: []string{"*"}, AllowCloud: ptr(true)},
		Secrets:   []string{"*"},
		Tasks:     &Tasks{PerMinute: ptr[int64](600)},
		Budget:    &Budget{},
	}
}

func ptr[T any](v T) *T { return &v }
