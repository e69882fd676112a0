// Package daemon is omertad's lifecycle: open state, serve the API on a unix
// socket, tell systemd how it is going, keep the watchdog fed only while the
// daemon is healthy, and stop in bounded time.
//
// It knows no domain: the caller (cmd/omerta) lists the services to run and
// the handles the API serves from, in one explicit Wire function.
package daemon

import (
	"context"
	"log/slog"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
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
// error from Run stops the daemon. A service that answers API requests hands
// its query side to the API through Wiring.API.
type Service interface {
	Name() string
	Run(ctx context.Context) error
}

// Deps are the handles omertad opens for the services it runs.
type Deps struct {
	Store  *store.Store
	Config config.Config
	Logger *slog.Logger
	// Now is the daemon's clock, also the store's for audit timestamps.
	Now func() time.Time
}

// Wiring is what a Wire function builds from Deps: the services to run, in
// order, and the domain handles the API serves from. The daemon fills in
// API.Store, API.Logger and API.AuditChain itself.
type Wiring struct {
	Services []Service
	API      api.Deps
}

// Wire builds the daemon's services once the store is open.
type Wire func(Deps) (Wiring, error)

// Option configures Run.
type Option func(*options)

type options struct {
	notifier Notifier
	wire     Wire
	schemas  []store.Schema
	now      func() time.Time
	watchdog time.Duration // overrides $WATCHDOG_USEC, for tests
}

// WithNotifier replaces the sd_notify sender.
func WithNotifier(n Notifier) Option { return func(o *options) { o.notifier = n } }

// WithWiring sets the function that builds the services and the API's domain
// handles; without it omertad serves only its own routes.
func WithWiring(w Wire) Option { return func(o *options) { o.wire = w } }

// WithSchemas registers the domains' tables with the store (see
// store.WithSchemas).
func WithSchemas(s ...store.Schema) Option {
	return func(o *options) { o.schemas = append(o.schemas, s...) }
}

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// stopAuditTimeout bounds the write of the daemon.stop record. It has its
// own budget because the shutdown's may be spent by then: a request held
// open until the shutdown deadline must not cost the audit log its record.
const stopAuditTimeout = 2 * time.Second

// Run runs omertad until ctx is cancelled (SIGTERM) or a part fails. The
// steps, in order: socket, state (with the audit chain verified), API and
// services, the start record, serving, self-check, READY and the watchdog,
// then a bounded stop.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) error {
	d := newDaemon(cfg, log, opts)
	// The socket first: a second omertad must fail before it touches the
	// state of the first.
	ln, err := listenUnix(cfg.Daemon.Socket, cfg.Daemon.SocketGroup)
	if err != nil {
		return err
	}
	defer ln.Close() // also unlinks the socket

	st, chain, err := d.openState(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	srv, services, err := d.build(st, chain)
	if err != nil {
		return err
	}
	if err := d.recordStart(ctx, st, chain); err != nil {
		return err
	}
	r := d.start(ctx, ln, srv, services)
	runErr := d.ready(ctx, st, r)
	if runErr == nil {
		runErr = d.wait(ctx, r)
	}
	d.stop(st, srv, r, runErr)
	return runErr
}
