package ui

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/ui/uitest"
)

func TestDevCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	now := time.Now()
	cert, certPath, keyPath, err := EnsureDevCert(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
		if err := cert.VerifyHostname(host); err != nil {
			t.Errorf("certificate not for %s: %v", host, err)
		}
	}
	again, _, _, err := EnsureDevCert(dir, now.Add(time.Hour))
	if err != nil || !again.Equal(cert) {
		t.Errorf("a valid certificate was not kept: %v", err)
	}
	later, _, _, err := EnsureDevCert(dir, now.Add(devCertValidity))
	if err != nil || later.Equal(cert) {
		t.Errorf("an expiring certificate was kept: %v", err)
	}
	if err := os.WriteFile(certPath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := EnsureDevCert(dir, now); err != nil {
		t.Errorf("an unusable certificate was not replaced: %v", err)
	}
}

func TestTLSConfigRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	_, certPath, keyPath, err := EnsureDevCert(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := TLSConfig(certPath, filepath.Join(dir, "missing.key")); err == nil {
		t.Error("a missing key was accepted")
	}
	if _, _, err := TLSConfig(dir, keyPath); err == nil || !strings.Contains(err.Error(), "regular") {
		t.Errorf("a directory as certificate: %v", err)
	}
	big := filepath.Join(dir, "big.crt")
	os.WriteFile(big, make([]byte, maxPEM+1), 0o644)
	if _, _, err := TLSConfig(big, keyPath); err == nil {
		t.Error("an oversized certificate file was read")
	}
}

func TestServeRefusesWithoutTLS(t *testing.T) {
	e := newEnv(t, Limits{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	if err := e.s.Serve(ln); err == nil || !strings.Contains(err.Error(), "HTTPS only") {
		t.Errorf("Serve without TLS: %v", err)
	}
}

func TestTLSVersionsAndSuites(t *testing.T) {
	e := newEnv(t, Limits{})
	addr, _ := e.serveTLS()
	dial := func(c *tls.Config) error {
		c.InsecureSkipVerify = true
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, c)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(&tls.Config{MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}); err == nil {
		t.Error("TLS 1.1 was accepted")
	}
	if err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}); err == nil {
		t.Error("a CBC suite was accepted")
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if err := dial(&tls.Config{MinVersion: v, MaxVersion: v}); err != nil {
			t.Errorf("TLS %x refused: %v", v, err)
		}
	}
}

// rawTLS sends raw bytes over TLS and returns the answer's status line.
func rawTLS(t *testing.T, addr, request string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(conn, request)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestSizeLimits(t *testing.T) {
	e := newEnv(t, Limits{Body: 4096, Header: 2048})
	e.fake.AddUser("alice", "admin", testPassword)
	addr, client := e.serveTLS()
	body := strings.Repeat("a", 5000)
	got := rawTLS(t, addr, fmt.Sprintf("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if !strings.Contains(got, " 413 ") {
		t.Errorf("oversized body: %q, want 413", got)
	}
	got = rawTLS(t, addr, "GET /login HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 4096)+"\r\n\r\n")
	if !strings.Contains(got, " 431 ") {
		t.Errorf("oversized headers: %q, want 431", got)
	}
	// The limits' answers carry the security headers too.
	r, _ := http.NewRequest("POST", "https://"+addr+"/login", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Security-Policy") != ContentSecurityPolicy {
		t.Errorf("413 answer: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	// The server is still there.
	resp, err = client.Get("https://" + addr + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after the refusals: %d", resp.StatusCode)
	}
}

func TestConnectionCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ll := newLimitListener(ln, 2)
	defer ll.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ll.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted over the cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("a slot freed by a closed connection was not reused")
	}
	second.Close()
}

func TestReadTimeoutCutsSlowClients(t *testing.T) {
	e := newEnv(t, Limits{Read: 300 * time.Millisecond})
	addr, _ := e.serveTLS()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /login HTTP/1.1\r\nHost: x\r\n") // and never the end
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	io.Copy(io.Discard, conn)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a slow client held its connection for %v", d)
	}
}

// TestMain lets a test run this binary as a console server of its own
// (see startConsoleProcess), so that its memory is measured apart from
// the test's clients.
func TestMain(m *testing.M) {
	if sock := os.Getenv("UI_TEST_CONSOLE_SOCKET"); sock != "" {
		os.Exit(serveConsoleProcess(sock))
	}
	os.Exit(m.Run())
}

// serveConsoleProcess serves a console in front of the omertad at sock
// with small limits, prints its address, and stops when stdin closes.
func serveConsoleProcess(sock string) int {
	dir, _ := os.MkdirTemp("", "uiconsole")
	defer os.RemoveAll(dir)
	_, certPath, keyPath, err := EnsureDevCert(dir, time.Now())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	conf, _, err := TLSConfig(certPath, keyPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := New(Options{Backend: ClientBackend{C: apiclient.New(sock)}, TLS: conf, Limits: Limits{Conns: floodConns, Body: floodBody}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	go s.Serve(ln)
	io.Copy(io.Discard, os.Stdin)
	return 0
}

const floodConns, floodBody = 16, 64 << 10

// peakRSS is a process's peak resident set size (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skip("no /proc: cannot measure memory")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	t.Skip("no VmHWM")
	return 0
}

// TestFloodStaysBounded floods a console process with many clients
// sending bodies just under the limit and over it: every one gets its
// answer (or waits for a connection slot), none crashes it, and its peak
// memory stays within what its limits allow (connections × body, plus the
// runtime), far below the flood's total.
func TestFloodStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a flood takes a few seconds")
	}
	fake := uitest.Start(t)
	fake.AddUser("alice", "admin", testPassword)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UI_TEST_CONSOLE_SOCKET="+fake.Socket)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr = strings.TrimSpace(addr)
	idle := peakRSS(t, cmd.Process.Pid)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	var sent int64
	for i := range 96 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := floodBody - 1024
			if i%2 == 1 {
				size = 4 * floodBody // refused with 413
			}
			payload := "username=" + strings.Repeat("a", size)
			for range 4 {
				got := rawTLS(t, addr, fmt.Sprintf("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(payload), payload))
				mu.Lock()
				codes[strings.Fields(got + " ? ?")[1]]++
				sent += int64(len(payload))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	peak := peakRSS(t, cmd.Process.Pid)
	t.Logf("answers %v; %d MiB sent; console peak RSS %d MiB (idle %d MiB)", codes, sent>>20, peak>>20, idle>>20)
	if codes["413"] != 192 || codes["400"] != 192 {
		t.Errorf("answers %v, want 192 refused as too large and 192 as bad sign-ins", codes)
	}
	if limit := idle + 32<<20; peak > limit && !raceEnabled {
		t.Errorf("console peak RSS %d MiB under the flood, more than %d MiB", peak>>20, limit>>20)
	}
}

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		opt  int64
		env  string
		want int64
	}{
		{0, "", DefaultMemoryLimit}, {32 << 20, "", 32 << 20}, {-1, "", 0}, {0, "40MiB", 0}, {32 << 20, "off", 0},
	} {
		if got := memoryLimit(tc.opt, tc.env); got != tc.want {
			t.Errorf("memoryLimit(%d, %q) = %d, want %d", tc.opt, tc.env, got, tc.want)
		}
	}
}
