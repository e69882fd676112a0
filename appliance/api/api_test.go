package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/store"
)

type served struct {
	c    *apiclient.Client
	st   *store.Store
	sock string
}

// serve starts the API on a real unix socket in a temp dir. The store is
// created unless d already has one.
func serve(t *testing.T, d Deps) served {
	t.Helper()
	// Unix socket paths are limited to 107 bytes; t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if d.Store == nil {
		st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		d.Store = st
	}
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(d)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	c := apiclient.New(sock, apiclient.WithTimeout(10*time.Second))
	t.Cleanup(c.Close)
	return served{c: c, st: d.Store, sock: sock}
}

// raw sends req as written on a fresh connection and reads one answer: for
// what the typed client will not send (odd paths, bodies on GET).
func raw(t *testing.T, sock, req string) (int, string) {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The server may answer and close before reading all of req (a body
	// over the limit), so the write's error is not the test's.
	go io.WriteString(conn, req)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body)
}

func statusOf(err error) int {
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func TestHealthzAndVersion(t *testing.T) {
	s := serve(t, Deps{})
	ctx := context.Background()
	if h, err := s.c.Health(ctx); err != nil || h.Status != apitype.HealthOK || h.AuditChain != "" {
		t.Fatalf("Health = %+v, %v", h, err)
	}
	if v, err := s.c.Version(ctx); err != nil || v.Version == "" || v.GoVersion == "" {
		t.Fatalf("Version = %+v, %v", v, err)
	}
}

func TestHealthzUnhealthy(t *testing.T) {
	s := serve(t, Deps{})
	s.st.Close()
	h, err := s.c.Health(context.Background())
	if statusOf(err) != http.StatusServiceUnavailable || h.Status != apitype.HealthUnhealthy || h.Store == "" {
		t.Fatalf("Health with a closed store = %+v, %v", h, err)
	}
}

func TestPeerCredentials(t *testing.T) {
	s := serve(t, Deps{})
	w, err := s.c.Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p := w.Peer; p == nil || p.UID != uint32(os.Getuid()) || p.GID != uint32(os.Getgid()) || p.PID != uint32(os.Getpid()) {
		t.Fatalf("peer = %+v, want uid %d gid %d pid %d", p, os.Getuid(), os.Getgid(), os.Getpid())
	}
}

func TestAudit(t *testing.T) {
	s := serve(t, Deps{})
	ctx := context.Background()
	for _, a := range []string{"test.one", "test.two", "test.three"} {
		if err := s.st.Audit(ctx, store.AuditEntry{Actor: "test", Action: a, Detail: map[string]int{"n": len(a)}}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.c.Audit(ctx, 1, 1)
	if err != nil || len(recs) != 1 || recs[0].Action != "test.two" || string(recs[0].Detail) != `{"n":8}` || recs[0].Seq != 2 {
		t.Fatalf("Audit(1, 1) = %+v, %v", recs, err)
	}
	all, err := s.c.Audit(ctx, 0, 0)
	if err != nil || len(all) != 3 || all[1].PrevHash != all[0].Hash {
		t.Fatalf("Audit(0, default) = %+v, %v", all, err)
	}
	if none, err := s.c.Audit(ctx, 3, 10); err != nil || none == nil || len(none) != 0 {
		t.Fatalf("Audit past the head = %#v, %v; want an empty list", none, err)
	}
	tests := []struct {
		after int64
		limit int
		want  string
	}{
		{-1, 10, `query parameter after: "-1" is not a non-negative integer`},
		{0, -5, `query parameter limit: "-5" is not a non-negative integer`},
		{0, 5000, "query parameter limit: must be between 1 and 1000"},
	}
	for _, tt := range tests {
		_, err := s.c.Audit(ctx, tt.after, tt.limit)
		var ae *apiclient.Error
		if !errors.As(err, &ae) || ae.Status != 400 || ae.Message != tt.want {
			t.Errorf("Audit(%d, %d) = %v, want 400 %q", tt.after, tt.limit, err, tt.want)
		}
	}
	if code, body := raw(t, s.sock, "GET /api/v1/nope HTTP/1.1\r\nHost: x\r\n\r\n"); code != 404 || !strings.Contains(body, "Cannot GET") {
		t.Errorf("unknown route = %d %q", code, body)
	}
}

func TestAuditStatus(t *testing.T) {
	ctx := context.Background()
	if _, err := serve(t, Deps{}).c.AuditStatus(ctx); statusOf(err) != http.StatusServiceUnavailable {
		t.Errorf("AuditStatus without a verified chain = %v, want 503", err)
	}
	chain := &apitype.AuditStatus{State: apitype.ChainTruncated, Records: 4, HeadSeq: 4, AnchorSeq: 9, Problem: "records 5 to 9 are gone",
		CheckedAt: time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)}
	s := serve(t, Deps{AuditChain: chain})
	got, err := s.c.AuditStatus(ctx)
	if err != nil || got != *chain {
		t.Errorf("AuditStatus = %+v, %v; want %+v", got, err, *chain)
	}
	// A bad chain shows in /healthz but does not make omertad unhealthy.
	if h, err := s.c.Health(ctx); err != nil || h.Status != apitype.HealthOK || h.AuditChain != apitype.ChainTruncated {
		t.Errorf("Health = %+v, %v", h, err)
	}
}

// TestStrictRouting: a route has one spelling. Before, fiber's defaults
// answered 200 for all of these.
func TestStrictRouting(t *testing.T) {
	s := serve(t, Deps{})
	for _, path := range []string{"/API/V1/AUDIT", "/api/v1/Audit", "/api/v1/audit/", "/HEALTHZ", "/healthz/", "/api/v1/version/", "/api/v1//version"} {
		if code, body := raw(t, s.sock, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); code != 404 {
			t.Errorf("GET %s = %d %q, want 404", path, code, body)
		}
	}
	if code, _ := raw(t, s.sock, "GET /api/v1/audit HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 {
		t.Errorf("GET /api/v1/audit = %d", code)
	}
}

// TestBodyLimit: a GET-only API reads no more than DefaultLimits.Body of a
// body. Before, 4 MB were read into memory for each request.
func TestBodyLimit(t *testing.T) {
	s := serve(t, Deps{})
	req := func(n int) string {
		return fmt.Sprintf("GET /api/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("a", n))
	}
	if code, body := raw(t, s.sock, req(DefaultLimits.Body+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("body of %d bytes = %d %q, want 413", DefaultLimits.Body+1, code, body)
	}
	if code, body := raw(t, s.sock, req(1<<20)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("body of 1 MiB = %d %q, want 413", code, body)
	}
	if code, body := raw(t, s.sock, req(1024)); code != 200 {
		t.Errorf("body of 1 KiB = %d %q, want 200", code, body)
	}
	// Headers beyond the limit are refused too.
	big := "GET /api/v1/version HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("b", DefaultLimits.Header) + "\r\n\r\n"
	if code, body := raw(t, s.sock, big); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("headers over %d bytes = %d %q, want 431", DefaultLimits.Header, code, body)
	}
}

// TestConnectionCap: connections beyond Limits.Conns are not accepted (they
// wait in the backlog, unread) until a served one closes.
func TestConnectionCap(t *testing.T) {
	s := serve(t, Deps{Limits: Limits{Conns: 2}})
	// Two clients hold their slot with a request that never ends.
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("unix", s.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		held = append(held, c)
	}
	third, err := net.Dial("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var ne net.Error
	if n, err := third.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("third connection answered (%d bytes, %v) while two held the cap of 2", n, err)
	}
	held[0].Close()
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("third connection after a slot freed: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestManyLargeBodiesStayBounded: 200 clients each start a 4 MiB body and
// push 1 MiB of it. Before, each connection's body was read into memory
// (RSS went from 25 MB to 857 MB); now a body over the limit is refused on
// its Content-Length and connections over the cap wait unread.
func TestManyLargeBodiesStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 200 MiB through unix sockets")
	}
	s := serve(t, Deps{})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	chunk := make([]byte, 1<<20)
	var wg sync.WaitGroup
	conns := make(chan net.Conn, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", s.sock)
			if err != nil {
				return
			}
			conns <- c
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET /api/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n")
			c.Write(chunk) // refused early: a broken pipe is the expected end
		}()
	}
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	close(conns)
	for c := range conns {
		c.Close()
	}
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use grew by %d KiB", grew>>10)
	if grew > 48<<20 {
		t.Errorf("heap in use grew by %d MiB with 200 clients holding large bodies; want under 48 MiB", grew>>20)
	}
}

// TestSlowRequestDropped: a client that never finishes its request loses
// its connection (and its slot under the cap) after Limits.Read.
func TestSlowRequestDropped(t *testing.T) {
	s := serve(t, Deps{Limits: Limits{Read: 200 * time.Millisecond}})
	for _, partial := range []string{"", "GET /healthz HTTP/1.1\r\nHost: x\r\n", "GET /api/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"} {
		c, err := net.Dial("unix", s.sock)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, partial)
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c) // a 408 answer, then the close
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("after %q: connection still open after 5s; want it closed after 200ms", partial)
		} else if took := time.Since(start); took < 150*time.Millisecond {
			t.Errorf("after %q: closed after %v, before the read limit", partial, took)
		}
	}
}
