package netpolicy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Defaults. The subnet is a private /24 that Docker, libvirt and the usual
// home routers do not use; the gateway port is where appliance/gateway
// serves the OpenAI-compatible endpoint on the bridge address.
const (
	DefaultBridge      = "omerta0"
	DefaultGatewayPort = 8080
	DefaultDNSPort     = 53
)

// DefaultSubnet is the agents' subnet unless the site configuration says
// otherwise.
var DefaultSubnet = netip.MustParsePrefix("10.88.0.0/24")

// vethPrefix starts the host-side name of every agent's link (omv + 11 hex
// digits of the agent id's SHA-256: 14 characters, under IFNAMSIZ). Links
// with this prefix that no agent owns are removed by Reconcile.
const vethPrefix = "omv"

// agentIfName is the agent's end of its link, inside its namespace.
const agentIfName = "eth0"

// Config is the agents' network.
type Config struct {
	Bridge       string       // the bridge's name
	Subnet       netip.Prefix // IPv4, /16 to /29; the first address is the gateway's
	MTU          int          // of the bridge and the agents' links
	GatewayPorts []uint16     // TCP ports on the gateway address agents may reach
	DNSPort      uint16       // the resolver's port (UDP and TCP) on the gateway address

	// Upstreams are the resolvers allowed names are resolved through,
	// "address:port", tried in order.
	Upstreams       []string
	UpstreamTimeout time.Duration

	// A resolved address stays in the agent's set for the answer's TTL,
	// bounded to MinTTL..MaxTTL (the TTL the agent is told), plus Grace so
	// that a connection opened just before the agent's cache expires is
	// not cut.
	MinTTL, MaxTTL, Grace time.Duration

	// AllowPrivateAnswers lets an allowed name resolve to private, shared
	// (100.64.0.0/10) or link-local addresses. Off, such records are
	// removed from answers, so that a public name cannot be pointed at the
	// LAN (DNS rebinding); a network the policy lists is reachable anyway.
	AllowPrivateAnswers bool

	Limits Limits
}

// Limits bound what agents can make the resolver and the kernel hold.
type Limits struct {
	Agents           int     // agents on the network (0: as many as the subnet holds)
	ResolvedPerAgent int     // addresses in one agent's set
	Queries          int     // queries in flight, all agents together
	QueriesPerAgent  int     // queries in flight from one agent
	QueryRate        float64 // queries a second from one agent, sustained
	QueryBurst       int     // and in a burst
	TCPConns         int     // open TCP connections to the resolver
	CacheEntries     int     // upstream answers kept
}

// DefaultConfig is the network an appliance gets unless configured.
func DefaultConfig() Config {
	return Config{
		Bridge:          DefaultBridge,
		Subnet:          DefaultSubnet,
		MTU:             1500,
		GatewayPorts:    []uint16{DefaultGatewayPort},
		DNSPort:         DefaultDNSPort,
		UpstreamTimeout: 2 * time.Second,
		MinTTL:          5 * time.Second,
		MaxTTL:          10 * time.Minute,
		Grace:           30 * time.Second,
		Limits: Limits{
			ResolvedPerAgent: 1024,
			Queries:          256,
			QueriesPerAgent:  16,
			QueryRate:        100,
			QueryBurst:       200,
			TCPConns:         64,
			CacheEntries:     4096,
		},
	}
}

// Gateway is the bridge's address: the agents' default route, resolver and
// model gateway.
func (c *Config) Gateway() netip.Addr { return c.Subnet.Addr().Next() }

// hostCount is how many agent addresses the subnet holds (network,
// gateway and broadcast addresses left out).
func (c *Config) hostCount() int { return 1<<(32-c.Subnet.Bits()) - 3 }

// Validate checks every field and names each refused one.
func (c *Config) Validate() error {
	var ps problems
	c.checkNetwork(&ps)
	c.checkResolver(&ps)
	c.checkLimits(&ps)
	return ps.err()
}

