package netpolicy

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

// TestEgressDefaultDeny: an agent reaches the gateway, the resolver and
// the names its policy allows, and nothing else: not the host's other
// ports or addresses, not an address it never had resolved, not a name
// the policy does not list.
func TestEgressDefaultDeny(t *testing.T) {
	e := newTestEnv(t)
	a := e.attach("a1", Egress{Names: []string{"allowed.test", "*.wild.test", "alias.test", "short.test", "long.test"}})
	gw := e.cfg.Gateway()
	res := e.m.ResolverAddr()

	t.Run("gateway", func(t *testing.T) {
		if got := reach(t, a.ns, netip.AddrPortFrom(gw, e.cfg.GatewayPorts[0])); got != "gateway" {
			t.Fatalf("greeting %q", got)
		}
	})
	t.Run("host", func(t *testing.T) {
		blocked(t, a.ns, netip.AddrPortFrom(gw, 9999), netip.Addr{})
		blocked(t, a.ns, netip.AddrPortFrom(wanHost, e.cfg.GatewayPorts[0]), netip.Addr{})
	})
	t.Run("never resolved", func(t *testing.T) {
		blocked(t, a.ns, netip.AddrPortFrom(wanAllowed, 80), netip.Addr{})
	})
	t.Run("allowed name", func(t *testing.T) {
		r := query(t, a.ns, res, "allowed.test", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || !slices.Equal(answerAddrs(r), []string{"198.51.100.10"}) {
			t.Fatalf("answer %v", r)
		}
		if got := reach(t, a.ns, netip.AddrPortFrom(wanAllowed, 80)); got != "wan 198.51.100.10" {
			t.Fatalf("greeting %q", got)
		}
	})
	t.Run("denied name", func(t *testing.T) {
		before := e.upstream.queries.Load()
		r := query(t, a.ns, res, "other.test", dns.TypeA)
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
			t.Fatalf("answer %v, want NXDOMAIN", r)
		}
		if n := e.upstream.queries.Load(); n != before {
			t.Errorf("the upstream was asked for a denied name")
		}
		blocked(t, a.ns, netip.AddrPortFrom(wanOther, 80), netip.Addr{})
		d := e.m.Denials()
		if len(d) == 0 || d[len(d)-1].Name != "other.test." || d[len(d)-1].Agent != "a1" {
			t.Errorf("denials %v", d)
		}
	})
	t.Run("wildcard", func(t *testing.T) {
		for _, n := range []string{"www.wild.test", "deep.a.wild.test", "WWW.Wild.Test."} {
			if r := query(t, a.ns, res, n, dns.TypeA); !slices.Equal(answerAddrs(r), []string{"198.51.100.30"}) {
				t.Errorf("%s: %v", n, r)
			}
		}
		if r := query(t, a.ns, res, "wild.test", dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Errorf("wild.test (the wildcard's own apex): %v, want NXDOMAIN", r)
		}
		if got := reach(t, a.ns, netip.AddrPortFrom(wanWild, 80)); got != "wan 198.51.100.30" {
			t.Fatalf("greeting %q", got)
		}
	})
	t.Run("cname", func(t *testing.T) {
		r := query(t, a.ns, res, "alias.test", dns.TypeA)
		if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || !slices.Equal(answerAddrs(r), []string{"198.51.100.10"}) {
			t.Fatalf("answer %v", r)
		}
	})
	t.Run("aaaa", func(t *testing.T) {
		if r := query(t, a.ns, res, "allowed.test", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Fatalf("answer %v, want an empty NOERROR", r)
		}
		if r := query(t, a.ns, res, "other.test", dns.TypeAAAA); r.Rcode != dns.RcodeNameError {
			t.Fatalf("answer %v, want NXDOMAIN", r)
		}
	})
	t.Run("ttl bounds", func(t *testing.T) {
		for name, want := range map[string]time.Duration{"short.test": e.cfg.MinTTL, "long.test": e.cfg.MaxTTL, "allowed.test": time.Minute} {
			r := query(t, a.ns, res, name, dns.TypeA)
			if len(r.Answer) != 1 || time.Duration(r.Answer[0].Header().Ttl)*time.Second > want || time.Duration(r.Answer[0].Header().Ttl)*time.Second < want-2*time.Second {
				t.Errorf("%s: %v, want TTL %s", name, r.Answer, want)
			}
		}
		// The element outlives the answer by the grace period.
		left := e.resolvedIn("a1")["198.51.100.10"]
		if max := e.cfg.MaxTTL + e.cfg.Grace; left < e.cfg.MaxTTL || left > max {
			t.Errorf("element 198.51.100.10 has %s left, want up to %s (long.test's TTL, bounded, plus grace)", left, max)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		q := new(dns.Msg)
		q.SetQuestion("allowed.test.", dns.TypeA)
		var r *dns.Msg
		must(t, inNetns(a.ns, func() (err error) {
			r, _, err = (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(q, res.String())
			return err
		}))
		if !slices.Equal(answerAddrs(r), []string{"198.51.100.10"}) {
			t.Fatalf("answer over TCP %v", r)
		}
	})
	if s := e.m.Stats(); s.Denied == 0 || s.Answered == 0 || s.Opened == 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestRebindingRefused: an allowed name that resolves to the agents' own
// subnet or to private space opens nothing, unless the policy lists that
// network.
func TestRebindingRefused(t *testing.T) {
	e := newTestEnv(t)
	a := e.attach("a1", Egress{Names: []string{"rebind.test"}})
	r := query(t, a.ns, e.m.ResolverAddr(), "rebind.test", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("answer %v, want an empty NOERROR", r)
	}
	if got := e.resolvedIn("a1"); len(got) != 0 {
		t.Fatalf("set holds %v", got)
	}
	must(t, e.m.SetPolicy(context.Background(), "a1", Egress{Names: []string{"rebind.test"}, CIDRs: []string{"192.168.1.0/24"}}, "test"))
	r = query(t, a.ns, e.m.ResolverAddr(), "rebind.test", dns.TypeA)
	if !slices.Equal(answerAddrs(r), []string{"192.168.1.1"}) {
		t.Fatalf("answer %v, want only 192.168.1.1 (listed); 10.88.0.3 is another agent's", r)
	}
}

// TestAgentsAreSeparate: what one agent resolved is not open to another;
// agents cannot reach each other, nor send from an address not theirs.
func TestAgentsAreSeparate(t *testing.T) {
	e := newTestEnv(t)
	a1 := e.attach("a1", Egress{Names: []string{"allowed.test"}})
	a2 := e.attach("a2", Egress{})
	query(t, a1.ns, e.m.ResolverAddr(), "allowed.test", dns.TypeA)
	reach(t, a1.ns, netip.AddrPortFrom(wanAllowed, 80))

	blocked(t, a2.ns, netip.AddrPortFrom(wanAllowed, 80), netip.Addr{})
	if r := query(t, a2.ns, e.m.ResolverAddr(), "allowed.test", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("a2 got %v, want NXDOMAIN", r)
	}
	addr1, ok := agentAddr(e, "a1")
	if !ok {
		t.Fatal("a1 has no address")
	}
	serveEcho(t, a1.ns, netip.AddrPortFrom(addr1, 7000), "a1")
	blocked(t, a2.ns, netip.AddrPortFrom(addr1, 7000), netip.Addr{})

	// a2 takes a1's address, and one nobody has: the bridge drops both.
	h := handleAt(t, a2.ns)
	eth, err := h.LinkByName(agentIfName)
	must(t, err)
	for _, spoof := range []netip.Addr{addr1, netip.MustParseAddr("10.88.0.99")} {
		must(t, h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(spoof, 32))}))
		blocked(t, a2.ns, netip.AddrPortFrom(e.cfg.Gateway(), e.cfg.GatewayPorts[0]), spoof)
	}
	reach(t, a2.ns, netip.AddrPortFrom(e.cfg.Gateway(), e.cfg.GatewayPorts[0]))
}

