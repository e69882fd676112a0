package netpolicy

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstreamFunc is an Upstream made of a function.
type upstreamFunc func(ctx context.Context, q *dns.Msg) (*dns.Msg, error)

func (f upstreamFunc) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) { return f(ctx, q) }

// answering is an upstream that answers every A question with rrs (owner
// rewritten to the question) or, with none, NXDOMAIN.
func answering(rcode int, addrs ...string) upstreamFunc {
	return func(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
		r := new(dns.Msg)
		r.SetRcode(q, rcode)
		for _, a := range addrs {
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + a)
			r.Answer = append(r.Answer, rr)
		}
		return r, nil
	}
}

var agentIP = netip.MustParseAddr("10.88.0.2")

// resolverOnly is a Manager that was never started (no kernel) with one
// agent, a1 at 10.88.0.2, whose policy is eg.
func resolverOnly(t testing.TB, eg Egress, up Upstream, edit ...func(*Config)) (*Manager, *resolver) {
	t.Helper()
	cfg := validConfig()
	for _, f := range edit {
		f(&cfg)
	}
	m, err := New(openStore(t, filepath.Join(t.TempDir(), "state.db")), cfg, WithUpstream(up), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := compileEgress(eg)
	if err != nil {
		t.Fatal(err)
	}
	s := m.newAgentState(agentRow{ID: "a1", Addr: agentIP, Veth: vethName("a1"), Mark: 1}, rules)
	m.agents["a1"], m.byAddr[agentIP] = s, s
	return m, newResolver(m)
}

func ask(r *resolver, src netip.Addr, name string, qtype uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	return r.answer(src, q, false)
}

func TestResolverDecides(t *testing.T) {
	eg := Egress{Names: []string{"ok.test", "nx.test", "lan.test", "*.fail.test"}}
	up := upstreamFunc(func(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
		switch q.Question[0].Name {
		case "nx.test.":
			return answering(dns.RcodeNameError)(ctx, q)
		case "lan.test.":
			return answering(dns.RcodeSuccess, "192.168.1.1", "10.88.0.7")(ctx, q)
		case "x.fail.test.":
			return nil, errors.New("network unreachable")
		case "y.fail.test.":
			return answering(dns.RcodeRefused)(ctx, q)
		}
		return answering(dns.RcodeSuccess, "198.51.100.1")(ctx, q)
	})
	m, r := resolverOnly(t, eg, up)
	for _, tc := range []struct {
		src   netip.Addr
		name  string
		qtype uint16
		rcode int
	}{
		{netip.MustParseAddr("10.88.0.77"), "ok.test.", dns.TypeA, dns.RcodeRefused}, // no agent's address
		{agentIP, "denied.test.", dns.TypeA, dns.RcodeNameError},
		{agentIP, "denied.test.", dns.TypeTXT, dns.RcodeNameError},
		{agentIP, "ok.test.", dns.TypeAAAA, dns.RcodeSuccess},
		{agentIP, "ok.test.", dns.TypeMX, dns.RcodeSuccess},
		{agentIP, "nx.test.", dns.TypeA, dns.RcodeNameError},
		{agentIP, "lan.test.", dns.TypeA, dns.RcodeSuccess}, // nothing allowed in it: empty
		{agentIP, "x.fail.test.", dns.TypeA, dns.RcodeServerFailure},
		{agentIP, "y.fail.test.", dns.TypeA, dns.RcodeServerFailure},
		// Allowed, but this Manager has no kernel to open the address in:
		// the agent is never told an address it could not reach.
		{agentIP, "ok.test.", dns.TypeA, dns.RcodeServerFailure},
		{agentIP, "ok.test.", dns.TypeAXFR, dns.RcodeRefused},
	} {
		resp := ask(r, tc.src, tc.name, tc.qtype)
		if resp.Rcode != tc.rcode || len(resp.Answer) != 0 {
			t.Errorf("%s %s from %s: %s with %d answers, want %s", tc.name, dns.TypeToString[tc.qtype], tc.src,
				dns.RcodeToString[resp.Rcode], len(resp.Answer), dns.RcodeToString[tc.rcode])
		}
	}
	st := m.Stats()
	if st.Denied != 2 || st.Refused != 2 || st.Failed != 3 {
		t.Errorf("stats %+v", st)
	}
	d := m.Denials()
	if len(d) < 3 || d[0].Name != "denied.test." || d[0].Reason != "not allowed by the agent's egress policy" {
		t.Errorf("denials %+v", d)
	}
}

func TestResolverRateLimit(t *testing.T) {
	m, r := resolverOnly(t, Egress{}, answering(dns.RcodeSuccess), func(c *Config) {
		c.Limits.QueryRate, c.Limits.QueryBurst = 0.001, 3
	})
	var rcodes []int
	for range 5 {
		rcodes = append(rcodes, ask(r, agentIP, "x.test.", dns.TypeA).Rcode)
	}
	want := []int{dns.RcodeNameError, dns.RcodeNameError, dns.RcodeNameError, dns.RcodeRefused, dns.RcodeRefused}
	for i := range want {
		if rcodes[i] != want[i] {
			t.Fatalf("rcodes %v, want %v", rcodes, want)
		}
	}
	if d := m.Denials(); d[len(d)-1].Reason != "over the agent's query rate" {
		t.Errorf("denial %+v", d[len(d)-1])
	}
}

// TestResolverConcurrency: an agent cannot hold more than its share of
// queries in flight, nor all agents more than the resolver's.
func TestResolverConcurrency(t *testing.T) {
	for name, edit := range map[string]func(*Config){
		"per agent": func(c *Config) { c.Limits.QueriesPerAgent = 2 },
		"global":    func(c *Config) { c.Limits.Queries = 2 },
	} {
		t.Run(name, func(t *testing.T) {
			release, started := make(chan struct{}), make(chan struct{}, 8)
			up := upstreamFunc(func(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
				started <- struct{}{}
				<-release
				return answering(dns.RcodeNameError)(ctx, q)
			})
			_, r := resolverOnly(t, Egress{Names: []string{"*.test.example"}}, up, edit)
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() { defer wg.Done(); ask(r, agentIP, "a.test.example.", dns.TypeA) }()
			}
			for range 2 {
				<-started
			}
			if got := ask(r, agentIP, "b.test.example.", dns.TypeA).Rcode; got != dns.RcodeRefused {
				t.Errorf("third query in flight: %s, want REFUSED", dns.RcodeToString[got])
			}
			close(release)
			wg.Wait()
			if got := ask(r, agentIP, "b.test.example.", dns.TypeA).Rcode; got != dns.RcodeNameError {
				t.Errorf("after the others ended: %s", dns.RcodeToString[got])
			}
		})
	}
}

func TestResolverCache(t *testing.T) {
	var asked int
	up := upstreamFunc(func(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
		asked++
		return answering(dns.RcodeNameError)(ctx, q)
	})
	now := time.Unix(1e9, 0)
	m, r := resolverOnly(t, Egress{Names: []string{"nx.test"}}, up)
	m.now = func() time.Time { return now }
	ask(r, agentIP, "nx.test.", dns.TypeA)
	ask(r, agentIP, "NX.test.", dns.TypeA)
	if asked != 1 {
		t.Fatalf("upstream asked %d times, want 1 (cached)", asked)
	}
	now = now.Add(m.cfg.MinTTL)
	ask(r, agentIP, "nx.test.", dns.TypeA)
	if asked != 2 {
		t.Fatalf("upstream asked %d times after the TTL, want 2", asked)
	}
	c := newAnswerCache(2)
	for _, n := range []string{"a", "b", "c"} {
		c.put(n, cachedAnswer{until: now.Add(time.Minute)}, now)
	}
	if len(c.m) != 2 {
		t.Fatalf("cache holds %d, bound 2", len(c.m))
	}
	if _, ok := c.get("c", now); !ok {
		t.Fatal("the newest entry was evicted")
	}
}