func (c *Config) checkNetwork(ps *problems) {
	if reason := checkIfName(c.Bridge); reason != "" {
		ps.add("config.bridge", "%s %s", quote(c.Bridge), reason)
	} else if strings.HasPrefix(c.Bridge, vethPrefix) {
		ps.add("config.bridge", "%s begins with %q, which names the agents' links", quote(c.Bridge), vethPrefix)
	}
	switch {
	case !c.Subnet.IsValid() || !c.Subnet.Addr().Is4():
		ps.add("config.subnet", "%s is not an IPv4 network (the agents' network is IPv4 only)", c.Subnet)
	case c.Subnet.Masked() != c.Subnet:
		ps.add("config.subnet", "%s has bits set past its prefix length (did you mean %s?)", c.Subnet, c.Subnet.Masked())
	case c.Subnet.Bits() < 16 || c.Subnet.Bits() > 29:
		ps.add("config.subnet", "%s is a /%d; it must be a /16 to a /29", c.Subnet, c.Subnet.Bits())
	}
	if c.MTU < 1280 || c.MTU > 9000 {
		ps.add("config.mtu", "%d is outside 1280 to 9000", c.MTU)
	}
	if len(c.GatewayPorts) > 16 {
		ps.add("config.gateway_ports", "holds %d ports, at most 16 are allowed", len(c.GatewayPorts))
	}
	for i, p := range c.GatewayPorts {
		if p == 0 {
			ps.add(field("config.gateway_ports", i), "0 is not a port")
		}
	}
	if c.DNSPort == 0 {
		ps.add("config.dns_port", "0 is not a port")
	}
}

func (c *Config) checkResolver(ps *problems) {
	if len(c.Upstreams) == 0 || len(c.Upstreams) > 4 {
		ps.add("config.upstreams", "holds %d resolvers; give 1 to 4 (address:port)", len(c.Upstreams))
	}
	for i, u := range c.Upstreams {
		if _, err := netip.ParseAddrPort(u); err != nil {
			ps.add(field("config.upstreams", i), "%s is not address:port", quote(u))
		}
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 || d > 24*time.Hour {
			ps.add(name, "%s is outside 1ms to 24h", d)
		}
	}
	positive("config.upstream_timeout", c.UpstreamTimeout)
	positive("config.min_ttl", c.MinTTL)
	positive("config.max_ttl", c.MaxTTL)
	if c.Grace < 0 || c.Grace > time.Hour {
		ps.add("config.grace", "%s is outside 0 to 1h", c.Grace)
	}
	if c.MaxTTL < c.MinTTL {
		ps.add("config.max_ttl", "%s is below min_ttl %s", c.MaxTTL, c.MinTTL)
	}
}

func (c *Config) checkLimits(ps *problems) {
	l := &c.Limits
	bound := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			ps.add("config.limits."+name, "%d is outside %d to %d", v, lo, hi)
		}
	}
	bound("agents", l.Agents, 0, 1<<16)
	bound("resolved_per_agent", l.ResolvedPerAgent, 1, 65536)
	bound("queries", l.Queries, 1, 65536)
	bound("queries_per_agent", l.QueriesPerAgent, 1, 65536)
	bound("query_burst", l.QueryBurst, 1, 1<<20)
	bound("tcp_conns", l.TCPConns, 1, 65536)
	bound("cache_entries", l.CacheEntries, 0, 1<<20)
	if !(l.QueryRate > 0 && l.QueryRate <= 1e6) {
		ps.add("config.limits.query_rate", "%v is outside 0 (exclusive) to 1000000", l.QueryRate)
	}
}

// maxAgents is Limits.Agents, or the subnet's size.
func (c *Config) maxAgents() int {
	if c.Limits.Agents > 0 && c.Limits.Agents < c.hostCount() {
		return c.Limits.Agents
	}
	return c.hostCount()
}

// checkIfName checks a Linux interface name.
func checkIfName(s string) string {
	if s == "" || len(s) > 15 {
		return "is not 1 to 15 characters long"
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "holds a character other than a letter, digit, '-', '_' or '.'"
		}
	}
	if s == "." || s == ".." {
		return "is not an interface name"
	}
	return ""
}

// ttl bounds an answer's TTL (seconds) to MinTTL..MaxTTL.
func (c *Config) ttl(seconds uint32) time.Duration {
	d := time.Duration(seconds) * time.Second
	return min(max(d, c.MinTTL), c.MaxTTL)
}

func (c *Config) String() string {
	return fmt.Sprintf("bridge %s, subnet %s, gateway %s", c.Bridge, c.Subnet, c.Gateway())
}

// ResolvConf is the /etc/resolv.conf an agent's container gets: the
// resolver on the gateway address, and nothing to search.
func (c *Config) ResolvConf() []byte {
	return []byte(fmt.Sprintf("# written by omertad: the agents' resolver\nnameserver %s\noptions edns0\n", c.Gateway()))
}