func agentAddr(e *testEnv, id string) (netip.Addr, bool) {
	for a := e.cfg.Gateway().Next(); e.cfg.Subnet.Contains(a); a = a.Next() {
		if got, ok := e.m.AgentByAddr(a); ok && got == id {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// TestSetPolicyAppliesToRunningAgent: a policy change is in force at once
// for the running agent, open connections included.
func TestSetPolicyAppliesToRunningAgent(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	a := e.attach("a1", Egress{Names: []string{"allowed.test"}})
	res := e.m.ResolverAddr()
	query(t, a.ns, res, "allowed.test", dns.TypeA)
	c, r := open(t, a.ns, netip.AddrPortFrom(wanAllowed, 80))
	must(t, echo(c, r))

	// Adding a name takes nothing away: the open connection lives on.
	must(t, e.m.SetPolicy(ctx, "a1", Egress{Names: []string{"allowed.test", "other.test"}}, "test"))
	if err := echo(c, r); err != nil {
		t.Fatalf("open connection after adding a name: %v", err)
	}
	if got := query(t, a.ns, res, "other.test", dns.TypeA); !slices.Equal(answerAddrs(got), []string{"198.51.100.20"}) {
		t.Fatalf("other.test: %v", got)
	}

	// Removing allowed.test closes its address, new and open connections.
	must(t, e.m.SetPolicy(ctx, "a1", Egress{Names: []string{"other.test"}}, "test"))
	if err := echo(c, r); err == nil {
		t.Fatal("the open connection to a name no longer allowed still works")
	}
	blocked(t, a.ns, netip.AddrPortFrom(wanAllowed, 80), netip.Addr{})
	if got := query(t, a.ns, res, "allowed.test", dns.TypeA); got.Rcode != dns.RcodeNameError {
		t.Fatalf("allowed.test after removal: %v", got)
	}
	if _, ok := e.resolvedIn("a1")["198.51.100.10"]; ok {
		t.Fatal("198.51.100.10 is still in the agent's set")
	}
	if got := reach(t, a.ns, netip.AddrPortFrom(wanOther, 80)); got != "wan 198.51.100.20" {
		t.Fatalf("other.test's address, still allowed: %q", got)
	}

	// Networks, without any name.
	must(t, e.m.SetPolicy(ctx, "a1", Egress{CIDRs: []string{"198.51.100.8/29"}}, "test"))
	reach(t, a.ns, netip.AddrPortFrom(wanAllowed, 80))
	blocked(t, a.ns, netip.AddrPortFrom(wanOther, 80), netip.Addr{})

	must(t, e.m.SetPolicy(ctx, "a1", Egress{}, "test"))
	blocked(t, a.ns, netip.AddrPortFrom(wanAllowed, 80), netip.Addr{})
	reach(t, a.ns, netip.AddrPortFrom(e.cfg.Gateway(), e.cfg.GatewayPorts[0]))

	got, err := e.m.Policy(ctx, "a1")
	if err != nil || len(got.Names)+len(got.CIDRs) != 0 {
		t.Fatalf("Policy = %+v, %v", got, err)
	}
	if n := countOf(e.audited("a1"), "netpolicy.policy.set"); n != 5 {
		t.Errorf("%d netpolicy.policy.set audit records, want 5", n)
	}
	var inv *InvalidError
	if err := e.m.SetPolicy(ctx, "a1", Egress{Names: []string{"ok.test", "bad name"}, CIDRs: []string{"10.0.0.1/8"}}, "test"); !errors.As(err, &inv) || len(inv.Problems) != 2 {
		t.Fatalf("invalid policy: %v", err)
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// TestRestartKeepsAgentsConnected: a new Manager on the same state adopts
// the links, the rules and the resolved addresses; nothing is duplicated
// and open connections survive.
func TestRestartKeepsAgentsConnected(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	a := e.attach("a1", Egress{Names: []string{"allowed.test"}})
	query(t, a.ns, e.m.ResolverAddr(), "allowed.test", dns.TypeA)
	c, r := open(t, a.ns, netip.AddrPortFrom(wanAllowed, 80))
	before, link := e.objects(), e.hostLinks()[vethName("a1")]
	must(t, e.m.Close())

	if err := echo(c, r); err != nil {
		t.Fatalf("while omertad is down: %v", err)
	}
	e.m = e.newManager()
	must(t, e.m.Start(ctx))
	t.Cleanup(func() { e.m.Close() })
	must(t, e.m.Start(ctx)) // a second Start is a no-op
	at, err := e.m.Attach(ctx, "a1", a.path)
	if err != nil || at.Created || at.Address.String() != "10.88.0.2/24" {
		t.Fatalf("Attach after restart = %+v, %v; want the same link and address", at, err)
	}
	if got := e.hostLinks()[vethName("a1")]; got == nil || got.Attrs().Index != link.Attrs().Index {
		t.Fatalf("the agent's link was replaced")
	}
	if after := e.objects(); !slices.Equal(after, before) {
		t.Fatalf("objects after restart:\n%v\nbefore:\n%v", after, before)
	}
	if err := echo(c, r); err != nil {
		t.Fatalf("open connection after restart: %v", err)
	}
	n := e.upstream.queries.Load()
	reach(t, a.ns, netip.AddrPortFrom(wanAllowed, 80)) // still resolved: no new query
	if e.upstream.queries.Load() != n {
		t.Fatal("the agent had to resolve again")
	}
	if r := query(t, a.ns, e.m.ResolverAddr(), "other.test", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("the restarted resolver: %v", r)
	}
	if got := countOf(e.audited("a1"), "netpolicy.agent.attached"); got != 1 {
		t.Errorf("%d attach audit records, want 1", got)
	}
	// The restarted Manager still knows which name each kept address was
	// resolved for: a policy change closes exactly those no longer allowed.
	must(t, e.m.SetPolicy(ctx, "a1", Egress{Names: []string{"allowed.test", "other.test"}}, "test"))
	if _, ok := e.resolvedIn("a1")["198.51.100.10"]; !ok {
		t.Fatal("a policy that keeps allowed.test dropped its address")
	}
	must(t, e.m.SetPolicy(ctx, "a1", Egress{Names: []string{"other.test"}}, "test"))
	if _, ok := e.resolvedIn("a1")["198.51.100.10"]; ok {
		t.Fatal("a policy without allowed.test kept its address")
	}
	blocked(t, a.ns, netip.AddrPortFrom(wanAllowed, 80), netip.Addr{})
}

// TestReconcile: agents that no longer exist lose link, rules and address;
// links no agent owns are removed; out-of-band changes are undone.
func TestReconcile(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	e.attach("a1", Egress{Names: []string{"allowed.test"}})
	a2 := e.attach("a2", Egress{})
	addr2, _ := agentAddr(e, "a2")
	h := handleAt(t, e.host)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "omv0123456789a"
	must(t, h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "stray-peer"}))
	// Someone deletes one of our chains behind omertad's back.
	c := e.nft()
	c.FlushChain(&nftables.Chain{Name: agentChain("a1"), Table: &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}})
	must(t, c.Flush())

	rep, err := e.m.Reconcile(ctx, []string{"a1"})
	must(t, err)
	if !slices.Equal(rep.Released, []string{"a2"}) || !slices.Equal(rep.RemovedLinks, []string{"omv0123456789a"}) {
		t.Fatalf("report %+v", rep)
	}
	links := e.hostLinks()
	if links[vethName("a2")] != nil || links["omv0123456789a"] != nil || links["stray-peer"] != nil || links[vethName("a1")] == nil {
		t.Fatalf("links after reconcile: %v", slices.Sorted(maps.Keys(links)))
	}
	if _, ok := e.m.AgentByAddr(addr2); ok {
		t.Fatal("a2's address still names it")
	}
	for _, o := range e.objects() {
		if strings.Contains(o, "a2") {
			t.Fatalf("left over: %s", o)
		}
	}
	if !slices.Contains(e.objects(), "inet chain agent-a1 (3 rules)") {
		t.Fatalf("agent-a1 not rebuilt: %v", e.objects())
	}
	if _, err := e.m.Attach(ctx, "a2", a2.path); err != nil {
		t.Fatal(err)
	}
	a3 := startAgent(t)
	at, err := e.m.Attach(ctx, "a3", a3.path)
	must(t, err)
	if at.Address.Addr() != netip.MustParseAddr("10.88.0.4") {
		t.Fatalf("a3 got %s", at.Address)
	}
	must(t, e.m.Release(ctx, "a3", "test"))
	if err := e.m.Release(ctx, "a3", "test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Release: %v", err)
	}
	if got := e.audited("a2"); !slices.Contains(got, "netpolicy.agent.removed") {
		t.Fatalf("a2's audit %v", got)
	}
	if _, err := e.m.Policy(ctx, "a3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("released agent's policy: %v", err)
	}

	// The bridge deleted behind omertad's back: Reconcile makes it again,
	// Attach puts the agent's link back on it, the resolver answers.
	br, err := h.LinkByName(e.cfg.Bridge)
	must(t, err)
	must(t, h.LinkDel(br))
	if _, err := e.m.Reconcile(ctx, []string{"a1", "a2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Attach(ctx, "a2", a2.path); err != nil {
		t.Fatal(err)
	}
	reach(t, a2.ns, netip.AddrPortFrom(e.cfg.Gateway(), e.cfg.GatewayPorts[0]))
	if r := query(t, a2.ns, e.m.ResolverAddr(), "other.test", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("resolver after the bridge came back: %v", r)
	}
}

// TestAgentRestart: when the agent's process (its namespace) goes, so does
// its link; attaching its next namespace makes a new one.
func TestAgentRestart(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	a := e.attach("a1", Egress{})
	a.kill()
	waitGone(t, e, vethName("a1"))
	must(t, e.m.Detach(ctx, "a1")) // nothing left to remove
	b := startAgent(t)
	at, err := e.m.Attach(ctx, "a1", b.path)
	if err != nil || !at.Created || at.Address.String() != "10.88.0.2/24" {
		t.Fatalf("Attach = %+v, %v", at, err)
	}
	reach(t, b.ns, netip.AddrPortFrom(e.cfg.Gateway(), e.cfg.GatewayPorts[0]))
	// Moving to another namespace while the old one lives moves the link.
	c := startAgent(t)
	if at, err := e.m.Attach(ctx, "a1", c.path); err != nil || !at.Created {
		t.Fatalf("Attach to a new namespace = %+v, %v", at, err)
	}
	reach(t, c.ns, netip.AddrPortFrom(e.cfg.Gateway(), e.cfg.GatewayPorts[0]))
	if _, err := handleAt(t, b.ns).LinkByName(agentIfName); err == nil {
		t.Fatal("the old namespace still has the agent's link")
	}
	must(t, e.m.Detach(ctx, "a1"))
	if e.hostLinks()[vethName("a1")] != nil {
		t.Fatal("Detach left the link")
	}
}

func waitGone(t *testing.T, e *testEnv, link string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); e.hostLinks()[link] != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("link %s outlived its namespace", link)
		}
	}
}

