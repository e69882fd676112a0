package gateway

import (
	"context"
	"net/netip"
)

// AgentRef names the calling agent and its tenant.
type AgentRef struct {
	ID     string
	Tenant string
}

// Identifier tells which agent a source address belongs to: the address
// omertad gave the agent's end of its veth in the agents' bridge. Agents
// hold no keys; the kernel's rules (netpolicy) keep an agent from using
// another's address. It is called on every request and must be fast and
// safe for concurrent use.
type Identifier interface {
	Identify(addr netip.Addr) (AgentRef, bool)
}

// IdentifierFunc adapts a function to Identifier.
type IdentifierFunc func(netip.Addr) (AgentRef, bool)

// Identify calls f.
func (f IdentifierFunc) Identify(a netip.Addr) (AgentRef, bool) { return f(a) }

// Policy gives the rules that apply to an agent: its own policy over its
// category's, its tenant's and the profile's defaults, resolved by the
// policy domain. An error refuses the request (503 policy_unavailable):
// the gateway never forwards what it could not check. It is called on
// every request and must be fast and safe for concurrent use.
type Policy interface {
	Rules(ctx context.Context, agent AgentRef) (Rules, error)
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(context.Context, AgentRef) (Rules, error)

// Rules calls f.
func (f PolicyFunc) Rules(ctx context.Context, a AgentRef) (Rules, error) { return f(ctx, a) }

// AnyModel in Rules.Models allows every model the registry lists.
const AnyModel = "*"

// Rules is what the policy allows one agent.
type Rules struct {
	// Models the agent may call, by registry name; AnyModel allows all.
	// Empty allows none.
	Models []string
	// AllowCloud lets requests reach backends of kind cloud (the
	// AgentTemplate's privacy.allow_cloud). A cloud target is skipped
	// otherwise, fallbacks included.
	AllowCloud bool
	// Agent limits this agent; Tenant limits all agents of its tenant
	// together. Both apply.
	Agent  Limits
	Tenant Limits
}

// ModelAllowed reports whether the rules list model.
func (r Rules) ModelAllowed(model string) bool {
	for _, m := range r.Models {
		if m == model || m == AnyModel {
			return true
		}
	}
	return false
}

// Limits are rates and monthly budgets. A zero field is no limit: a
// policy that means "nothing" says so with Rules.Models or AllowCloud.
type Limits struct {
	RequestsPerMinute float64 // request rate
	RequestBurst      int     // requests at once; 0: RequestsPerMinute, at least 1
	TokensPerMinute   float64 // prompt + completion tokens per minute
	TokenBurst        int     // 0: TokensPerMinute, at least 1
	MonthlyTokens     int64   // prompt + completion tokens per calendar month (UTC)
	MonthlyCostUSD    float64 // spend per calendar month (UTC), at the registry's prices
}

// Secrets gives a credential by the name the registry's backend names
// (credential:). The value goes into the Authorization header of requests
// to that backend and nowhere else: never a log line, an error message, a
// metric or an answer to the agent. An error must not contain the value.
type Secrets interface {
	Secret(ctx context.Context, name string) ([]byte, error)
}

// SecretsFunc adapts a function to Secrets.
type SecretsFunc func(context.Context, string) ([]byte, error)

// Secret calls f.
func (f SecretsFunc) Secret(ctx context.Context, name string) ([]byte, error) { return f(ctx, name) }
