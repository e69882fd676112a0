package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/version"
)

// daemon is one run of omertad: its configuration and the steps of Run.
type daemon struct {
	cfg config.Config
	log *slog.Logger
	o   options
}

func newDaemon(cfg config.Config, log *slog.Logger, opts []Option) *daemon {
	o := options{notifier: sdNotifier{}, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return &daemon{cfg: cfg, log: log, o: o}
}

func (d *daemon) status(s string) {
	d.log.Info(s)
	if err := d.o.notifier.Notify("STATUS=" + s); err != nil {
		d.log.Warn("sd_notify failed", "err", err)
	}
}

// openState opens the database and verifies its audit chain.
func (d *daemon) openState(ctx context.Context) (*store.Store, *apitype.AuditStatus, error) {
	d.status("opening state in " + d.cfg.Daemon.StateDir)
	if err := ensureStateDir(d.cfg.Daemon.StateDir); err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, d.cfg.StateDBPath(),
		store.WithClock(d.o.now), store.WithSchemas(d.o.schemas...))
	if err != nil {
		return nil, nil, err
	}
	chain, err := d.checkChain(ctx, st)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, chain, nil
}

// build runs the Wire function and makes the API from what it returns.
func (d *daemon) build(st *store.Store, chain *apitype.AuditStatus) (*api.Server, []Service, error) {
	var w Wiring
	if d.o.wire != nil {
		var err error
		if w, err = d.o.wire(Deps{Store: st, Config: d.cfg, Logger: d.log, Now: d.o.now}); err != nil {
			return nil, nil, fmt.Errorf("starting services: %w", err)
		}
	}
	w.API.Store, w.API.Logger, w.API.AuditChain = st, d.log, chain
	return api.New(w.API), w.Services, nil
}

func (d *daemon) recordStart(ctx context.Context, st *store.Store, chain *apitype.AuditStatus) error {
	info := version.Get()
	if err := st.Audit(ctx, store.AuditEntry{Actor: "omertad", Action: "daemon.start", Detail: map[string]any{
		"version": info.Version, "commit": info.Commit, "pid": os.Getpid(), "profile": d.cfg.Profile,
		"audit_chain": chain.State,
	}}); err != nil {
		return fmt.Errorf("recording start in the audit log: %w", err)
	}
	return nil
}

// running is what start set going and stop must end.
type running struct {
	failed         chan error
	services       sync.WaitGroup
	cancelServices context.CancelFunc
	svcCtx         context.Context
	watchdogDone   chan struct{} // nil until the watchdog runs
}

// start serves the API on ln and runs every service.
func (d *daemon) start(ctx context.Context, ln net.Listener, srv *api.Server, services []Service) *running {
	r := &running{failed: make(chan error, len(services)+1)}
	r.svcCtx, r.cancelServices = context.WithCancel(ctx)
	go func() {
		if err := srv.Serve(ln); err != nil {
			r.failed <- fmt.Errorf("serving API on %s: %w", d.cfg.Daemon.Socket, err)
		}
	}()
	for _, svc := range services {
		r.services.Add(1)
		go func() {
			defer r.services.Done()
			if err := svc.Run(r.svcCtx); err != nil && !errors.Is(err, context.Canceled) {
				r.failed <- fmt.Errorf("service %s: %w", svc.Name(), err)
			}
		}()
	}
	return r
}

// ready sends READY=1 only once a real request has gone through the socket,
// the router and the store: "ready" means an operator's call will work.
// Then it starts the watchdog.
func (d *daemon) ready(ctx context.Context, st *store.Store, r *running) error {
	if err := selfCheck(ctx, d.cfg.Daemon.Socket); err != nil {
		if ctx.Err() != nil {
			// SIGTERM while starting is a stop, not a failed start:
			// systemd asked, and the exit status must say it went well.
			return nil
		}
		return fmt.Errorf("API self-check on %s: %w", d.cfg.Daemon.Socket, err)
	}
	d.o.notifier.Notify("READY=1")
	d.status(fmt.Sprintf("serving API on %s (profile %s)", d.cfg.Daemon.Socket, d.cfg.Profile))

	interval := d.o.watchdog
	if interval == 0 {
		interval, _ = sddaemon.SdWatchdogEnabled(false)
	}
	r.watchdogDone = make(chan struct{})
	go func() {
		defer close(r.watchdogDone)
		watchdog(r.svcCtx, interval, st, d.o.notifier, d.log)
	}()
	return nil
}

// wait blocks until ctx ends (nil) or a part fails (its error).
func (d *daemon) wait(ctx context.Context, r *running) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-r.failed:
		d.log.Error("stopping after failure", "err", err)
		return err
	}
}

// stop ends the API and the services within daemon.shutdown_timeout and
// records why omertad stopped.
func (d *daemon) stop(st *store.Store, srv *api.Server, r *running, runErr error) {
	d.o.notifier.Notify("STOPPING=1")
	d.status("stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), d.cfg.Daemon.ShutdownTimeout)
	defer cancel()
	r.cancelServices()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		d.log.Warn("API shutdown", "err", err)
	}
	waitOrTimeout(shutdownCtx, &r.services)
	if r.watchdogDone != nil {
		<-r.watchdogDone
	}
	reason := "signal"
	if runErr != nil {
		reason = runErr.Error()
	}
	actx, acancel := context.WithTimeout(context.Background(), stopAuditTimeout)
	defer acancel()
	if err := st.Audit(actx, store.AuditEntry{Actor: "omertad", Action: "daemon.stop", Detail: map[string]string{"reason": reason}}); err != nil {
		d.log.Warn("recording stop in the audit log", "err", err)
	}
	d.log.Info("stopped")
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

// selfCheck asks the daemon's own socket for /healthz, as a client would.
func selfCheck(ctx context.Context, socket string) error {
	c := apiclient.New(socket, apiclient.WithTimeout(5*time.Second))
	defer c.Close()
	h, err := c.Health(ctx)
	if err != nil {
		return err
	}
	if h.Status != apitype.HealthOK {
		return fmt.Errorf("/healthz answered status %q", h.Status)
	}
	return nil
}
