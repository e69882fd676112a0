package netpolicy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Upstreams = []string{"192.0.2.53:53"}
	return c
}

func TestConfigValidate(t *testing.T) {
	c := validConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Gateway() != netip.MustParseAddr("10.88.0.1") || c.hostCount() != 253 {
		t.Fatalf("gateway %s, %d hosts", c.Gateway(), c.hostCount())
	}
	for _, tc := range []struct {
		edit  func(*Config)
		field string
	}{
		{func(c *Config) { c.Bridge = "" }, "config.bridge"},
		{func(c *Config) { c.Bridge = "omv0" }, "config.bridge"},
		{func(c *Config) { c.Bridge = "a/b" }, "config.bridge"},
		{func(c *Config) { c.Bridge = "sixteen-chars-xx" }, "config.bridge"},
		{func(c *Config) { c.Subnet = netip.MustParsePrefix("10.88.0.1/24") }, "config.subnet"},
		{func(c *Config) { c.Subnet = netip.MustParsePrefix("10.0.0.0/8") }, "config.subnet"},
		{func(c *Config) { c.Subnet = netip.MustParsePrefix("10.0.0.0/30") }, "config.subnet"},
		{func(c *Config) { c.Subnet = netip.MustParsePrefix("fd00::/64") }, "config.subnet"},
		{func(c *Config) { c.Subnet = netip.Prefix{} }, "config.subnet"},
		{func(c *Config) { c.MTU = 100 }, "config.mtu"},
		{func(c *Config) { c.GatewayPorts = []uint16{8080, 0} }, "config.gateway_ports[1]"},
		{func(c *Config) { c.DNSPort = 0 }, "config.dns_port"},
		{func(c *Config) { c.Upstreams = nil }, "config.upstreams"},
		{func(c *Config) { c.Upstreams = []string{"dns.example:53"} }, "config.upstreams[0]"},
		{func(c *Config) { c.MaxTTL = time.Second }, "config.max_ttl"},
		{func(c *Config) { c.MinTTL = 0 }, "config.min_ttl"},
		{func(c *Config) { c.Grace = -1 }, "config.grace"},
		{func(c *Config) { c.Limits.Queries = 0 }, "config.limits.queries"},
		{func(c *Config) { c.Limits.QueryRate = 0 }, "config.limits.query_rate"},
		{func(c *Config) { c.Limits.ResolvedPerAgent = 1 << 20 }, "config.limits.resolved_per_agent"},
	} {
		c := validConfig()
		tc.edit(&c)
		err := c.Validate()
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Problems[0].Field != tc.field {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
}

func TestConfigTTL(t *testing.T) {
	c := validConfig()
	for in, want := range map[uint32]time.Duration{0: 5 * time.Second, 60: time.Minute, 86400: 10 * time.Minute} {
		if got := c.ttl(in); got != want {
			t.Errorf("ttl(%d) = %s, want %s", in, got, want)
		}
	}
	if s := c.String(); !strings.Contains(s, "10.88.0.1") {
		t.Errorf("String() = %q", s)
	}
}

func TestResolvConf(t *testing.T) {
	c := validConfig()
	c.Subnet = netip.MustParsePrefix("172.30.0.0/16")
	want := "# written by omertad: the agents' resolver\nnameserver 172.30.0.1\noptions edns0\n"
	if got := string(c.ResolvConf()); got != want {
		t.Fatalf("%q", got)
	}
}
