package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Egress is one layer's allowed destinations, parsed: exact names, names
// below a domain (from "*.example.com") and address prefixes.
type Egress struct {
	Names    []string       `json:"names,omitempty"`    // exact, lower case
	Suffixes []string       `json:"suffixes,omitempty"` // ".example.com" for "*.example.com"
	Prefixes []netip.Prefix `json:"prefixes,omitempty"` // masked
}

var dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// parseDestination reads one egress entry: a CIDR, an address (taken as
// its /32 or /128) or a DNS name with an optional leading "*." wildcard.
// It returns the canonical text and, for an address, its prefix.
func parseDestination(s string) (string, netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", netip.Prefix{}, fmt.Errorf("%s is not a CIDR such as \"10.0.0.0/8\"", quote(s))
		}
		if p.Masked() != p {
			return "", netip.Prefix{}, fmt.Errorf("%s has host bits set; write %s", quote(s), p.Masked())
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
		return p.String(), p, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", netip.Prefix{}, fmt.Errorf("%s: an address with a zone is not a destination", quote(s))
		}
		a = a.Unmap()
		p := netip.PrefixFrom(a, a.BitLen())
		return p.String(), p, nil
	}
	name := strings.ToLower(s)
	rest := strings.TrimPrefix(name, "*.")
	if err := checkDNSName(rest); err != nil {
		return "", netip.Prefix{}, fmt.Errorf("%s is not a DNS name, \"*.\" and a DNS name, an address or a CIDR: %w", quote(s), err)
	}
	if rest != name && !strings.Contains(rest, ".") {
		return "", netip.Prefix{}, fmt.Errorf("%s: a wildcard must be below a domain of at least two labels", quote(s))
	}
	return name, netip.Prefix{}, nil
}

func checkDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("a name has 1 to 253 characters")
	}
	for _, l := range strings.Split(name, ".") {
		if !dnsLabelRe.MatchString(l) {
			return fmt.Errorf("label %s is not letters, digits and - (1 to 63)", quote(l))
		}
	}
	return nil
}

// compileEgress parses a checked list.
func compileEgress(list []string) *Egress {
	e := &Egress{}
	for _, s := range list {
		canon, p, err := parseDestination(s)
		switch {
		case err != nil:
			continue // checked on the way in; a stored list is ours
		case p.IsValid():
			e.Prefixes = append(e.Prefixes, p)
		case strings.HasPrefix(canon, "*."):
			e.Suffixes = append(e.Suffixes, canon[1:])
		default:
			e.Names = append(e.Names, canon)
		}
	}
	return e
}

// AllowsName reports whether the agent may resolve and reach name.
// "*.example.com" allows "a.example.com" and "a.b.example.com", not
// "example.com".
func (e *Egress) AllowsName(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for _, n := range e.Names {
		if n == name {
			return true
		}
	}
	for _, s := range e.Suffixes {
		if len(name) > len(s) && strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// AllowsAddr reports whether a listed prefix holds a.
func (e *Egress) AllowsAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range e.Prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Allows reports whether the destination dest (as written in a request:
// a name, "*.name", an address or a CIDR) is wholly inside what e allows.
func (e *Egress) Allows(dest string) bool {
	canon, p, err := parseDestination(dest)
	if err != nil {
		return false
	}
	if p.IsValid() {
		for _, q := range e.Prefixes {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	if strings.HasPrefix(canon, "*.") {
		suffix := canon[1:]
		for _, s := range e.Suffixes {
			if suffix == s || strings.HasSuffix(suffix, s) {
				return true
			}
		}
		return false
	}
	return e.AllowsName(canon)
}
