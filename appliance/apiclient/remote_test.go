package apiclient

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tlsServer is an HTTPS server standing in for the console: it answers
// /api/v1/version and /api/v1/summary/agents, counts requests and keeps
// the last Authorization and Host.
type tlsServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	auth     string
	host     string
	closed   chan struct{}
}

func newTLSServer(t *testing.T) *tlsServer {
	t.Helper()
	s := &tlsServer{closed: make(chan struct{}, 16)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		s.auth, s.host = r.Header.Get("Authorization"), r.Host
		s.mu.Unlock()
		switch r.URL.Path {
		case "/api/v1/version":
			w.Write([]byte(`{"version":"1.2.3"}`))
		case "/api/v1/summary/agents":
			w.Write([]byte(`{"by_state":{"running":2},"total":2,"deploys_7d":{"since":"2025-01-01T00:00:00Z","attempted":4,"succeeded":4,"rate":1},"target":0.98}`))
		case "/api/v1/big":
			w.Write([]byte(strings.Repeat("a", 4096)))
		default:
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":"role \"auditor\" may not"}`))
		}
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			s.closed <- struct{}{}
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *tlsServer) fingerprint() string { return CertFingerprint(s.Certificate()) }

func TestRemotePinnedFingerprintAndBearer(t *testing.T) {
	s := newTLSServer(t)
	for _, fp := range []string{s.fingerprint(), strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(s.fingerprint(), "SHA256:"), ":", ""))} {
		c, err := NewRemote(s.URL, WithFingerprint(fp), WithBearer("omt_secret"), WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Version(context.Background())
		if err != nil || v.Version != "1.2.3" {
			t.Fatalf("Version with fingerprint %s = %+v, %v", fp, v, err)
		}
		sum, err := c.AgentsSummary(context.Background())
		if err != nil || sum.Total != 2 || sum.ByState["running"] != 2 || sum.Deploys7d.Rate == nil || *sum.Deploys7d.Rate != 1 {
			t.Errorf("AgentsSummary = %+v, %v", sum, err)
		}
		c.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth != "Bearer omt_secret" {
		t.Errorf("Authorization = %q, want the bearer token", s.auth)
	}
	if want := strings.TrimPrefix(s.URL, "https://"); s.host != want {
		t.Errorf("Host = %q, want %q (the server's, not the socket client's placeholder)", s.host, want)
	}
}

// TestRemoteWrongFingerprintSendsNothing: a certificate other than the
// pinned one ends the handshake; no request (and so no token) reaches
// the server.
func TestRemoteWrongFingerprintSendsNothing(t *testing.T) {
	s := newTLSServer(t)
	wrong := "SHA256:" + strings.Repeat("AB:", 31) + "AB"
	c, err := NewRemote(s.URL, WithFingerprint(wrong), WithBearer("omt_secret"), WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Version(context.Background())
	var fe *FingerprintError
	if !errors.As(err, &fe) || !errors.Is(err, ErrFingerprint) || fe.Got != s.fingerprint() || fe.Want != wrong {
		t.Fatalf("Version with a wrong pin = %v, want a *FingerprintError naming both", err)
	}
	if n := s.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

// TestRemoteUnpinnedNeedsACA: without a fingerprint the certificate must
// verify against the system's CAs, which the test server's does not.
func TestRemoteUnpinnedNeedsACA(t *testing.T) {
	s := newTLSServer(t)
	c, err := NewRemote(s.URL, WithBearer("omt_secret"), WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Version(context.Background())
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("an unknown CA: %v, want x509.UnknownAuthorityError", err)
	}
	if n := s.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestRemoteErrorsAndCaps(t *testing.T) {
	s := newTLSServer(t)
	c, err := NewRemote(s.URL+"/", WithFingerprint(s.fingerprint()), WithMaxResponse(1024), WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Users(context.Background()); !IsStatus(err, http.StatusForbidden) {
		t.Errorf("a 403 = %v, want an *Error of status 403", err)
	}
	var e *Error
	if _, err := c.Agents(context.Background()); !errors.As(err, &e) || e.Message != `role "auditor" may not` {
		t.Errorf("the server's message = %v", err)
	}
	if _, err := c.rawBody(context.Background(), "/api/v1/big"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("an oversized answer = %v, want ErrTooLarge", err)
	}
}

// TestRemoteCloseClosesIdleConnections: Close reaches the connections
// through the credentials' wrapper (it did not: http.Client closes idle
// connections only through a transport with the method).
func TestRemoteCloseClosesIdleConnections(t *testing.T) {
	s := newTLSServer(t)
	c, err := NewRemote(s.URL, WithFingerprint(s.fingerprint()), WithBearer("t"), WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Version(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection stayed open after Close")
	}
}

func TestNewRemoteRefusals(t *testing.T) {
	good := "SHA256:" + strings.Repeat("00:", 31) + "00"
	for _, tc := range []struct{ url, fp, want string }{
		{"http://host:8443", good, "https"},
		{"https://user:pw@host:8443", good, "credentials"},
		{"https://host:8443/console", good, "only https://host:port"},
		{"https://host:8443?x=1", good, "only https://host:port"},
		{"https://", good, "no host"},
		{"https://host:8443", "SHA256:AB:CD", "32 bytes"},
		{"https://host:8443", "MD5:" + strings.Repeat("00", 32), "32 bytes"},
		{"https://host:8443", strings.Repeat("zz", 32), "32 bytes"},
	} {
		c, err := NewRemote(tc.url, WithFingerprint(tc.fp))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewRemote(%q, %q) = %v, %v; want an error about %q", tc.url, tc.fp, c, err, tc.want)
		}
	}
}

func FuzzParseFingerprint(f *testing.F) {
	f.Add("SHA256:" + strings.Repeat("AB:", 31) + "AB")
	f.Add(strings.Repeat("ab", 32))
	f.Add("SHA256:")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseFingerprint(s)
		if err != nil {
			return
		}
		if len(b) != 32 {
			t.Fatalf("%q: %d bytes", s, len(b))
		}
		again, err := ParseFingerprint(FormatFingerprint(b))
		if err != nil || string(again) != string(b) {
			t.Fatalf("%q does not round-trip: %v", s, err)
		}
	})
}
