package api

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/auth"
)

// FuzzCredentialHeaders: whatever the console forwards as the client's
// address or the Authorization header, what is accepted is an IP address
// in canonical form or a token without blanks, and every refusal names
// the header.
func FuzzCredentialHeaders(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "::ffff:10.0.0.1", "fe80::1%eth0", "2001:db8::1", "1.2.3.4:80", "", "Bearer omt_abc", "bearer x",
		"Bearer  x", "Basic Zm9v", "Bearer x y", "\x00", strings.Repeat("9", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		addr, err := parseClientAddr(h)
		var inv *auth.InvalidError
		switch {
		case err == nil:
			a, perr := netip.ParseAddr(addr)
			if perr != nil || a.String() != addr || a.Zone() != "" || a.Is4In6() {
				t.Errorf("parseClientAddr(%q) = %q, not a canonical IP", h, addr)
			}
		case !errors.As(err, &inv) || inv.Field != "X-Omerta-Client-Addr" || len(inv.Reason) > 4*maxQuoted+64:
			t.Errorf("parseClientAddr(%q) refused with %v", h, err)
		}
		if tok, ok := bearerToken(h); ok && (tok == "" || strings.ContainsAny(tok, " \t") || !strings.HasSuffix(h, tok)) {
			t.Errorf("bearerToken(%q) = %q", h, tok)
		}
	})
}
