package apiclient

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The remote transport: the same Client, its calls made to the logical
// origin http://omertad as over the socket, and a transport that sends
// them to the console's https://host:port instead, where the console
// forwards its allow-list of /api/v1 routes to omertad with the caller's
// credentials (an API token: WithBearer).

// origin is the host every request of the client names; the transport
// decides where it really goes.
const origin = "omertad"

// remoteConf is what NewRemote's options set.
type remoteConf struct {
	pin []byte // the server certificate's SHA-256; nil: verify with the system's CAs
	err error  // an option's refusal, returned by NewRemote
}

// ErrFingerprint is returned (wrapped, in a *FingerprintError) when the
// server's certificate is not the pinned one: nothing was sent to it.
var ErrFingerprint = errors.New("server certificate does not match the pinned fingerprint")

// FingerprintError is a TLS handshake refused for the server's
// certificate: Want is the pinned fingerprint, Got the server's, both in
// the console's format.
type FingerprintError struct {
	Want, Got string
}

func (e *FingerprintError) Error() string {
	return fmt.Sprintf("%v: pinned %s, the server has %s", ErrFingerprint, e.Want, e.Got)
}

func (e *FingerprintError) Unwrap() error { return ErrFingerprint }

// WithFingerprint pins the server certificate of a remote client
// (NewRemote) to its SHA-256 fingerprint, as `omerta-console` and first
// boot print it ("SHA256:AB:CD:…"; colons, case and the prefix optional).
// A pinned certificate needs no CA: the appliance's is self-signed. Only
// NewRemote uses it.
func WithFingerprint(fp string) Option {
	return func(c *Client) {
		if c.remote == nil {
			return
		}
		pin, err := ParseFingerprint(fp)
		if err != nil {
			c.remote.err = err
			return
		}
		c.remote.pin = pin
	}
}

// ParseFingerprint reads a SHA-256 certificate fingerprint: 64 hex digits,
// optionally after "SHA256:" and in pairs separated by colons.
func ParseFingerprint(fp string) ([]byte, error) {
	s := strings.TrimSpace(fp)
	if p, ok := strings.CutPrefix(strings.ToUpper(s), "SHA256:"); ok {
		s = p
	}
	s = strings.ReplaceAll(s, ":", "")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %.80q: want SHA256: and 32 bytes in hex (as the console prints it)", fp)
	}
	return b, nil
}

// FormatFingerprint is a certificate's fingerprint in the console's
// format.
func FormatFingerprint(sum []byte) string {
	h := strings.ToUpper(hex.EncodeToString(sum))
	var b strings.Builder
	b.WriteString("SHA256:")
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// NewRemote returns a client of the API at baseURL (https://host:port, the
// console), for callers that are not on omertad's machine. It speaks TLS
// 1.2 or later; WithFingerprint pins the server's certificate, and without
// it the certificate must verify against the system's CAs for the host.
// Credentials come from the options (WithBearer). Nothing is dialled until
// the first call.
func NewRemote(baseURL string, opts ...Option) (*Client, error) {
	base, err := parseBase(baseURL)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                  nil, // a token is for the console, not for a proxy on the way
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           4,
		IdleConnTimeout:        30 * time.Second,
		DisableCompression:     true,
	}
	rc := &remoteConf{}
	c := &Client{socket: base.String(), http: &http.Client{Transport: &remoteTransport{base: base, next: tr}, Timeout: DefaultTimeout},
		maxBody: DefaultMaxResponse, remote: rc}
	for _, o := range opts {
		o(c)
	}
	if rc.err != nil {
		return nil, rc.err
	}
	tr.TLSClientConfig = clientTLS(base.Hostname(), rc.pin)
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c, nil
}

// parseBase accepts https://host[:port][/] and nothing more: no
// credentials in the URL, no path (the console serves /api/v1 at its
// root), no query.
func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("URL %.200q: %w", raw, err)
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("URL %.200q: the scheme must be https (a token is never sent in clear)", raw)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("URL %.200q: no host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("URL %.200q: credentials do not belong in the URL (use a token)", raw)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.Opaque != "":
		return nil, fmt.Errorf("URL %.200q: give only https://host:port, the console's address", raw)
	}
	return &url.URL{Scheme: "https", Host: u.Host}, nil
}

func clientTLS(serverName string, pin []byte) *tls.Config {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if pin == nil {
		return conf
	}
	// The chain is not verified against any CA: the pin is the trust.
	// VerifyConnection runs in the handshake, before a byte of the
	// request (or its token) is written.
	conf.InsecureSkipVerify = true
	want := FormatFingerprint(pin)
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &FingerprintError{Want: want, Got: "no certificate"}
		}
		sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
			return &FingerprintError{Want: want, Got: FormatFingerprint(sum[:])}
		}
		return nil
	}
	return conf
}

// CertFingerprint is cert's fingerprint in the console's format.
func CertFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return FormatFingerprint(sum[:])
}

// remoteTransport sends the client's requests, made to http://omertad, to
// the base URL.
type remoteTransport struct {
	base *url.URL
	next *http.Transport
}

func (t *remoteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != origin || req.URL.Scheme != "http" {
		// Every request of the client names the logical origin; anything
		// else is a bug, not somewhere to send the token.
		return nil, fmt.Errorf("apiclient: request for %s, not for %s", req.URL.Redacted(), origin)
	}
	r := req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host = t.base.Scheme, t.base.Host
	r.URL, r.Host = &u, ""
	return t.next.RoundTrip(r)
}

// CloseIdleConnections lets Client.Close reach the connections.
func (t *remoteTransport) CloseIdleConnections() { t.next.CloseIdleConnections() }

// CloseIdleConnections passes Client.Close through the credentials'
// wrapper: http.Client closes idle connections only through a transport
// that has the method.
func (t *credTransport) CloseIdleConnections() {
	if ci, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
