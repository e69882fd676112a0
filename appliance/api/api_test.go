package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/store"
)

// serve starts the API on a real unix socket in a temp dir and returns an
// HTTP client bound to it.
func serve(t *testing.T) (*http.Client, *store.Store) {
	t.Helper()
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Store: st})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}, st
}

func get(t *testing.T, c *http.Client, path string, into any) int {
	t.Helper()
	resp, err := c.Get("http://omertad" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %v in %q", path, err, body)
		}
	}
	return resp.StatusCode
}

func TestHealthzAndVersion(t *testing.T) {
	c, _ := serve(t)
	var h Health
	if code := get(t, c, "/healthz", &h); code != 200 || h.Status != "ok" {
		t.Fatalf("/healthz = %d %+v", code, h)
	}
	var v map[string]string
	if code := get(t, c, "/api/v1/version", &v); code != 200 || v["version"] == "" || v["go_version"] == "" {
		t.Fatalf("/api/v1/version = %d %v", code, v)
	}
}

func TestHealthzUnhealthy(t *testing.T) {
	c, st := serve(t)
	st.Close()
	var h Health
	if code := get(t, c, "/healthz", &h); code != http.StatusServiceUnavailable || h.Status != "unhealthy" {
		t.Fatalf("/healthz with a closed store = %d %+v", code, h)
	}
}

func TestPeerCredentials(t *testing.T) {
	c, _ := serve(t)
	var p Peer
	if code := get(t, c, "/api/v1/whoami", &p); code != 200 {
		t.Fatalf("/api/v1/whoami = %d", code)
	}
	if p.UID != uint32(os.Getuid()) || p.GID != uint32(os.Getgid()) || p.PID != uint32(os.Getpid()) {
		t.Fatalf("peer = %+v, want uid %d gid %d pid %d", p, os.Getuid(), os.Getgid(), os.Getpid())
	}
}

func TestAudit(t *testing.T) {
	c, st := serve(t)
	for _, a := range []string{"test.one", "test.two", "test.three"} {
		if err := st.Audit(context.Background(), store.AuditEntry{Actor: "test", Action: a}); err != nil {
			t.Fatal(err)
		}
	}
	var recs []store.AuditRecord
	if code := get(t, c, "/api/v1/audit?after=1&limit=1", &recs); code != 200 || len(recs) != 1 || recs[0].Action != "test.two" {
		t.Fatalf("/api/v1/audit = %d %+v", code, recs)
	}
	tests := []struct{ query, want string }{
		{"after=-1", `query parameter after: "-1" is not a non-negative integer`},
		{"limit=abc", `query parameter limit: "abc" is not a non-negative integer`},
		{"limit=5000", "query parameter limit: must be between 1 and 1000"},
	}
	for _, tt := range tests {
		var e Error
		if code := get(t, c, "/api/v1/audit?"+tt.query, &e); code != 400 || e.Error != tt.want {
			t.Errorf("?%s = %d %q, want 400 %q", tt.query, code, e.Error, tt.want)
		}
	}
	var e Error
	if code := get(t, c, "/api/v1/nope", &e); code != 404 || !strings.Contains(e.Error, "Cannot GET") {
		t.Errorf("unknown route = %d %q", code, e.Error)
	}
}
