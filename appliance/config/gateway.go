package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"time"
)

// Gateway configures the agents' network (appliance/netpolicy: a bridge,
// a veth and default-deny nftables rules per agent in network mode
// gateway, the agents' resolver) and the model gateway on it
// (appliance/gateway). It is off unless enabled: the bridge and the rules
// need CAP_NET_ADMIN and nf_tables, and an appliance that has neither
// still runs every other agent.
type Gateway struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Bridge is the agents' bridge (default omerta0).
	Bridge string `yaml:"bridge" json:"bridge"`
	// Subnet is the agents' IPv4 network, /16 to /29 (default
	// 10.88.0.0/24); its first address is the bridge's: the agents'
	// route, resolver and model gateway.
	Subnet string `yaml:"subnet" json:"subnet"`
	// Port is the model gateway's TCP port on the bridge's address.
	Port int `yaml:"port" json:"port"`
	// Upstreams are the resolvers allowed names are resolved through
	// ("address:port"); empty: the host's, from /etc/resolv.conf.
	Upstreams []string `yaml:"upstreams" json:"upstreams,omitempty"`
	// Backends are the OpenAI-compatible servers the gateway forwards to.
	// Each model name agents use is routed to the backends that list it,
	// in this order (the first that answers serves; the rest are
	// fallbacks).
	Backends []GatewayBackend `yaml:"backends" json:"backends,omitempty"`
}

// GatewayBackend is one model backend: a URL, or an agent of this
// appliance serving on its port of the agents' network (the local echo
// model: agent local-echo-model, port 8080).
type GatewayBackend struct {
	Name string `yaml:"name" json:"name"`
	// URL is the base URL, up to and including /v1. Exactly one of URL
	// and Agent is set.
	URL string `yaml:"url" json:"url,omitempty"`
	// Agent is the id of a gateway-mode agent serving the backend on
	// Port; the gateway reaches it wherever the network put it.
	Agent string `yaml:"agent" json:"agent,omitempty"`
	Port  int    `yaml:"port" json:"port,omitempty"`
	// Kind is local (default) or cloud: a cloud backend gets only the
	// requests of agents whose policy allows cloud models.
	Kind string `yaml:"kind" json:"kind,omitempty"`
	// Credential names the secret sent as the backend's bearer token.
	Credential string        `yaml:"credential" json:"credential,omitempty"`
	Timeout    time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Models are the model names agents call this backend by.
	Models []string `yaml:"models" json:"models"`
}

// Defaults of the gateway section.
const (
	DefaultGatewayBridge = "omerta0"
	DefaultGatewaySubnet = "10.88.0.0/24"
	DefaultGatewayPort   = 8080
	// GatewayDNSPort is the agents' resolver's port on the bridge's
	// address (UDP and TCP): what agents' resolv.conf can name.
	GatewayDNSPort = 53
)

// Bounds of the gateway section.
const (
	maxGatewayBackends  = 16
	maxBackendModels    = 32
	maxGatewayUpstreams = 4
	maxBackendTimeout   = 10 * time.Minute
)

// DefaultGateway is the gateway section when no file sets it: disabled.
func DefaultGateway() Gateway {
	return Gateway{Bridge: DefaultGatewayBridge, Subnet: DefaultGatewaySubnet, Port: DefaultGatewayPort}
}

