package netpolicy

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
)

// Egress is what one agent may reach beyond the model gateway and the
// resolver: host names (exact, or "*.example.com" for every name below
// example.com but not example.com itself) that the resolver answers and
// whose addresses it opens for that agent alone, and IPv4 networks opened
// as they are. The zero value allows nothing.
//
// It is the input the policy domain hands over: appliance/policy keeps the
// versioned, audited policy and passes its egress destinations here.
type Egress struct {
	Names []string `json:"names,omitempty"`
	CIDRs []string `json:"cidrs,omitempty"`
}

// Bounds on one agent's egress policy.
const (
	MaxEgressNames = 256
	MaxEgressCIDRs = 256
	maxNameLen     = 253 // RFC 1035, without the final dot
	maxLabelLen    = 63
)

// egressRules is an Egress checked and compiled for matching.
type egressRules struct {
	norm     Egress              // sorted, unique, canonical spellings
	exact    map[string]struct{} // "api.example.com"
	wild     map[string]struct{} // "example.com" for "*.example.com"
	prefixes []netip.Prefix      // nested networks removed
}

// compileEgress checks every name and network of e, naming each refused
// one, and compiles the rest.
func compileEgress(e Egress) (*egressRules, error) {
	var ps problems
	r := &egressRules{exact: map[string]struct{}{}, wild: map[string]struct{}{}}
	if len(e.Names) > MaxEgressNames {
		ps.add("egress.names", "holds %d names, at most %d are allowed", len(e.Names), MaxEgressNames)
	} else {
		for i, n := range e.Names {
			name, wild, reason := normalizeName(n, true)
			if reason != "" {
				ps.add(field("egress.names", i), "%s %s", quote(n), reason)
				continue
			}
			if wild {
				r.wild[name] = struct{}{}
			} else {
				r.exact[name] = struct{}{}
			}
		}
	}
	if len(e.CIDRs) > MaxEgressCIDRs {
		ps.add("egress.cidrs", "holds %d networks, at most %d are allowed", len(e.CIDRs), MaxEgressCIDRs)
	} else {
		for i, c := range e.CIDRs {
			p, reason := parseCIDR(c)
			if reason != "" {
				ps.add(field("egress.cidrs", i), "%s %s", quote(c), reason)
				continue
			}
			r.prefixes = append(r.prefixes, p)
		}
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	r.normalise()
	return r, nil
}

// normalise fills norm and drops networks that others already hold.
func (r *egressRules) normalise() {
	for n := range r.exact {
		r.norm.Names = append(r.norm.Names, n)
	}
	for n := range r.wild {
		r.norm.Names = append(r.norm.Names, "*."+n)
	}
	slices.Sort(r.norm.Names)
	slices.SortFunc(r.prefixes, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	r.prefixes = slices.Compact(r.prefixes)
	for _, p := range r.prefixes {
		r.norm.CIDRs = append(r.norm.CIDRs, p.String())
	}
	var kept []netip.Prefix
	for _, p := range r.prefixes {
		if len(kept) > 0 && kept[len(kept)-1].Bits() <= p.Bits() && kept[len(kept)-1].Contains(p.Addr()) {
			continue // sorted by address: a network holding p comes just before it
		}
		kept = append(kept, p)
	}
	r.prefixes = kept
}

// allows reports whether the policy lets the agent resolve name, which
// must already be normalised (normalizeName).
func (r *egressRules) allows(name string) bool {
	if _, ok := r.exact[name]; ok {
		return true
	}
	if len(r.wild) == 0 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if _, ok := r.wild[name[i+1:]]; ok {
				return true
			}
		}
	}
	return false
}

// allowsAddr reports whether one of the policy's networks holds a.
func (r *egressRules) allowsAddr(a netip.Addr) bool {
	for _, p := range r.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// removedFrom reports whether r drops a name or a network that old lists,
// so that connections old allowed must be checked again.
func (r *egressRules) removedFrom(old *egressRules) bool {
	for _, n := range old.norm.Names {
		if _, found := slices.BinarySearch(r.norm.Names, n); !found {
			return true
		}
	}
	for _, c := range old.norm.CIDRs {
		if !slices.Contains(r.norm.CIDRs, c) {
			return true
		}
	}
	return false
}

// normalizeName checks a host name (a policy entry, or a question's name in
// presentation format) and returns it lower-cased without its final dot.
// With wildcard, a leading "*." is taken off and reported. reason is empty
// when the name is good and otherwise says what is wrong.
func normalizeName(s string, wildcard bool) (name string, wild bool, reason string) {
	if s == "" {
		return "", false, "is empty"
	}
	if len(s) > maxNameLen+3 {
		return "", false, "is longer than 253 characters"
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return "", false, "holds a non-ASCII character (write an internationalised name in its xn-- form)"
		}
	}
	name = strings.ToLower(strings.TrimSuffix(s, "."))
	if wildcard && strings.HasPrefix(name, "*.") {
		name, wild = name[2:], true
	}
	if reason = checkHostName(name); reason != "" {
		return "", false, reason
	}
	if wild && !strings.Contains(name, ".") {
		return "", false, "is a wildcard over a whole top-level domain (write at least *.example.com)"
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", false, "is an address, not a name (list it under cidrs)"
	}
	return name, wild, ""
}

// checkHostName checks a lower-case name without final dot: labels of 1 to
// 63 letters, digits, hyphens and underscores, no hyphen at either end.
func checkHostName(name string) string {
	if name == "" {
		return "is empty"
	}
	if len(name) > maxNameLen {
		return "is longer than 253 characters"
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c == '*':
				return "has a wildcard that is not the whole first label (write *.example.com)"
			default:
				return "holds a character that is not a letter, digit, hyphen, underscore or dot"
			}
			continue
		}
		label := name[start:i]
		switch {
		case label == "":
			return "has an empty label"
		case len(label) > maxLabelLen:
			return "has a label longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "has a label that begins or ends with a hyphen"
		}
		start = i + 1
	}
	return ""
}

// parseCIDR reads "192.0.2.0/24" or a bare "192.0.2.7" (a /32).
func parseCIDR(s string) (netip.Prefix, string) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, "is not a network in a.b.c.d/n form"
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, "is not an address or a network in a.b.c.d/n form"
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if !p.Addr().Is4() {
		return p, "is not an IPv4 network (the agents' network is IPv4 only)"
	}
	if m := p.Masked(); m != p {
		return p, "has bits set past its prefix length (did you mean " + m.String() + "?)"
	}
	return p, ""
}

// addrRange is an inclusive range of IPv4 addresses.
type addrRange struct{ from, to uint32 }

// ranges merges the policy's networks into the fewest disjoint,
// non-adjacent ranges: the form an interval set in the kernel takes.
func (r *egressRules) ranges() []addrRange {
	var out []addrRange
	for _, p := range r.prefixes { // sorted, nested ones dropped
		from := u32(p.Addr())
		to := from | uint32(uint64(1)<<(32-p.Bits())-1)
		if n := len(out); n > 0 && out[n-1].to != ^uint32(0) && from <= out[n-1].to+1 {
			out[n-1].to = max(out[n-1].to, to)
			continue
		}
		out = append(out, addrRange{from, to})
	}
	return out
}

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func addrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
