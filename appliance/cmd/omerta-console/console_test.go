package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/omertaos/omertaos/firstboot"
	"github.com/omertaos/omertaos/ui"
	"github.com/omertaos/omertaos/ui/uitest"
)

// TestMain lets tests run this test binary as omerta-console itself, so
// that signals, passed sockets and exit statuses reach a real process
// through main.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(envMainArgs); ok {
		os.Args = []string{"omerta-console"}
		if args != "" {
			os.Args = append(os.Args, strings.Split(args, "\x1f")...)
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const envMainArgs = "OMERTA_CONSOLE_TEST_MAIN_ARGS"

// consoleCmd is this test binary run as `omerta-console args...`.
func consoleCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envMainArgs+"="+strings.Join(args, "\x1f"))
	return cmd
}

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

func TestRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the refusal is for uid 0")
	}
	err := runConsole(context.Background(), &bytes.Buffer{}, options{listen: "127.0.0.1:0", logLevel: "info"})
	if !errors.Is(err, ErrRoot) {
		t.Fatalf("as root without --allow-root: %v, want ErrRoot", err)
	}
}

// TestFlags: the flags are exactly those `omerta console` had. In
// particular no remote ones: the console is omertad's front and reaches it
// by its socket only, whatever the environment says.
func TestFlags(t *testing.T) {
	var got []string
	newRootCmd().Flags().VisitAll(func(f *pflag.Flag) { got = append(got, f.Name) })
	sort.Strings(got)
	want := []string{"allow-root", "cert", "dev-cert", "key", "listen", "log-level", "socket"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("flags %q, want %q", got, want)
	}
}

// TestDeviceFilesAreFirstboots: the restated paths are first boot's.
func TestDeviceFilesAreFirstboots(t *testing.T) {
	if tlsCertPath != firstboot.TLSCertPath || tlsKeyPath != firstboot.TLSKeyPath {
		t.Errorf("certificate %s and key %s, first boot writes %s and %s", tlsCertPath, tlsKeyPath, firstboot.TLSCertPath, firstboot.TLSKeyPath)
	}
}

// TestFingerprintIsFirstboots: the banner prints the string first boot
// prints for the same certificate.
func TestFingerprintIsFirstboots(t *testing.T) {
	leaf, _, _, err := ui.EnsureDevCert(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := certFingerprint(leaf), firstboot.CertFingerprint(leaf); got != want {
		t.Errorf("fingerprint %s, first boot prints %s", got, want)
	}
}

func TestCertPaths(t *testing.T) {
	creds := t.TempDir()
	tests := []struct {
		name      string
		o         options
		credDir   string
		cert, key string
	}{
		{"first boot's files", options{}, "", tlsCertPath, tlsKeyPath},
		{"systemd's credentials", options{}, creds, filepath.Join(creds, credCert), filepath.Join(creds, credKey)},
		{"flags win", options{cert: "/c.pem", key: "/k.pem"}, creds, "/c.pem", "/k.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CREDENTIALS_DIRECTORY", tt.credDir)
			if tt.credDir == "" {
				os.Unsetenv("CREDENTIALS_DIRECTORY")
			}
			if cert, key := certPaths(tt.o); cert != tt.cert || key != tt.key {
				t.Errorf("certPaths = %s, %s; want %s, %s", cert, key, tt.cert, tt.key)
			}
		})
	}
}

// TestErrorLine: a failure is one escaped line on standard error and exit
// status 1, as omerta's.
func TestErrorLine(t *testing.T) {
	var b bytes.Buffer
	printError(&b, errors.New("reading \x1b[2J/evil\npath: denied"))
	if got := b.String(); strings.ContainsAny(strings.TrimSuffix(got, "\n"), "\x1b\n") || !strings.HasPrefix(got, "omerta-console: reading ") {
		t.Errorf("error line %q: want one line, prefixed, with no control characters", got)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--url", "https://x"}, "unknown flag: --url"},
		{"an argument", []string{"serve"}, "unknown command"},
		{"bad level", []string{"--allow-root", "--log-level", "loud"}, "--log-level"},
		{"dev-cert and cert", []string{"--allow-root", "--dev-cert", "/tmp/x", "--cert", "/c"}, "dev-cert"},
		{"missing certificate", []string{"--allow-root", "--cert", "/nonexistent/c\x1b[31m.pem", "--key", "/nonexistent/k.pem"}, "/nonexistent/c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := consoleCmd(tt.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1; stderr %q", err, stderr.String())
			}
			line := stderr.String()
			if !strings.HasPrefix(line, "omerta-console: ") || strings.Count(line, "\n") != 1 || strings.Contains(line, "\x1b") || !strings.Contains(line, tt.want) {
				t.Errorf("stderr %q: want one escaped line naming %q", line, tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "omerta-console ") {
		t.Errorf("--version printed %q", out.String())
	}
}

func TestServesWithDevCert(t *testing.T) {
	fake := uitest.Start(t)
	fake.AddUser("alice", "admin", "correct horse battery staple")
	dir := t.TempDir()
	o := options{listen: "127.0.0.1:0", devCert: dir, allowRoot: true, logLevel: "warn", socket: fake.Socket}
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan error, 1)
	go func() { done <- runConsole(ctx, &out, o) }()
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
	assertNoPlainHTTP(t, addr)
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

// assertNoPlainHTTP: a plain HTTP request gets no HTTP answer.
func assertNoPlainHTTP(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 64)
	n, _ := conn.Read(b)
	if strings.HasPrefix(string(b[:n]), "HTTP/1.1 200") {
		t.Error("plain HTTP was answered")
	}
}

// TestSocketActivation runs the binary as systemd would: with the
// listening socket passed as fd 3, LISTEN_FDS=1 and LISTEN_PID its pid.
func TestSocketActivation(t *testing.T) {
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
	self := consoleCmd("--dev-cert", dir, "--allow-root", "--socket", fake.Socket, "--listen", "127.0.0.1:1")
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
