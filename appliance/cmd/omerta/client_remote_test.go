package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/ui"
	"github.com/omertaos/omertaos/ui/uitest"
)

// remoteEnv is the real console over HTTPS in front of a fake omertad,
// and an auditor's API token in a file.
type remoteEnv struct {
	fake        *uitest.Fake
	url         string
	fingerprint string
	tokenFile   string
	token       string
}

func newRemoteEnv(t *testing.T) *remoteEnv {
	t.Helper()
	fake := uitest.Start(t)
	fake.AddAgents(3)
	token := fake.AddToken("cli", "auditor")
	dir := t.TempDir()
	leaf, certFile, keyFile, err := ui.EnsureDevCert(filepath.Join(dir, "tls"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	conf, _, err := ui.TLSConfig(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	client := fake.Client()
	t.Cleanup(client.Close)
	srv, err := ui.New(ui.Options{Backend: ui.ClientBackend{C: client}, TLS: conf, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	tf := filepath.Join(dir, "token")
	if err := os.WriteFile(tf, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &remoteEnv{fake: fake, url: "https://" + ln.Addr().String(), fingerprint: apiclient.CertFingerprint(leaf), tokenFile: tf, token: token}
}

func runOmerta(args ...string) (string, string, error) {
	root := newRootCmd()
	var out, errs bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errs)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errs.String(), err
}

// TestAgentsListRemote: `omerta agents list --url --token-file
// --fingerprint` lists the agents through the console, with the token.
func TestAgentsListRemote(t *testing.T) {
	e := newRemoteEnv(t)
	out, errs, err := runOmerta("agents", "list", "--url", e.url, "--token-file", e.tokenFile, "--fingerprint", e.fingerprint)
	if err != nil {
		t.Fatalf("agents list --url: %v\n%s%s", err, out, errs)
	}
	for _, id := range []string{"agent-000", "agent-001", "agent-002"} {
		if !strings.Contains(out, id) {
			t.Errorf("the list lacks %s:\n%s", id, out)
		}
	}
	if got := e.fake.LastHeaders().Get("Authorization"); got != "Bearer "+e.token {
		t.Errorf("omertad got Authorization %q, want the token passed through the console", got)
	}
	if strings.Contains(out+errs, e.token) {
		t.Error("the token was echoed")
	}
}

// TestRemoteFromTheEnvironment: OMERTA_URL, OMERTA_TOKEN and
// OMERTA_FINGERPRINT stand for the flags.
func TestRemoteFromTheEnvironment(t *testing.T) {
	e := newRemoteEnv(t)
	t.Setenv(envURL, e.url)
	t.Setenv(envToken, e.token)
	t.Setenv(envFingerprint, e.fingerprint)
	out, errs, err := runOmerta("agents", "list", "--json")
	if err != nil || !strings.Contains(out, `"agent-001"`) {
		t.Fatalf("agents list from the environment: %v\n%s%s", err, out, errs)
	}
}

func TestRemoteRefusals(t *testing.T) {
	e := newRemoteEnv(t)
	worldReadable := filepath.Join(t.TempDir(), "token")
	os.WriteFile(worldReadable, []byte(e.token), 0o644)
	twoLines := filepath.Join(t.TempDir(), "token")
	os.WriteFile(twoLines, []byte(e.token+"\nsecond"), 0o600)
	wrongFP := "SHA256:" + strings.Repeat("00:", 31) + "00"
	for _, tc := range []struct {
		name string
		args []string
		want string
		sent bool // the request reached omertad
	}{
		{"token on the command line", []string{"--url", e.url, "--token", e.token, "--fingerprint", e.fingerprint}, "--token-file", false},
		{"no token", []string{"--url", e.url, "--fingerprint", e.fingerprint}, "needs an API token", false},
		{"wrong fingerprint", []string{"--url", e.url, "--token-file", e.tokenFile, "--fingerprint", wrongFP}, "compare with the fingerprint", false},
		{"no fingerprint, no CA", []string{"--url", e.url, "--token-file", e.tokenFile}, "give --fingerprint", false},
		{"socket and url", []string{"--url", e.url, "--token-file", e.tokenFile, "--socket", "/x.sock"}, "give one", false},
		{"token file without url", []string{"--token-file", e.tokenFile, "--socket", "/x.sock"}, "are for --url", false},
		{"plain http", []string{"--url", "http://" + strings.TrimPrefix(e.url, "https://"), "--token-file", e.tokenFile}, "https", false},
		{"world-readable token file", []string{"--url", e.url, "--token-file", worldReadable, "--fingerprint", e.fingerprint}, "chmod o-r", false},
		{"not one token", []string{"--url", e.url, "--token-file", twoLines, "--fingerprint", e.fingerprint}, "not a token", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := e.fake.Requests()
			out, errs, err := runOmerta(append([]string{"agents", "list"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q\n%s%s", err, tc.want, out, errs)
			}
			if err != nil && strings.Contains(err.Error(), e.token) {
				t.Errorf("the error shows the token: %v", err)
			}
			if sent := e.fake.Requests() != n; sent != tc.sent {
				t.Errorf("reached omertad: %v", sent)
			}
		})
	}
}
