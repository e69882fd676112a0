// Package ui is the appliance's web console: an unprivileged HTTPS front
// for people (server-rendered pages, a few small scripts for the live
// parts, every asset embedded) and for automation (/api/v1, forwarded to
// omertad for an allow-list of routes).
//
// The console decides nothing about who may do what: it carries the
// session in its cookie (or an API token) to omertad on every call, and
// omertad checks the role. The role's actions, as omertad reports them,
// only decide which controls a page renders. The console reaches omertad
// through the Backend seam alone, implemented over appliance/apiclient;
// it never opens the database, the containerd socket or the token file
// (appliance/deps enforces the imports).
package ui

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// Limits bound what clients can make the console hold.
type Limits struct {
	// Body is the largest request body (413 beyond); Header the largest
	// request line plus headers (431 beyond).
	Body   int
	Header int
	// Conns is the most connections open at once; further clients wait in
	// the listen backlog, unread.
	Conns int
	// Pages is the most page renders and forwarded calls in flight; a
	// request that cannot get a slot within Queue gets 503.
	Pages int
	Queue time.Duration
	// Streams is the most forwarded event streams open at once.
	Streams int
	// Read bounds receiving one request, Write sending one answer (a
	// stream gets a fresh Write deadline per event), Idle a keep-alive
	// connection's wait for its next request.
	Read  time.Duration
	Write time.Duration
	Idle  time.Duration
	// Call bounds the wait for omertad's answer to a page's call or a
	// forwarded read; Slow the wait for a change to an agent (omertad
	// unpacks an image, starts a container, stops one within its grace
	// period) and for a call that hashes a password. Under emulation,
	// with the first-boot audit beside it, a deploy took over 10 s and
	// argon2id seconds.
	Call time.Duration
	Slow time.Duration
}

// Longest is the longest the console waits for one answer of omertad: a
// slow call that also waits for a task as long as it may. The API
// client's own bound must be no shorter, or it cuts those calls off first.
func (l Limits) Longest() time.Duration {
	return l.withDefaults().Slow + apitype.MaxTaskWait
}

// DefaultLimits fit an appliance console: a handful of people and scripts,
// a load test of 50 clients.
var DefaultLimits = Limits{
	Body:    256 << 10,
	Header:  8 << 10,
	Conns:   256,
	Pages:   64,
	Queue:   2 * time.Second,
	Streams: 32,
	Read:    10 * time.Second,
	Write:   30 * time.Second,
	Idle:    60 * time.Second,
	Call:    10 * time.Second,
	Slow:    3 * time.Minute,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	setD := func(dst *time.Duration, v time.Duration) {
		if v > 0 {
			*dst = v
		}
	}
	set(&d.Body, l.Body)
	set(&d.Header, l.Header)
	set(&d.Conns, l.Conns)
	set(&d.Pages, l.Pages)
	set(&d.Streams, l.Streams)
	setD(&d.Queue, l.Queue)
	setD(&d.Read, l.Read)
	setD(&d.Write, l.Write)
	setD(&d.Idle, l.Idle)
	setD(&d.Call, l.Call)
	setD(&d.Slow, l.Slow)
	return d
}

// Options configure New.
type Options struct {
	// Backend reaches omertad; required.
	Backend Backend
	// TLS is the server's TLS configuration (see TLSConfig); Serve
	// refuses to serve without one. Tests may leave it nil and use App.
	TLS    *tls.Config
	Logger *slog.Logger
	Limits Limits
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// MemoryLimit is the Go runtime's soft memory limit that Serve sets
	// for the process (0: DefaultMemoryLimit; negative: leave it as it
	// is). GOMEMLIMIT in the environment wins over both.
	MemoryLimit int64
}

// DefaultMemoryLimit is the soft memory limit of the console's Go heap,
// stacks and runtime (not its binary's pages, which the kernel counts in
// RSS too: about 25 MiB of the omerta binary's are touched at start, 37
// where the binary is cached in 2 MiB folios). What the console allocates
// per request is short-lived, the answers it copies through; under 50
// clients about 8 MiB of heap stay live (5 of them made by the package
// initializers of the whole binary), and the collector's goal is 12 MiB.
// Below about 20 MiB the collector runs nearly all the time (measured: 16
// MiB made a dashboard cost four times the CPU). Since the dashboard page
// is kept (dashboardMemo), 40 MiB saved no CPU time per answer measurable
// in the load benchmark and cost 7 MiB of RSS.
const DefaultMemoryLimit = 24 << 20

