package netpolicy

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/miekg/dns"
)

func msgWith(edit func(*dns.Msg)) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion("api.example.com.", dns.TypeA)
	if edit != nil {
		edit(m)
	}
	return m
}

func TestCheckQuery(t *testing.T) {
	rr := func(s string) dns.RR { r, _ := dns.NewRR(s); return r }
	for name, tc := range map[string]struct {
		msg   *dns.Msg
		rcode int
		qname string
	}{
		"plain":          {msgWith(nil), dns.RcodeSuccess, "api.example.com"},
		"mixed case":     {msgWith(func(m *dns.Msg) { m.Question[0].Name = "Api.EXAMPLE.com." }), dns.RcodeSuccess, "api.example.com"},
		"escaped label":  {msgWith(func(m *dns.Msg) { m.Question[0].Name = "a\\000b.example.com." }), dns.RcodeSuccess, ""},
		"root":           {msgWith(func(m *dns.Msg) { m.Question[0].Name = "." }), dns.RcodeSuccess, ""},
		"response":       {msgWith(func(m *dns.Msg) { m.Response = true }), dns.RcodeFormatError, ""},
		"notify":         {msgWith(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), dns.RcodeNotImplemented, ""},
		"two questions":  {msgWith(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), dns.RcodeFormatError, ""},
		"no question":    {msgWith(func(m *dns.Msg) { m.Question = nil }), dns.RcodeFormatError, ""},
		"answer section": {msgWith(func(m *dns.Msg) { m.Answer = []dns.RR{rr("a. 1 IN A 192.0.2.1")} }), dns.RcodeFormatError, ""},
		"extra not OPT":  {msgWith(func(m *dns.Msg) { m.Extra = []dns.RR{rr("a. 1 IN A 192.0.2.1")} }), dns.RcodeFormatError, ""},
		"chaos":          {msgWith(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), dns.RcodeRefused, ""},
		"axfr":           {msgWith(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR }), dns.RcodeRefused, ""},
		"edns":           {msgWith(func(m *dns.Msg) { m.SetEdns0(4096, true) }), dns.RcodeSuccess, "api.example.com"},
	} {
		q, rcode, ok := checkQuery(tc.msg)
		if rcode != tc.rcode || ok != (tc.rcode == dns.RcodeSuccess) || q.name != tc.qname {
			t.Errorf("%s: %+v rcode %d ok %v; want rcode %d name %q", name, q, rcode, ok, tc.rcode, tc.qname)
		}
	}
}

