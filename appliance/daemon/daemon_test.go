package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/store"
)

func testConfig(t *testing.T) config.Config {
	t.Helper()
	// Unix socket paths are limited to 107 bytes; t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "omertad")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := config.Default()
	cfg.Daemon.StateDir = filepath.Join(dir, "state")
	cfg.Daemon.Socket = filepath.Join(dir, "run", "omertad.sock")
	cfg.Daemon.ShutdownTimeout = 5 * time.Second
	return cfg
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// notifySocket listens like systemd does and returns the messages it gets.
func notifySocket(t *testing.T) (<-chan string, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "notify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				msgs <- line
			}
		}
	}()
	return msgs, path
}

func start(t *testing.T, ctx context.Context, cfg config.Config, opts ...Option) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, quiet, opts...) }()
	return done
}

func waitFor(t *testing.T, msgs <-chan string, want string, seen *[]string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			*seen = append(*seen, m)
			if m == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q from the daemon; got %q", want, *seen)
		}
	}
}

// TestNotifySequence runs the daemon against the real go-systemd sender and
// a unixgram socket standing in for systemd.
func TestNotifySequence(t *testing.T) {
	msgs, sock := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := start(t, ctx, cfg, func(o *options) { o.watchdog = 100 * time.Millisecond })

	var seen []string
	waitFor(t, msgs, "READY=1", &seen)
	if len(seen) < 2 || !strings.HasPrefix(seen[0], "STATUS=opening state") {
		t.Errorf("messages before READY = %q, want STATUS lines first", seen)
	}
	waitFor(t, msgs, "WATCHDOG=1", &seen)
	waitFor(t, msgs, "WATCHDOG=1", &seen)
	cancel()
	waitFor(t, msgs, "STOPPING=1", &seen)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := os.Stat(cfg.Daemon.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after stop: %v", err)
	}
	// The audit log records both ends of the run.
	st, err := store.Open(context.Background(), cfg.StateDBPath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.AuditLog(context.Background(), 0, 10)
	if err != nil || len(recs) != 2 || recs[0].Action != "daemon.start" || recs[1].Action != "daemon.stop" {
		t.Fatalf("audit = %+v, %v; want daemon.start, daemon.stop", recs, err)
	}
}

// TestWatchdogWithheldWhenUnhealthy closes the store under the daemon and
// checks that the watchdog pings stop.
func TestWatchdogWithheldWhenUnhealthy(t *testing.T) {
	msgs := make(chan string, 100)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		watchdog(ctx, 40*time.Millisecond, st, chanNotifier(msgs), quiet)
		close(done)
	}()
	if m := <-msgs; m != "WATCHDOG=1" {
		t.Fatalf("got %q", m)
	}
	st.Close()
	// Drain a ping that may already be in flight, then expect silence.
	time.Sleep(60 * time.Millisecond)
	for len(msgs) > 0 {
		<-msgs
	}
	select {
	case m := <-msgs:
		t.Fatalf("watchdog pinged %q with a closed store", m)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	<-done
}

type chanNotifier chan string

func (c chanNotifier) Notify(s string) error { c <- s; return nil }

func TestStartFailures(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, cfg *config.Config)
		want    string
	}{
		{"socket in use", func(t *testing.T, cfg *config.Config) {
			os.MkdirAll(filepath.Dir(cfg.Daemon.Socket), 0o755)
			ln, err := net.Listen("unix", cfg.Daemon.Socket)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}, "socket is in use by another process"},
		{"socket path is a file", func(t *testing.T, cfg *config.Config) {
			os.MkdirAll(filepath.Dir(cfg.Daemon.Socket), 0o755)
			os.WriteFile(cfg.Daemon.Socket, []byte("x"), 0o600)
		}, "path exists and is not a socket"},
		{"state dir under a file", func(t *testing.T, cfg *config.Config) {
			f := filepath.Join(filepath.Dir(cfg.Daemon.StateDir), "file")
			os.WriteFile(f, nil, 0o600)
			cfg.Daemon.StateDir = filepath.Join(f, "state")
		}, "not a directory"},
		{"corrupt database", func(t *testing.T, cfg *config.Config) {
			os.MkdirAll(cfg.Daemon.StateDir, 0o700)
			os.WriteFile(cfg.StateDBPath(), []byte(strings.Repeat("garbage ", 1000)), 0o600)
		}, "database is corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.prepare(t, &cfg)
			err := <-start(t, context.Background(), cfg, WithNotifier(chanNotifier(make(chan string, 100))))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
			// A failed start leaves no socket of its own behind.
			if tt.name != "socket in use" && tt.name != "socket path is a file" {
				if _, err := os.Stat(cfg.Daemon.Socket); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("socket left behind: %v", err)
				}
			}
		})
	}
}