// TestTeardownLeavesNothing: Close leaves the kernel state for the next
// start; Teardown removes all of it.
func TestTeardownLeavesNothing(t *testing.T) {
	e := newTestEnv(t)
	a := e.attach("a1", Egress{Names: []string{"allowed.test"}})
	must(t, e.m.Close())
	if e.hostLinks()[e.cfg.Bridge] == nil || len(e.objects()) == 0 {
		t.Fatal("Close removed the network; it must stay for the next start")
	}
	must(t, e.m.Teardown(context.Background()))
	for name := range e.hostLinks() {
		if name == e.cfg.Bridge || strings.HasPrefix(name, vethPrefix) {
			t.Errorf("link %s left after Teardown", name)
		}
	}
	if o := e.objects(); len(o) != 0 {
		t.Errorf("nftables objects left after Teardown: %v", o)
	}
	if _, err := handleAt(t, a.ns).LinkByName(agentIfName); err == nil {
		t.Error("the agent's link is left in its namespace")
	}
	if !slices.Contains(e.audited(e.cfg.Bridge), "netpolicy.network.removed") {
		t.Error("Teardown not audited")
	}
}

// TestAttachRefuses: what is not an agent's network namespace is refused
// before anything is changed.
func TestAttachRefuses(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(file, nil, 0o600))
	for name, path := range map[string]string{
		"own namespace":  "/proc/self/ns/net",
		"host namespace": "/proc/self/fd/" + strconv.Itoa(int(e.host)),
		"not nsfs":       file,
		"other type":     "/proc/self/ns/uts",
		"relative":       "proc/self/ns/net",
	} {
		if _, err := e.m.Attach(ctx, "a1", path); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	a := startAgent(t)
	if _, err := e.m.Attach(ctx, "A1!", a.path); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad id: %v", err)
	}
	if links := e.hostLinks(); len(links) != 3 { // lo, up0, the bridge
		t.Errorf("links %v", slices.Sorted(maps.Keys(links)))
	}
	if err := e.m.Detach(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Detach of an unknown agent: %v", err)
	}
	m2 := e.newManager()
	if _, err := m2.Attach(ctx, "a1", a.path); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Attach before Start: %v", err)
	}
}

// TestDNSRefusesStrangers: a source that is no agent's gets REFUSED.
func TestDNSRefusesStrangers(t *testing.T) {
	e := newTestEnv(t)
	q := new(dns.Msg)
	q.SetQuestion("allowed.test.", dns.TypeA)
	var r *dns.Msg
	// From the host namespace itself: not an agent's address.
	must(t, inNetns(e.host, func() (err error) {
		r, _, err = (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, e.m.ResolverAddr().String())
		return err
	}))
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("answer %v, want REFUSED", r)
	}
}

// TestLongContainerID: the container of an agent with the longest id the
// manifest allows gets its chain, sets and link in the kernel and
// reaches the gateway (a DNS label's 63 characters refused it).
func TestLongContainerID(t *testing.T) {
	e := newTestEnv(t)
	a := e.attach(strings.Repeat("a", 63)+"-g12345678901", Egress{})
	if got := reach(t, a.ns, netip.AddrPortFrom(e.cfg.Gateway(), e.cfg.GatewayPorts[0])); got != "gateway" {
		t.Fatalf("greeting %q", got)
	}
}