func TestAcceptQuery(t *testing.T) {
	for name, tc := range map[string]struct {
		h    dns.Header
		want dns.MsgAcceptAction
	}{
		"query":    {dns.Header{Qdcount: 1}, dns.MsgAccept},
		"with OPT": {dns.Header{Qdcount: 1, Arcount: 1}, dns.MsgAccept},
		"response": {dns.Header{Bits: 1 << 15, Qdcount: 1}, dns.MsgIgnore},
		"update":   {dns.Header{Bits: dns.OpcodeUpdate << 11, Qdcount: 1}, dns.MsgRejectNotImplemented},
		"two":      {dns.Header{Qdcount: 2}, dns.MsgReject},
		"answers":  {dns.Header{Qdcount: 1, Ancount: 1}, dns.MsgReject},
		"extra":    {dns.Header{Qdcount: 1, Arcount: 2}, dns.MsgReject},
	} {
		if got := acceptQuery(tc.h); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

func rrs(t *testing.T, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		r, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestChainAnswer(t *testing.T) {
	in := rrs(t,
		"evil.example. 60 IN A 198.51.100.66", // not on the chain
		"api.example.com. 60 IN CNAME edge.cdn.example.",
		"edge.cdn.example. 30 IN CNAME Edge2.CDN.example.",
		"edge2.cdn.example. 20 IN A 198.51.100.1",
		"edge2.cdn.example. 20 IN AAAA 2001:db8::1",
		"edge2.cdn.example. 20 IN TXT \"x\"",
		"api.example.com. 60 IN A 198.51.100.2",
	)
	got := chainAnswer("api.example.com", in)
	var s []string
	for _, r := range got {
		s = append(s, r.Header().Name+" "+dns.TypeToString[r.Header().Rrtype])
	}
	want := []string{"api.example.com. CNAME", "edge.cdn.example. CNAME", "edge2.cdn.example. A", "api.example.com. A"}
	if !slices.Equal(s, want) {
		t.Fatalf("chain %v, want %v", s, want)
	}
	if minTTL(got) != 20 {
		t.Errorf("minTTL %d", minTTL(got))
	}
	// A loop ends; a chain longer than maxCNAMEs is cut.
	loop := rrs(t, "a.test. 1 IN CNAME b.test.", "b.test. 1 IN CNAME a.test.", "a.test. 1 IN A 198.51.100.1")
	if got := chainAnswer("a.test", loop); len(got) != 2 {
		t.Errorf("loop: %v", got)
	}
	var long []dns.RR
	for i := range 20 {
		long = append(long, rrs(t, "n"+string(rune('a'+i))+".test. 1 IN CNAME n"+string(rune('a'+i+1))+".test.")...)
	}
	if got := chainAnswer("na.test", long); len(got) != maxCNAMEs {
		t.Errorf("long chain: %d records", len(got))
	}
}

func TestAddrPolicy(t *testing.T) {
	listed, _ := compileEgress(Egress{CIDRs: []string{"192.168.7.0/24"}})
	p := addrPolicy{subnet: DefaultSubnet, rules: listed}
	for a, want := range map[string]bool{
		"198.51.100.1":    true,
		"8.8.8.8":         true,
		"10.88.0.3":       false, // another agent
		"10.1.2.3":        false,
		"192.168.1.1":     false,
		"192.168.7.9":     true, // listed
		"172.16.0.1":      false,
		"100.64.0.1":      false,
		"127.0.0.1":       false,
		"169.254.169.254": false, // cloud metadata
		"0.1.2.3":         false,
		"224.0.0.1":       false,
		"255.255.255.255": false,
		"0.0.0.0":         false,
	} {
		if got := p.allows(netip.MustParseAddr(a)); got != want {
			t.Errorf("allows(%s) = %v", a, got)
		}
	}
	p.allowPrivate = true
	if !p.allows(netip.MustParseAddr("10.1.2.3")) || p.allows(netip.MustParseAddr("10.88.0.3")) {
		t.Error("allowPrivate: private space should pass, the agents' subnet never")
	}
}

func TestAgentAnswer(t *testing.T) {
	in := rrs(t, "a.test. 60 IN CNAME b.test.", "b.test. 60 IN A 10.88.0.9", "b.test. 60 IN A 198.51.100.4")
	out, addrs := agentAnswer(in, addrPolicy{subnet: DefaultSubnet}, 42)
	if len(out) != 2 || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("198.51.100.4")}) {
		t.Fatalf("%v %v", out, addrs)
	}
	for _, r := range out {
		if r.Header().Ttl != 42 {
			t.Errorf("TTL %d", r.Header().Ttl)
		}
	}
	if in[2].Header().Ttl != 60 {
		t.Error("agentAnswer changed the cached records")
	}
	if out, addrs := agentAnswer(in[:2], addrPolicy{subnet: DefaultSubnet}, 42); out != nil || addrs != nil {
		t.Errorf("nothing allowed: %v %v", out, addrs)
	}
}

func TestFit(t *testing.T) {
	big := new(dns.Msg)
	big.SetQuestion("a.test.", dns.TypeA)
	for i := range maxAnswerAddrs {
		big.Answer = append(big.Answer, rrs(t, "a-very-long-label-to-make-the-answer-big.a.test. 60 IN A 198.51.100."+strconv.Itoa(i+1))...)
	}
	for name, tc := range map[string]struct {
		req  *dns.Msg
		tcp  bool
		max  int
		edns bool
	}{
		"udp":       {msgWith(nil), false, dns.MinMsgSize, false},
		"udp edns":  {msgWith(func(m *dns.Msg) { m.SetEdns0(4096, false) }), false, maxUDPAnswer, true},
		"tiny edns": {msgWith(func(m *dns.Msg) { m.SetEdns0(100, false) }), false, dns.MinMsgSize, true},
		"tcp":       {msgWith(nil), true, dns.MaxMsgSize, false},
	} {
		resp := fit(big.Copy(), tc.req, tc.tcp)
		b, err := resp.Pack()
		if err != nil || len(b) > tc.max || (resp.IsEdns0() != nil) != tc.edns {
			t.Errorf("%s: %d bytes (max %d), truncated %v, edns %v, %v", name, len(b), tc.max, resp.Truncated, resp.IsEdns0() != nil, err)
		}
	}
}