func TestUnwritableStateDirAsUser(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes through directory modes; the 'state dir under a file' case covers root")
	}
	cfg := testConfig(t)
	os.MkdirAll(cfg.Daemon.StateDir, 0o500)
	err := <-start(t, context.Background(), cfg, WithNotifier(chanNotifier(make(chan string, 100))))
	if err == nil || !strings.Contains(err.Error(), "is not writable") {
		t.Fatalf("Run = %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	cfg := testConfig(t)
	os.MkdirAll(filepath.Dir(cfg.Daemon.Socket), 0o755)
	ln, err := net.Listen("unix", cfg.Daemon.Socket)
	if err != nil {
		t.Fatal(err)
	}
	// Leave the socket file without a listener, as SIGKILL would.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	msgs := make(chan string, 100)
	done := start(t, ctx, cfg, WithNotifier(chanNotifier(msgs)))
	var seen []string
	waitFor(t, msgs, "READY=1", &seen)
	fi, err := os.Stat(cfg.Daemon.Socket)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, %v; want 0660", fi.Mode().Perm(), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestServiceFailureStopsDaemon(t *testing.T) {
	cfg := testConfig(t)
	boom := errors.New("boom")
	err := <-start(t, context.Background(), cfg,
		WithNotifier(chanNotifier(make(chan string, 100))),
		WithWiring(func(Deps) (Wiring, error) {
			return Wiring{Services: []Service{failingService{boom}}}, nil
		}))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "service failing") {
		t.Fatalf("Run = %v, want the service's error", err)
	}
	recs := auditLog(t, cfg)
	if last := recs[len(recs)-1]; last.Action != "daemon.stop" || !strings.Contains(string(last.Detail), "boom") {
		t.Errorf("last record = %s %s, want daemon.stop with the service's error", last.Action, last.Detail)
	}
}

type failingService struct{ err error }

func (failingService) Name() string                { return "failing" }
func (f failingService) Run(context.Context) error { time.Sleep(50 * time.Millisecond); return f.err }

func TestWiringFailureStopsStart(t *testing.T) {
	cfg := testConfig(t)
	boom := errors.New("no such device")
	err := <-start(t, context.Background(), cfg, WithNotifier(chanNotifier(make(chan string, 100))),
		WithWiring(func(Deps) (Wiring, error) { return Wiring{}, boom }))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "starting services") {
		t.Fatalf("Run = %v, want the wiring's error", err)
	}
}

// TestWiringServesDomainRoutes: what the Wire function returns is what runs
// and what the API serves, built from the Deps the daemon opened.
func TestWiringServesDomainRoutes(t *testing.T) {
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs := make(chan string, 100)
	clock := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	var got Deps
	ran := make(chan struct{})
	done := start(t, ctx, cfg, WithNotifier(chanNotifier(msgs)), WithClock(func() time.Time { return clock }),
		WithWiring(func(d Deps) (Wiring, error) {
			got = d
			return Wiring{Services: []Service{runOnce{ran}}, API: api.Deps{Probe: noProbe{}}}, nil
		}))
	var seen []string
	waitFor(t, msgs, "READY=1", &seen)
	<-ran
	if got.Store == nil || got.Logger == nil || got.Now == nil || !got.Now().Equal(clock) || got.Config.Daemon.Socket != cfg.Daemon.Socket {
		t.Errorf("Deps = %+v", got)
	}
	c := apiclient.New(cfg.Daemon.Socket)
	defer c.Close()
	var ae *apiclient.Error
	if _, err := c.Probe(ctx); !errors.As(err, &ae) || ae.Status != 404 || ae.Message != probe.ErrNoProbe.Error() {
		t.Errorf("Probe = %v, want the wired handle's ErrNoProbe as a 404", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if recs := auditLog(t, cfg); !recs[0].At.Equal(clock) {
		t.Errorf("audit time = %v, want the daemon's clock %v", recs[0].At, clock)
	}
}

type runOnce struct{ ran chan struct{} }

func (runOnce) Name() string { return "once" }
func (r runOnce) Run(ctx context.Context) error {
	close(r.ran)
	<-ctx.Done()
	return ctx.Err()
}

type noProbe struct{}

func (noProbe) Current(context.Context) (probe.Current, error) {
	return probe.Current{}, probe.ErrNoProbe
}
func (noProbe) Drift(context.Context, int) ([]probe.StoredDrift, error) { return nil, nil }

func auditLog(t *testing.T, cfg config.Config) []store.AuditRecord {
	t.Helper()
	st, err := store.Open(context.Background(), cfg.StateDBPath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.AuditLog(context.Background(), 0, 1000)
	if err != nil || len(recs) == 0 {
		t.Fatalf("audit log = %v, %v", recs, err)
	}
	return recs
}

// TestStopRecordedAfterShutdownDeadline: SIGTERM while a request is held open
// past daemon.shutdown_timeout. Before, daemon.stop was written with the
// shutdown's context, expired by then, and was lost.
func TestStopRecordedAfterShutdownDeadline(t *testing.T) {
	cfg := testConfig(t)
	cfg.Daemon.ShutdownTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs := make(chan string, 100)
	done := start(t, ctx, cfg, WithNotifier(chanNotifier(msgs)))
	var seen []string
	waitFor(t, msgs, "READY=1", &seen)

	// A request whose headers never end keeps its connection active.
	conn, err := net.Dial("unix", cfg.Daemon.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /api/v1/audit HTTP/1.1\r\nHost: omertad\r\n")
	time.Sleep(100 * time.Millisecond) // let the server read the first bytes

	stopAt := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if took := time.Since(stopAt); took < cfg.Daemon.ShutdownTimeout {
		t.Fatalf("stopped in %v, before the shutdown deadline %v: the held request did not hold it", took, cfg.Daemon.ShutdownTimeout)
	}
	recs := auditLog(t, cfg)
	if last := recs[len(recs)-1]; last.Action != "daemon.stop" {
		t.Fatalf("last audit record = %s, want daemon.stop", last.Action)
	}
}
