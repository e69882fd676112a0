// Package daemon is omertad's lifecycle: open state, serve the API on a unix
// socket, tell systemd how it is going, keep the watchdog fed only while the
// daemon is healthy, and stop in bounded time.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/version"
)

// Notifier sends sd_notify messages. The default talks to $NOTIFY_SOCKET and
// does nothing outside systemd.
type Notifier interface {
	Notify(state string) error
}

type sdNotifier struct{}

func (sdNotifier) Notify(state string) error {
	_, err := sddaemon.SdNotify(false, state)
	return err
}

// Service is a long-running part of the daemon owned by another domain (the
// probe monitor, later the agent reconciler). Run blocks until ctx ends; an
// error from Run stops the daemon.
type Service interface {
	Name() string
	Run(ctx context.Context) error
	Routes(r fiber.Router)
}

// ServiceFactory builds a Service once the store is open.
type ServiceFactory func(st *store.Store, cfg config.Config, log *slog.Logger) (Service, error)

// Option configures Run.
type Option func(*options)

type options struct {
	notifier Notifier
	services []ServiceFactory
	watchdog time.Duration // overrides $WATCHDOG_USEC, for tests
}

// WithNotifier replaces the sd_notify sender.
func WithNotifier(n Notifier) Option { return func(o *options) { o.notifier = n } }

// WithServices adds services started after the store opens.
func WithServices(f ...ServiceFactory) Option {
	return func(o *options) { o.services = append(o.services, f...) }
}

// StateFile is the database's name inside the state directory.
const StateFile = "state.db"

// Run runs omertad until ctx is cancelled (SIGTERM) or a part fails.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (err error) {
	o := options{notifier: sdNotifier{}}
	for _, opt := range opts {
		opt(&o)
	}
	status := func(s string) {
		log.Info(s)
		if err := o.notifier.Notify("STATUS=" + s); err != nil {
			log.Warn("sd_notify failed", "err", err)
		}
	}

	// The socket first: a second omertad must fail before it touches the
	// state of the first.
	ln, err := listenUnix(cfg.Daemon.Socket, cfg.Daemon.SocketGroup)
	if err != nil {
		return err
	}
	defer ln.Close() // also unlinks the socket

	status("opening state in " + cfg.Daemon.StateDir)
	if err := ensureStateDir(cfg.Daemon.StateDir); err != nil {
		return err
	}
	st, err := store.Open(ctx, filepath.Join(cfg.Daemon.StateDir, StateFile))
	if err != nil {
		return err
	}
	defer st.Close()

	srv := api.New(api.Options{Store: st, Logger: log})

	svcCtx, cancelServices := context.WithCancel(ctx)
	defer cancelServices()
	var services []Service
	for _, f := range o.services {
		svc, err := f(st, cfg, log)
		if err != nil {
			return fmt.Errorf("starting service: %w", err)
		}
		svc.Routes(srv.V1())
		services = append(services, svc)
	}

	info := version.Get()
	if err := st.Audit(ctx, store.AuditEntry{Actor: "omertad", Action: "daemon.start", Detail: map[string]any{
		"version": info.Version, "commit": info.Commit, "pid": os.Getpid(), "profile": cfg.Profile,
	}}); err != nil {
		return fmt.Errorf("recording start in the audit log: %w", err)
	}

	failed := make(chan error, len(services)+1)
	go func() {
		if err := srv.Serve(ln); err != nil {
			failed <- fmt.Errorf("serving API on %s: %w", cfg.Daemon.Socket, err)
		}
	}()
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.Run(svcCtx); err != nil && !errors.Is(err, context.Canceled) {
				failed <- fmt.Errorf("service %s: %w", svc.Name(), err)
			}
		}()
	}

	// READY=1 only once a real request has gone through the socket, the
	// router and the store: "ready" means an operator's call will work.
	if err := selfCheck(ctx, cfg.Daemon.Socket); err != nil {
		return fmt.Errorf("API self-check on %s: %w", cfg.Daemon.Socket, err)
	}
	o.notifier.Notify("READY=1")
	status(fmt.Sprintf("serving API on %s (profile %s)", cfg.Daemon.Socket, cfg.Profile))

	wdInterval := o.watchdog
	if wdInterval == 0 {
		wdInterval, _ = sddaemon.SdWatchdogEnabled(false)
	}
	wdDone := make(chan struct{})
	go func() {
		defer close(wdDone)
		watchdog(svcCtx, wdInterval, st, o.notifier, log)
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-failed:
		log.Error("stopping after failure", "err", runErr)
	}

	o.notifier.Notify("STOPPING=1")
	status("stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Daemon.ShutdownTimeout)
	defer cancel()
	cancelServices()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("API shutdown", "err", err)
	}
	waitOrTimeout(shutdownCtx, &wg)
	<-wdDone
	reason := "signal"
	if runErr != nil {
		reason = runErr.Error()
	}
	if err := st.Audit(shutdownCtx, store.AuditEntry{Actor: "omertad", Action: "daemon.stop", Detail: map[string]string{"reason": reason}}); err != nil {
		log.Warn("recording stop in the audit log", "err", err)
	}
	log.Info("stopped")
	return runErr
}

func waitOrTimeout(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// watchdog pings systemd at half the interval, but only after the store
// answers: a daemon whose database hangs must be restarted, not kept alive
// by a timer that knows nothing.
func watchdog(ctx context.Context, interval time.Duration, st *store.Store, n Notifier, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, interval/4)
			err := st.Ping(pctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					log.Error("health check failed; withholding watchdog ping", "err", err)
				}
				continue
			}
			n.Notify("WATCHDOG=1")
		}
	}
}

func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	// MkdirAll succeeds on an existing read-only directory; find out now
	// rather than half-way through opening the database.
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("state directory %s is not writable: %w", dir, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

func selfCheck(ctx context.Context, socket string) error {
	c := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://omertad/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz answered %s", resp.Status)
	}
	return nil
}
