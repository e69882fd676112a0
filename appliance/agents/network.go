package agents

import (
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// WithNetwork says whether agents in network mode gateway can run here:
// ready is nil without the agents' network (not enabled in the site
// configuration), else it returns why the network is down (nil when up).
// Without it, or while it is down, a gateway-mode deploy or patch is
// refused (ErrInvalid, code unavailable, with the reason) before anything
// is recorded; other agents are unaffected.
func WithNetwork(ready func() error) Option { return func(s *Service) { s.network = ready } }

// networkProblems refuses network mode gateway where it cannot run.
func (s *Service) networkProblems(m *manifest.Manifest) manifest.Problems {
	if m.Spec.Network.Mode != manifest.NetworkGateway {
		return nil
	}
	reason := ""
	switch {
	case s.network == nil:
		reason = "network mode gateway needs the agents' network, which is not enabled on this appliance (gateway.enabled in omerta.yaml)"
	case m.Spec.Isolation == manifest.IsolationSandbox:
		reason = "network mode gateway is not available with isolation sandbox: gVisor cannot join the agents' network yet"
	default:
		if err := s.network(); err != nil {
			reason = "network mode gateway is unavailable: the agents' network is down: " + oneLine(err.Error(), 300)
		}
	}
	if reason == "" {
		return nil
	}
	return manifest.Problems{{Path: "spec.network.mode", Code: manifest.CodeUnavailable, Reason: reason}}
}

// AgentOfContainer names the agent a container of this Service belongs
// to (its id is the agent's and the generation's: containerID), for the
// agents' network, which knows containers: the model gateway charges the
// agent.
func AgentOfContainer(ctr string) (agent string, gen int64, ok bool) {
	i := strings.LastIndex(ctr, "-g")
	if i <= 0 {
		return "", 0, false
	}
	gen, err := strconv.ParseInt(ctr[i+2:], 10, 64)
	if err != nil || gen < 1 || containerID(ctr[:i], gen) != ctr {
		return "", 0, false
	}
	return ctr[:i], gen, true
}

// ContainerOf is the container of an agent's generation.
func ContainerOf(agent string, gen int64) string { return containerID(agent, gen) }