// Server is the console.
type Server struct {
	app     *fiber.App
	be      Backend
	tls     *tls.Config
	log     *slog.Logger
	limits  Limits
	memory  int64
	now     func() time.Time
	views   *views
	assets  *assets
	pages   chan struct{}
	streams chan struct{}
	// setupDone latches: once omertad has said setup is done, the setup
	// page is gone for good and omertad is not asked again.
	setupDone atomic.Bool
	// auditSeen is the newest audit sequence number seen (see auditHead).
	auditSeen atomic.Int64
	// reports and probes are the dashboard's views of the last report
	// and probe answers seen (see answerMemo).
	reports *answerMemo[reportSummary]
	probes  *answerMemo[probeSummary]
	// dash keeps the dashboard pages rendered (see dashboardMemo).
	dash *dashboardMemo
	// ctx ends every forwarded stream at Shutdown.
	ctx    context.Context
	cancel context.CancelFunc
}

// New builds the console.
func New(o Options) (*Server, error) {
	if o.Backend == nil {
		return nil, errors.New("console: no backend: the console needs omertad's API")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a, err := loadAssets()
	if err != nil {
		return nil, err
	}
	v, err := loadViews(a)
	if err != nil {
		return nil, err
	}
	s := &Server{be: o.Backend, tls: o.TLS, log: o.Logger, limits: o.Limits.withDefaults(), memory: o.MemoryLimit, now: o.Now, views: v, assets: a}
	s.reports, s.probes, s.dash = newReportMemo(), newProbeMemo(), newDashboardMemo()
	s.pages = make(chan struct{}, s.limits.Pages)
	s.streams = make(chan struct{}, s.limits.Streams)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.app = s.newApp()
	s.routes()
	return s, nil
}

func (s *Server) newApp() *fiber.App {
	return fiber.New(fiber.Config{
		AppName:               "omerta-console",
		DisableStartupMessage: true,
		// Values from a request outlive handlers in places (logs, the
		// identity handed to a stream); immutable strings make that safe.
		Immutable: true,
		// One spelling per path, so that the allow-list and the pages
		// cannot be walked around by another spelling.
		StrictRouting:                true,
		CaseSensitive:                true,
		BodyLimit:                    s.limits.Body,
		ReadBufferSize:               s.limits.Header,
		Concurrency:                  2 * s.limits.Conns,
		ReadTimeout:                  s.limits.Read,
		WriteTimeout:                 s.limits.Write,
		IdleTimeout:                  s.limits.Idle,
		DisablePreParseMultipartForm: true,
		DisableDefaultContentType:    false,
		ErrorHandler:                 s.errorHandler,
	})
}

// App is the Fiber application, for tests (app.Test) and benchmarks.
func (s *Server) App() *fiber.App { return s.app }

// Serve serves HTTPS on ln until Shutdown, at most Limits.Conns
// connections at a time. The TLS handshake happens after the connection
// cap, so handshakes count against it too.
func (s *Server) Serve(ln net.Listener) error {
	if s.tls == nil {
		return errors.New("console: no TLS configuration: the console serves HTTPS only")
	}
	if lim := memoryLimit(s.memory, os.Getenv("GOMEMLIMIT")); lim > 0 {
		debug.SetMemoryLimit(lim)
	}
	return s.app.Listener(tls.NewListener(newLimitListener(ln, s.limits.Conns), s.tls))
}

// memoryLimit is the limit Serve sets: none when GOMEMLIMIT is set (the
// runtime took it at start) or the option says to leave it.
func memoryLimit(opt int64, env string) int64 {
	switch {
	case env != "", opt < 0:
		return 0
	case opt == 0:
		return DefaultMemoryLimit
	}
	return opt
}

// Shutdown ends the streams, stops accepting and lets requests in flight
// finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	deadline, ok := ctx.Deadline()
	if !ok {
		return s.app.Shutdown()
	}
	if err := s.app.ShutdownWithTimeout(time.Until(deadline)); err != nil {
		return fmt.Errorf("console: shutting down: %w", err)
	}
	return nil
}

// slot takes one of the bounded page slots, waiting at most Limits.Queue;
// the second result is false when none came free.
func (s *Server) slot(ctx context.Context) (func(), bool) {
	select {
	case s.pages <- struct{}{}:
		return func() { <-s.pages }, true
	default:
	}
	t := time.NewTimer(s.limits.Queue)
	defer t.Stop()
	select {
	case s.pages <- struct{}{}:
		return func() { <-s.pages }, true
	case <-t.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

// bounded holds a page slot for the rest of the request.
func (s *Server) bounded(c *fiber.Ctx) error {
	release, ok := s.slot(c.UserContext())
	if !ok {
		c.Set(fiber.HeaderRetryAfter, "1")
		return s.refuse(c, fiber.StatusServiceUnavailable, "The console is busy; try again in a moment.")
	}
	defer release()
	return c.Next()
}
