package netpolicy

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCompileEgressNames(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   string // normalised; "" when refused
		reason string // part of the refusal
	}{
		{"api.example.com", "api.example.com", ""},
		{"API.Example.COM.", "api.example.com", ""},
		{"*.example.com", "*.example.com", ""},
		{"_srv._tcp.example.com", "_srv._tcp.example.com", ""},
		{"localhost", "localhost", ""},
		{"", "", "is empty"},
		{"*", "", "wildcard"},
		{"*.com", "", "whole top-level domain"},
		{"a.*.example.com", "", "not the whole first label"},
		{"*example.com", "", "not the whole first label"},
		{"exa mple.com", "", "not a letter"},
		{"example..com", "", "empty label"},
		{"-a.example.com", "", "hyphen"},
		{"a-.example.com", "", "hyphen"},
		{strings.Repeat("a", 64) + ".com", "", "longer than 63"},
		{strings.Repeat("a.", 127) + "com", "", "longer than 253"},
		{"bücher.example", "", "xn--"},
		{"192.0.2.1", "", "list it under cidrs"},
		{"a\\.b.example.com", "", "not a letter"},
	} {
		r, err := compileEgress(Egress{Names: []string{tc.in}})
		if tc.reason == "" {
			if err != nil || !slices.Equal(r.norm.Names, []string{tc.want}) {
				t.Errorf("%q: %v, %v; want %q", tc.in, r, err, tc.want)
			}
			continue
		}
		var inv *InvalidError
		if !errors.As(err, &inv) || !errors.Is(err, ErrInvalid) || len(inv.Problems) != 1 ||
			inv.Problems[0].Field != "egress.names[0]" || !strings.Contains(inv.Problems[0].Reason, tc.reason) {
			t.Errorf("%q: %v; want a refusal of egress.names[0] saying %q", tc.in, err, tc.reason)
		}
	}
}

func TestAllows(t *testing.T) {
	r, err := compileEgress(Egress{Names: []string{"api.example.com", "*.cdn.example.net", "api.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"api.example.com":     true,
		"example.com":         false,
		"x.api.example.com":   false,
		"a.cdn.example.net":   true,
		"a.b.cdn.example.net": true,
		"cdn.example.net":     false,
		"xcdn.example.net":    false,
		"example.net":         false,
		"":                    false,
	} {
		if got := r.allows(name); got != want {
			t.Errorf("allows(%q) = %v", name, got)
		}
	}
	if len(r.norm.Names) != 2 {
		t.Errorf("duplicates kept: %v", r.norm.Names)
	}
}

func TestCompileEgressCIDRs(t *testing.T) {
	bad := map[string]string{
		"10.0.0.1/8":     "did you mean 10.0.0.0/8",
		"2001:db8::/32":  "IPv4 only",
		"::ffff:1.2.3.4": "IPv4 only",
		"10.0.0.0/33":    "a.b.c.d/n",
		"example.com":    "not an address",
		"":               "not an address",
	}
	for in, reason := range bad {
		_, err := compileEgress(Egress{CIDRs: []string{"192.0.2.0/24", in}})
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Problems[0].Field != "egress.cidrs[1]" || !strings.Contains(inv.Problems[0].Reason, reason) {
			t.Errorf("%q: %v; want egress.cidrs[1] refused: %q", in, err, reason)
		}
	}
	r, err := compileEgress(Egress{CIDRs: []string{"10.0.0.128/25", "203.0.113.7", "10.0.0.0/25", "10.0.0.5/32", "10.0.2.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.0/25", "10.0.0.5/32", "10.0.0.128/25", "10.0.2.0/24", "203.0.113.7/32"}; !slices.Equal(r.norm.CIDRs, want) {
		t.Errorf("norm %v, want %v", r.norm.CIDRs, want)
	}
	var got []string
	for _, rg := range r.ranges() {
		got = append(got, addrOf(rg.from).String()+"-"+addrOf(rg.to).String())
	}
	if want := []string{"10.0.0.0-10.0.0.255", "10.0.2.0-10.0.2.255", "203.0.113.7-203.0.113.7"}; !slices.Equal(got, want) {
		t.Errorf("ranges %v, want %v", got, want)
	}
	if n := len(cidrElements(r)); n != 6 {
		t.Errorf("%d interval elements, want 6", n)
	}
	all, _ := compileEgress(Egress{CIDRs: []string{"0.0.0.0/0", "192.0.2.0/24"}})
	if els := cidrElements(all); len(els) != 1 || els[0].IntervalEnd {
		t.Errorf("0.0.0.0/0: %v, want a single open-ended start element", els)
	}
}

func TestEgressBounds(t *testing.T) {
	many := make([]string, MaxEgressNames+1)
	for i := range many {
		many[i] = "a.example"
	}
	_, err := compileEgress(Egress{Names: many, CIDRs: make([]string, MaxEgressCIDRs+1)})
	var inv *InvalidError
	if !errors.As(err, &inv) || len(inv.Problems) != 2 || inv.Problems[0].Field != "egress.names" || inv.Problems[1].Field != "egress.cidrs" {
		t.Fatalf("%v", err)
	}
}

func TestRemovedFrom(t *testing.T) {
	c := func(e Egress) *egressRules {
		r, err := compileEgress(e)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	old := c(Egress{Names: []string{"a.test", "*.b.test"}, CIDRs: []string{"192.0.2.0/24"}})
	for _, tc := range []struct {
		e    Egress
		want bool
	}{
		{Egress{Names: []string{"a.test", "*.b.test", "c.test"}, CIDRs: []string{"192.0.2.0/24"}}, false},
		{Egress{Names: []string{"*.b.test"}, CIDRs: []string{"192.0.2.0/24"}}, true},
		{Egress{Names: []string{"a.test", "*.b.test"}}, true},
		{Egress{}, true},
	} {
		if got := c(tc.e).removedFrom(old); got != tc.want {
			t.Errorf("%+v: removedFrom = %v", tc.e, got)
		}
	}
}
