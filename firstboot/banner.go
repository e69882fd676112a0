package firstboot

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// banner is what the administrator needs to take over the machine.
type banner struct {
	URL            string
	TLSFingerprint string
	Token          string
	ExpiresAt      time.Time
	// TokenNote, when set, replaces the token: why there is none to show.
	TokenNote string
	ReportKey string
}

// reissueHint is what an administrator at the console can do about a token
// that cannot be used.
const reissueHint = "`omerta firstboot reissue-token` as root issues a new one"

func (r *runner) banner() (banner, error) {
	sd, err := r.site()
	if err != nil {
		return banner{}, err
	}
	id, err := r.identity()
	if err != nil {
		return banner{}, err
	}
	var kd keysData
	if ok, err := r.j.decode(StepKeys, &kd); err != nil || !ok {
		return banner{}, fmt.Errorf("banner: the keys step has not run (%v)", err)
	}
	var note string
	t, err := readToken(r.path(TokenPath))
	switch {
	case err != nil:
		// The banner still shows the URL and fingerprints; a bad token
		// file is no reason to hide them.
		note = "unavailable; " + reissueHint
	case t.Token != "" && !r.opts.Now().Before(t.ExpiresAt):
		note = "expired at " + t.ExpiresAt.UTC().Format(time.RFC3339) + "; " + reissueHint
	}
	// An address works before any DNS or mDNS does.
	host := id.Hostname
	for _, a := range kd.IPAddresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			host = ip.String()
			break
		}
	}
	return banner{
		URL:            "https://" + net.JoinHostPort(host, strconv.Itoa(sd.Config.Console.Port)) + "/",
		TLSFingerprint: kd.TLSFingerprint,
		Token:          t.Token,
		ExpiresAt:      t.ExpiresAt,
		TokenNote:      note,
		ReportKey:      kd.SigningKeyFingerprint,
	}, nil
}

func (b banner) String() string {
	tok := b.Token
	switch {
	case b.TokenNote != "":
		tok = "(" + b.TokenNote + ")"
	case tok == "":
		tok = "(used)"
	default:
		tok += "   (single use, valid until " + b.ExpiresAt.UTC().Format(time.RFC3339) + ")"
	}
	var s strings.Builder
	s.WriteString("OMERTAOS is ready.\n")
	fmt.Fprintf(&s, "  Console:          %s\n", b.URL)
	fmt.Fprintf(&s, "  TLS fingerprint:  %s\n", b.TLSFingerprint)
	fmt.Fprintf(&s, "  Setup token:      %s\n", tok)
	fmt.Fprintf(&s, "  Report key:       %s\n", b.ReportKey)
	return s.String()
}

// issue is the banner as agetty shows it above the login prompt.
func (b banner) issue() string { return "\n" + b.String() + "\n" }

func (r *runner) printBanner() error {
	b, err := r.banner()
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(r.opts.Out, b.String())
	return err
}
