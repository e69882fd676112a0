package netpolicy

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func packed(f *testing.F, edit func(*dns.Msg)) []byte {
	f.Helper()
	m := new(dns.Msg)
	m.SetQuestion("api.example.com.", dns.TypeA)
	if edit != nil {
		edit(m)
	}
	b, err := m.Pack()
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzQuery feeds the resolver arbitrary messages from an agent: it must
// answer each (or drop it) with a well-formed reply that fits the
// transport, and never hand out an address it could not open (this
// Manager has no kernel).
func FuzzQuery(f *testing.F) {
	f.Add(packed(f, nil))
	f.Add(packed(f, func(m *dns.Msg) { m.SetEdns0(4096, true) }))
	f.Add(packed(f, func(m *dns.Msg) { m.Question[0].Name = "x.cdn.example.net." }))
	f.Add(packed(f, func(m *dns.Msg) { m.Question[0].Name = "A\\000b.example.com." }))
	f.Add(packed(f, func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }))
	f.Add(packed(f, func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }))
	f.Add(packed(f, func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }))
	f.Add(packed(f, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassANY }))
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}) // a pointer loop
	_, r := resolverOnly(f, Egress{Names: []string{"api.example.com", "*.cdn.example.net"}},
		answering(dns.RcodeSuccess, "198.51.100.1", "10.88.0.3"), func(c *Config) { c.Limits.QueryRate, c.Limits.QueryBurst = 1e6, 1<<20 })
	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return
		}
		for _, tcp := range []bool{false, true} {
			resp := r.answer(agentIP, req, tcp)
			b, err := resp.Pack()
			if err != nil {
				t.Fatalf("reply does not pack: %v", err)
			}
			if limit := dns.MinMsgSize; !tcp && req.IsEdns0() == nil && len(b) > limit {
				t.Fatalf("UDP reply of %d bytes to a query without EDNS", len(b))
			}
			if !tcp && len(b) > maxUDPAnswer {
				t.Fatalf("UDP reply of %d bytes", len(b))
			}
			if resp.Id != req.Id || !resp.Response {
				t.Fatal("reply id or QR bit wrong")
			}
			for _, rr := range resp.Answer {
				if _, ok := rr.(*dns.A); ok {
					t.Fatalf("an address was handed out without being opened: %v", rr)
				}
			}
		}
	})
}

// FuzzNamePolicy checks policy names and question names against a plain
// reference matcher.
func FuzzNamePolicy(f *testing.F) {
	for _, s := range [][2]string{
		{"api.example.com", "api.example.com."},
		{"*.example.com", "a.b.example.com"},
		{"*.example.com", "example.com"},
		{"EXAMPLE.com.", "Example.COM"},
		{"*.com", "x.com"},
		{"a..b", "a.b"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example."},
		{"_dmarc.example.com", "_DMARC.example.com"},
		{"a\\.b.example", "a\\.b.example"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, qname string) {
		r, err := compileEgress(Egress{Names: []string{pattern}})
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) || len(inv.Problems) != 1 || inv.Problems[0].Field != "egress.names[0]" {
				t.Fatalf("refusal %v does not name egress.names[0]", err)
			}
			return
		}
		n := r.norm.Names[0]
		again, err := compileEgress(Egress{Names: []string{n}})
		if err != nil || again.norm.Names[0] != n {
			t.Fatalf("normalised %q does not compile to itself: %v", n, err)
		}
		suffix, wild := strings.CutPrefix(n, "*.")
		if !wild && !r.allows(n) {
			t.Fatalf("%q does not allow itself", n)
		}
		if wild && r.allows(suffix) {
			t.Fatalf("%q allows its apex", n)
		}
		q, _, reason := normalizeName(qname, false)
		if reason != "" {
			return
		}
		if q != strings.ToLower(q) || strings.HasSuffix(q, ".") || len(q) > maxNameLen || checkHostName(q) != "" {
			t.Fatalf("normalised question %q", q)
		}
		want := q == n || (wild && strings.HasSuffix(q, "."+suffix))
		if got := r.allows(q); got != want {
			t.Fatalf("policy %q, question %q: allows %v, want %v", n, q, got, want)
		}
	})
}

// FuzzUpstreamAnswer: whatever an upstream sends, an agent is given only
// records on the question's chain, and only addresses it may have.
func FuzzUpstreamAnswer(f *testing.F) {
	for _, ans := range [][]string{
		{"api.example.com. 60 IN A 198.51.100.1"},
		{"api.example.com. 60 IN CNAME x.cdn.", "x.cdn. 5 IN A 10.88.0.5", "x.cdn. 5 IN A 192.0.2.8", "evil. 5 IN A 192.0.2.66"},
		{"api.example.com. 60 IN CNAME api.example.com."},
	} {
		m := new(dns.Msg)
		m.SetQuestion("api.example.com.", dns.TypeA)
		m.Response = true
		for _, s := range ans {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	p := addrPolicy{subnet: DefaultSubnet}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		chain := chainAnswer("api.example.com", m.Answer)
		if len(chain) > maxCNAMEs+maxAnswerAddrs {
			t.Fatalf("%d records", len(chain))
		}
		names := map[string]bool{"api.example.com": true}
		for _, rr := range chain {
			owner, _, reason := normalizeName(rr.Header().Name, false)
			if reason != "" || !names[owner] {
				t.Fatalf("record %v is not on the chain", rr)
			}
			switch rr := rr.(type) {
			case *dns.CNAME:
				target, _, _ := normalizeName(rr.Target, false)
				names[target] = true
			case *dns.A:
			default:
				t.Fatalf("record type %T kept", rr)
			}
		}
		_, addrs := agentAnswer(chain, p, 30)
		for _, a := range addrs {
			if !p.allows(a) || DefaultSubnet.Contains(a) || !a.Is4() {
				t.Fatalf("address %s handed out", a)
			}
		}
	})
}
