package apiclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostile serves h on a unix socket: a server that says whatever it likes.
func hostile(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "apiclient")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestResponseCapped(t *testing.T) {
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"version":"`))
		for range 64 {
			w.Write([]byte(strings.Repeat("a", 1<<10)))
		}
		w.Write([]byte(`"}`))
	})
	c := New(sock, WithMaxResponse(32<<10))
	defer c.Close()
	if _, err := c.Version(context.Background()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Version from a server sending 64 KiB with a 32 KiB cap = %v, want ErrTooLarge", err)
	}
	if v, err := New(sock).Version(context.Background()); err != nil || len(v.Version) != 64<<10 {
		t.Fatalf("same answer under the default cap: %d bytes, %v", len(v.Version), err)
	}
}

func TestErrors(t *testing.T) {
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/audit":
			if r.URL.Query().Get("after") != "7" || r.URL.Query().Get("limit") != "3" {
				http.Error(w, "bad query "+r.URL.RawQuery, 500)
				return
			}
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"line one\r\n\u001b[2KVERIFIED"}`))
		case "/api/v1/whoami":
			w.WriteHeader(502)
			w.Write([]byte("<html>" + strings.Repeat("x", 5000)))
		case "/api/v1/version":
			w.Write([]byte(`{"version": 1}`))
		case "/healthz":
			w.WriteHeader(503)
			w.Write([]byte(`{"status":"unhealthy","store":"disk I/O error"}`))
		case "/api/v1/probe":
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
		}
	})
	c := New(sock, WithTimeout(5*time.Second))
	defer c.Close()
	ctx := context.Background()

	_, err := c.Audit(ctx, 7, 3)
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.Message != "line one\r\n\x1b[2KVERIFIED" {
		t.Fatalf("Audit = %#v, want *Error 400 with the server's message", err)
	}
	// What Error() prints is quoted: no control character reaches a terminal.
	if s := err.Error(); strings.ContainsAny(s, "\r\n\x1b") || !strings.Contains(s, `"line one\r\n\x1b[2KVERIFIED"`) {
		t.Errorf("Error() = %q", s)
	}

	_, err = c.Identity(ctx)
	if !errors.As(err, &e) || e.Status != 502 || len(e.Message) > maxMessage+len("…") || !strings.HasPrefix(e.Message, "<html>") {
		t.Errorf("Identity from a non-JSON error = %v", err)
	}

	if _, err := c.Version(ctx); err == nil || errors.As(err, &e) {
		t.Errorf("Version with a number for a string = %v, want a decoding error", err)
	}

	h, err := c.Health(ctx)
	if !errors.As(err, &e) || e.Status != 503 || h.Status != "unhealthy" || h.Store != "disk I/O error" {
		t.Errorf("Health = %+v, %v", h, err)
	}

	if _, err := c.Probe(ctx); !errors.As(err, &e) || e.Status != 302 {
		t.Errorf("Probe answered by a redirect = %v, want a 302 *Error, not followed", err)
	}
}

func TestNoDaemon(t *testing.T) {
	c := New(filepath.Join(t.TempDir(), "absent.sock"))
	_, err := c.Health(context.Background())
	var e *Error
	if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), "absent.sock") {
		t.Fatalf("Health without a daemon = %v, want a dial error naming the socket", err)
	}
}