var (
	bridgeRE       = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	backendNameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	agentIDRE      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	modelNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$`)
	credentialRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
	gatewayVethPfx = "omv" // netpolicy names the agents' links so
)

// SubnetPrefix is Subnet parsed (valid once the configuration is).
func (g *Gateway) SubnetPrefix() netip.Prefix {
	p, _ := netip.ParsePrefix(g.Subnet)
	return p
}

func (g *Gateway) validate() error {
	if !bridgeRE.MatchString(g.Bridge) || g.Bridge == "." || g.Bridge == ".." {
		return bad("gateway.bridge", g.Bridge, "must be an interface name: 1 to 15 letters, digits, '-', '_' or '.'")
	}
	if len(g.Bridge) >= 3 && g.Bridge[:3] == gatewayVethPfx {
		return bad("gateway.bridge", g.Bridge, "must not begin with \"omv\", which names the agents' links")
	}
	p, err := netip.ParsePrefix(g.Subnet)
	switch {
	case err != nil || !p.Addr().Is4():
		return bad("gateway.subnet", g.Subnet, "must be an IPv4 network such as 10.88.0.0/24")
	case p.Masked() != p:
		return bad("gateway.subnet", g.Subnet, fmt.Sprintf("has bits set past its prefix length (did you mean %s?)", p.Masked()))
	case p.Bits() < 16 || p.Bits() > 29:
		return bad("gateway.subnet", g.Subnet, "must be a /16 to a /29")
	}
	if g.Port < 1 || g.Port > 65535 || g.Port == GatewayDNSPort {
		return bad("gateway.port", fmt.Sprint(g.Port), "must be a TCP port from 1 to 65535 other than 53 (the agents' resolver)")
	}
	if err := tooMany("gateway.upstreams", len(g.Upstreams), maxGatewayUpstreams); err != nil {
		return err
	}
	for i, u := range g.Upstreams {
		if ap, err := netip.ParseAddrPort(u); err != nil || !ap.Addr().Is4() || ap.Port() == 0 || p.Contains(ap.Addr()) {
			return bad(fmt.Sprintf("gateway.upstreams[%d]", i), u, "must be an IPv4 address:port outside the agents' subnet")
		}
	}
	return g.validateBackends()
}

func (g *Gateway) validateBackends() error {
	if err := tooMany("gateway.backends", len(g.Backends), maxGatewayBackends); err != nil {
		return err
	}
	names := map[string]bool{}
	for i := range g.Backends {
		b := &g.Backends[i]
		field := fmt.Sprintf("gateway.backends[%d]", i)
		if !backendNameRE.MatchString(b.Name) {
			return bad(field+".name", b.Name, "must be 1 to 63 lower-case letters, digits, '.', '_' or '-'")
		}
		if names[b.Name] {
			return bad(field+".name", b.Name, "is listed twice")
		}
		names[b.Name] = true
		if err := b.validate(field); err != nil {
			return err
		}
	}
	return nil
}

func (b *GatewayBackend) validate(field string) error {
	if b.Kind == "" {
		b.Kind = "local"
	}
	if b.Kind != "local" && b.Kind != "cloud" {
		return bad(field+".kind", b.Kind, "must be local or cloud")
	}
	switch {
	case (b.URL == "") == (b.Agent == ""):
		return bad(field, "", "must give exactly one of url and agent")
	case b.Agent != "":
		if !agentIDRE.MatchString(b.Agent) {
			return bad(field+".agent", b.Agent, "must be an agent id: lower-case letters, digits and '-', at most 63")
		}
		if b.Port < 1 || b.Port > 65535 {
			return bad(field+".port", fmt.Sprint(b.Port), "must be the agent's TCP port, 1 to 65535")
		}
		if b.Kind != "local" {
			return bad(field+".kind", b.Kind, "an agent of this appliance is a local backend")
		}
	default:
		if err := checkBackendURL(field+".url", b.URL, b.Kind); err != nil {
			return err
		}
		if b.Port != 0 {
			return bad(field+".port", fmt.Sprint(b.Port), "is for an agent backend; put the port in the url")
		}
	}
	if b.Credential != "" && !credentialRE.MatchString(b.Credential) {
		return bad(field+".credential", b.Credential, "must be a secret name: letters, digits, '.', '_', '/' or '-', at most 128")
	}
	if b.Timeout < 0 || b.Timeout > maxBackendTimeout {
		return bad(field+".timeout", b.Timeout.String(), "must be from 0 (the default, 60s) to 10m")
	}
	if len(b.Models) == 0 {
		return bad(field+".models", "", "must list the model names the backend serves")
	}
	if err := tooMany(field+".models", len(b.Models), maxBackendModels); err != nil {
		return err
	}
	seen := map[string]bool{}
	for j, m := range b.Models {
		if !modelNameRE.MatchString(m) || seen[m] {
			return bad(fmt.Sprintf("%s.models[%d]", field, j), m, "must be a model name listed once: letters, digits, ._:/@+- , at most 128")
		}
		seen[m] = true
	}
	return nil
}

// checkBackendURL accepts https, and http for a local backend, with a
// host and no user info, query or fragment (the value is written into
// messages: only printable text).
func checkBackendURL(field, s, kind string) error {
	u, err := url.Parse(s)
	switch {
	case !printable(s) || len(s) > 2048:
		return bad(field, "", "must be a URL of at most 2048 printable bytes")
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return bad(field, s, "must be an absolute http or https URL")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return bad(field, u.Scheme+"://"+u.Host+u.Path, "must not carry user info, a query or a fragment")
	case u.Scheme == "http" && kind == "cloud":
		return bad(field, s, "a cloud backend needs https")
	}
	return nil
}

// normalised treats nil and empty lists alike and an empty kind as local.
func (g Gateway) normalised() Gateway {
	if len(g.Upstreams) == 0 {
		g.Upstreams = nil
	}
	bs := g.Backends
	g.Backends = nil
	for _, b := range bs {
		if b.Kind == "" {
			b.Kind = "local"
		}
		if len(b.Models) == 0 {
			b.Models = nil
		}
		g.Backends = append(g.Backends, b)
	}
	return g
}
