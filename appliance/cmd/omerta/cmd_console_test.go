package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/omertaos/omertaos/firstboot"
	"github.com/omertaos/omertaos/ui"
	"github.com/omertaos/omertaos/ui/uitest"
)

// lockedBuffer is a bytes.Buffer safe to write and read from two
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var consoleURL = regexp.MustCompile(`Console: +https://([^/\s]+)/`)

// waitConsoleURL waits for the banner's address.
func waitConsoleURL(t *testing.T, out interface{ String() string }) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := consoleURL.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no console address printed; output:\n%s", out.String())
	return ""
}

func trustingClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestConsoleRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the refusal is for uid 0")
	}
	err := runConsole(context.Background(), &bytes.Buffer{}, &bytes.Buffer{}, consoleOptions{listen: "127.0.0.1:0", logLevel: "info"})
	if err == nil || !strings.Contains(err.Error(), "refusing to run as root") {
		t.Fatalf("as root without --allow-root: %v", err)
	}
}

func TestConsoleServesWithDevCert(t *testing.T) {
	fake := uitest.Start(t)
	fake.AddUser("alice", "admin", "correct horse battery staple")
	dir := t.TempDir()
	o := consoleOptions{listen: "127.0.0.1:0", devCert: dir, allowRoot: true, logLevel: "warn"}
	o.api.socket = fake.Socket
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- runConsole(ctx, &out, &out, o) }()
	addr := waitConsoleURL(t, &out)

	certFile := filepath.Join(dir, ui.DevCertFile)
	pemBytes, _ := os.ReadFile(certFile)
	block, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if fp := firstboot.CertFingerprint(cert); !strings.Contains(out.String(), "TLS fingerprint:  "+fp) {
		t.Errorf("banner lacks the fingerprint %s:\n%s", fp, out.String())
	}
	if fi, err := os.Stat(filepath.Join(dir, ui.DevKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("development key: %v %v, want mode 0600", fi.Mode(), err)
	}
	resp, err := trustingClient(t, certFile).Get("https://" + addr + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("GET /login: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	// Plain HTTP is not served.
	conn, err := net.Dial("tcp", addr)
	if err == nil {
		conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 64)
		n, _ := conn.Read(b)
		if strings.HasPrefix(string(b[:n]), "HTTP/1.1 200") {
			t.Error("plain HTTP was answered")
		}
		conn.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("console stopped with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the console did not stop")
	}
}

// TestConsoleSocketActivation runs the command as systemd would: with the
// listening socket passed as fd 3, LISTEN_FDS=1 and LISTEN_PID its pid.
func TestConsoleSocketActivation(t *testing.T) {
	fake := uitest.Start(t)
	fake.AddUser("alice", "admin", "correct horse battery staple")
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the child holds the duplicate
	self := omertaCmd("console", "--dev-cert", dir, "--allow-root", "--socket", fake.Socket, "--listen", "127.0.0.1:1")
	// LISTEN_PID must be the child's own pid: sh learns it and execs.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0"`, self.Path)
	cmd.Env, cmd.ExtraFiles = self.Env, []*os.File{lf}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if got := waitConsoleURL(t, &out); got != addr {
		t.Fatalf("console serves %s, want the passed socket %s:\n%s", got, addr, out.String())
	}
	if !strings.Contains(out.String(), "socket from systemd") {
		t.Errorf("banner does not say the socket came from systemd:\n%s", out.String())
	}
	resp, err := trustingClient(t, filepath.Join(dir, ui.DevCertFile)).Get("https://" + addr + "/login")
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /login over the passed socket: %d", resp.StatusCode)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("console exited with %v after SIGTERM:\n%s", err, out.String())
	}
}
