package netpolicy

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Bounds on what one answer holds.
const (
	maxCNAMEs      = 8  // links followed from the question's name
	maxAnswerAddrs = 32 // A records kept (and opened) per answer
	maxUpstreamRRs = 64 // answer records of an upstream reply looked at
	maxUDPAnswer   = 1232
)

// question is the one question of a query, checked.
type question struct {
	name  string // lower case, no final dot; "" when not a host name
	qtype uint16
}

// checkQuery checks a parsed query and returns its question, or the rcode
// to refuse it with (ok false). The server's accept function has already
// refused what the header alone shows; this is the rest, and it holds on
// its own for any message.
func checkQuery(req *dns.Msg) (question, int, bool) {
	switch {
	case req.Response:
		return question{}, dns.RcodeFormatError, false
	case req.Opcode != dns.OpcodeQuery:
		return question{}, dns.RcodeNotImplemented, false
	case len(req.Question) != 1, len(req.Answer) > 0, len(req.Ns) > 0, len(req.Extra) > 1:
		return question{}, dns.RcodeFormatError, false
	}
	if len(req.Extra) == 1 {
		if _, ok := req.Extra[0].(*dns.OPT); !ok {
			return question{}, dns.RcodeFormatError, false
		}
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		return question{}, dns.RcodeRefused, false
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeNone, dns.TypeReserved:
		return question{}, dns.RcodeRefused, false
	}
	name, _, reason := normalizeName(q.Name, false)
	if reason != "" {
		name = ""
	}
	return question{name: name, qtype: q.Qtype}, dns.RcodeSuccess, true
}

// chainAnswer picks from an upstream reply the records that answer name:
// the CNAME chain that starts at it (at most maxCNAMEs links) and the A
// records of the names on that chain, in the reply's order. Everything
// else (other owners, other types, the authority and additional sections)
// is dropped, so an upstream cannot slip in records for names the agent
// did not ask for.
func chainAnswer(name string, rrs []dns.RR) []dns.RR {
	if len(rrs) > maxUpstreamRRs {
		rrs = rrs[:maxUpstreamRRs]
	}
	onChain := map[string]bool{name: true}
	var out []dns.RR
	cur := name
	for range maxCNAMEs {
		next := ""
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && ownerIs(rr, cur) {
				if t, _, reason := normalizeName(c.Target, false); reason == "" && !onChain[t] {
					next = t
					out = append(out, rr)
					break
				}
			}
		}
		if next == "" {
			break
		}
		onChain[next], cur = true, next
	}
	n := 0
	for _, rr := range rrs {
		if _, ok := rr.(*dns.A); ok && n < maxAnswerAddrs {
			if owner, _, reason := normalizeName(rr.Header().Name, false); reason == "" && onChain[owner] {
				out = append(out, rr)
				n++
			}
		}
	}
	return out
}

func ownerIs(rr dns.RR, name string) bool {
	return strings.EqualFold(strings.TrimSuffix(rr.Header().Name, "."), name)
}

// addrPolicy decides which answered addresses an agent may be given.
type addrPolicy struct {
	subnet       netip.Prefix
	allowPrivate bool
	rules        *egressRules
}

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	reserved    = netip.MustParsePrefix("240.0.0.0/4")
)

// allows refuses addresses no answer should open: the agents' own subnet
// (another agent), loopback, link-local, multicast, reserved and, unless
// allowed, private and shared space (DNS rebinding onto the LAN). A
// network the policy lists is allowed anyway.
func (p addrPolicy) allows(a netip.Addr) bool {
	switch {
	case !a.Is4(), a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(),
		thisNetwork.Contains(a), reserved.Contains(a), p.subnet.Contains(a):
		return false
	case p.rules != nil && p.rules.allowsAddr(a):
		return true
	case !p.allowPrivate && (a.IsPrivate() || sharedSpace.Contains(a)):
		return false
	}
	return true
}

// agentAnswer is what the agent is told and what its set gets: the chain's
// records whose addresses p allows, every TTL set to ttl seconds.
func agentAnswer(rrs []dns.RR, p addrPolicy, ttl uint32) ([]dns.RR, []netip.Addr) {
	var out []dns.RR
	var addrs []netip.Addr
	for _, rr := range rrs {
		if a, ok := rr.(*dns.A); ok {
			addr, ok := netip.AddrFromSlice(a.A)
			if !ok || !p.allows(addr.Unmap()) {
				continue
			}
			addrs = append(addrs, addr.Unmap())
		}
		c := dns.Copy(rr)
		c.Header().Ttl = ttl
		out = append(out, c)
	}
	if len(addrs) == 0 {
		return nil, nil // a bare CNAME chain opens nothing and tells nothing
	}
	return out, addrs
}

// minTTL is the smallest TTL of rrs (0 for none).
func minTTL(rrs []dns.RR) uint32 {
	var m uint32
	for i, rr := range rrs {
		if t := rr.Header().Ttl; i == 0 || t < m {
			m = t
		}
	}
	return m
}

// acceptQuery is the server's first look, at the header alone: queries
// only, one question, nothing in the answer or authority sections, at most
// the OPT record in the additional section.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 1 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}
