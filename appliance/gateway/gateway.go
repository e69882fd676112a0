package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Bounds cap what agents and backends may send.
type Bounds struct {
	MaxBodyBytes      int64         // request body
	MaxJSONDepth      int           // nesting of request and response JSON
	MaxHeaderBytes    int           // all request header names and values together
	MaxResponseBytes  int64         // a non-streamed answer
	MaxStreamBytes    int64         // a streamed answer, in all
	MaxLineBytes      int           // a streamed line read for usage (longer ones pass through unread)
	StreamIdleTimeout time.Duration // between two reads of a stream
	MaxStreamDuration time.Duration // a stream, in all
}

// DefaultBounds fit chat requests with long contexts and answers.
func DefaultBounds() Bounds {
	return Bounds{
		MaxBodyBytes:      8 << 20,
		MaxJSONDepth:      64,
		MaxHeaderBytes:    32 << 10,
		MaxResponseBytes:  16 << 20,
		MaxStreamBytes:    256 << 20,
		MaxLineBytes:      1 << 20,
		StreamIdleTimeout: 2 * time.Minute,
		MaxStreamDuration: 30 * time.Minute,
	}
}

// Defaults of the other options.
const (
	DefaultBreakerFailures  = 5
	DefaultBreakerCooldown  = 30 * time.Second
	DefaultFlushInterval    = time.Second
	DefaultFlushBatch       = 512
	DefaultMaxPending       = 100000
	DefaultUsageRetention   = 90 * 24 * time.Hour
	maxCredentialBytes      = 8 << 10
	userAgent               = "omerta-gateway"
	serviceName             = "gateway"
	headerBackend           = "X-Omerta-Backend"
	defaultReadHeaderTimout = 10 * time.Second
)

// Deps are the Gateway's collaborators.
type Deps struct {
	Identifier Identifier
	Policy     Policy
	Secrets    Secrets
	Registry   *Registry
}

// Option configures a Gateway.
type Option func(*Gateway)

// WithClock sets the clock of breakers, rate limits, budgets and usage
// timestamps (latency is measured on the monotonic clock regardless).
func WithClock(now func() time.Time) Option { return func(g *Gateway) { g.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(g *Gateway) { g.log = l } }

// WithTransport sets how backends are reached (default: a Transport of
// its own with no proxy from the environment).
func WithTransport(rt http.RoundTripper) Option { return func(g *Gateway) { g.rt = rt } }

// WithBounds sets the bounds; zero fields keep DefaultBounds' values.
func WithBounds(b Bounds) Option { return func(g *Gateway) { g.bounds = mergeBounds(b) } }

// WithBreaker sets the consecutive failures that open a backend's circuit
// and how long it stays open before a probe.
func WithBreaker(failures int, cooldown time.Duration) Option {
	return func(g *Gateway) { g.brFailures, g.brCooldown = failures, cooldown }
}

// WithUsageFlush sets how often queued usage is written, the batch size
// that triggers an early write, and the most records queued.
func WithUsageFlush(interval time.Duration, batch, maxPending int) Option {
	return func(g *Gateway) { g.rec.interval, g.rec.batch, g.rec.max = interval, batch, maxPending }
}

// WithUsageRetention sets how long per-request rows are kept (monthly
// totals are kept for ever); 0 keeps them all.
func WithUsageRetention(d time.Duration) Option { return func(g *Gateway) { g.rec.retention = d } }

// Gateway is the model gateway: an http.Handler for the agents' bridge,
// and a daemon.Service (Name, Run) whose Run writes usage to the store.
type Gateway struct {
	st         *store.Store
	id         Identifier
	pol        Policy
	sec        Secrets
	reg        atomic.Pointer[Registry]
	now        func() time.Time
	log        *slog.Logger
	rt         http.RoundTripper
	bounds     Bounds
	brFailures int
	brCooldown time.Duration

	brMu     sync.Mutex
	breakers map[string]*breaker

	rates   *rates
	budgets *budgets
	rec     *recorder
	met     *metrics
}

// New returns a Gateway on st (opened with Schema), with this month's
// charges loaded from it so that a restart does not reset budgets.
func New(ctx context.Context, st *store.Store, d Deps, opts ...Option) (*Gateway, error) {
	if st == nil || d.Identifier == nil || d.Policy == nil || d.Secrets == nil || d.Registry == nil {
		return nil, errors.New("gateway: a store, an identifier, a policy, secrets and a registry are required")
	}
	g := &Gateway{
		st: st, id: d.Identifier, pol: d.Policy, sec: d.Secrets,
		now: time.Now, log: slog.New(slog.DiscardHandler), bounds: DefaultBounds(),
		brFailures: DefaultBreakerFailures, brCooldown: DefaultBreakerCooldown,
		breakers: map[string]*breaker{}, rates: newRates(),
		rec: &recorder{st: st, interval: DefaultFlushInterval, batch: DefaultFlushBatch, max: DefaultMaxPending,
			retention: DefaultUsageRetention, kick: make(chan struct{}, 1)},
	}
	for _, o := range opts {
		o(g)
	}
	if g.brFailures < 1 || g.brCooldown <= 0 || g.rec.interval <= 0 || g.rec.batch < 1 || g.rec.max < g.rec.batch {
		return nil, errors.New("gateway: breaker failures, cooldown, flush interval and batch must be positive, and the queue at least a batch")
	}
	if g.rt == nil {
		g.rt = newTransport()
	}
	g.rec.log, g.rec.now = g.log, g.now
	g.budgets = newBudgets(g.budgetExhausted)
	g.reg.Store(d.Registry)
	g.met = newMetrics(g)
	if err := loadBudgets(ctx, st, g.budgets, g.now()); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return g, nil
}

func mergeBounds(b Bounds) Bounds {
	d := DefaultBounds()
	pick := func(v, def int64) int64 {
		if v > 0 {
			return v
		}
		return def
	}
	return Bounds{
		MaxBodyBytes:      pick(b.MaxBodyBytes, d.MaxBodyBytes),
		MaxJSONDepth:      int(pick(int64(b.MaxJSONDepth), int64(d.MaxJSONDepth))),
		MaxHeaderBytes:    int(pick(int64(b.MaxHeaderBytes), int64(d.MaxHeaderBytes))),
		MaxResponseBytes:  pick(b.MaxResponseBytes, d.MaxResponseBytes),
		MaxStreamBytes:    pick(b.MaxStreamBytes, d.MaxStreamBytes),
		MaxLineBytes:      int(pick(int64(b.MaxLineBytes), int64(d.MaxLineBytes))),
		StreamIdleTimeout: time.Duration(pick(int64(b.StreamIdleTimeout), int64(d.StreamIdleTimeout))),
		MaxStreamDuration: time.Duration(pick(int64(b.MaxStreamDuration), int64(d.MaxStreamDuration))),
	}
}

// newTransport reaches backends directly (no proxy from the environment,
// no redirects: RoundTrip is called without a Client) and never asks for
// compression, so that what a backend sends is what is passed on.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// SetRegistry replaces the model registry; requests in flight finish on
// the one they started with. Breakers of backends kept keep their state.
func (g *Gateway) SetRegistry(r *Registry) {
	if r != nil {
		g.reg.Store(r)
	}
}

// Name is the daemon service's name.
func (g *Gateway) Name() string { return serviceName }

// Run writes queued usage until ctx ends, then writes the rest.
func (g *Gateway) Run(ctx context.Context) error { return g.rec.run(ctx) }

func (g *Gateway) breaker(name string) *breaker {
	g.brMu.Lock()
	defer g.brMu.Unlock()
	b := g.breakers[name]
	if b == nil {
		b = newBreaker(g.brFailures, g.brCooldown)
		g.breakers[name] = b
	}
	return b
}

func (g *Gateway) breakerStates() map[string]BreakerState {
	g.brMu.Lock()
	defer g.brMu.Unlock()
	out := make(map[string]BreakerState, len(g.breakers))
	for n, b := range g.breakers {
		out[n] = b.State()
	}
	return out
}

// BreakerState returns the state of a backend's circuit.
func (g *Gateway) BreakerState(backend string) BreakerState { return g.breaker(backend).State() }

func (g *Gateway) breakerChanged(backend string, from, to BreakerState, reason string) {
	g.log.Warn("gateway circuit changed", "backend", backend, "from", from.String(), "to", to.String(), "reason", reason)
	g.rec.audit(store.AuditEntry{Actor: auditActor, Action: "gateway.breaker." + to.String(), Target: backend,
		Detail: map[string]any{"from": from.String(), "reason": reason}})
}

func (g *Gateway) budgetExhausted(scope, id, budget, mon string) {
	g.log.Info("gateway budget exhausted", "scope", scope, "id", terminal.Escape(id), "budget", budget, "month", mon)
	g.rec.audit(store.AuditEntry{Actor: auditActor, Action: "gateway.budget.exhausted", Target: scope + "/" + id,
		Detail: map[string]any{"budget": budget, "month": mon}})
}

// ServeHTTP answers one agent's request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if e := checkHeaders(r, g.bounds.MaxHeaderBytes); e != nil {
		writeError(w, e)
		return
	}
	agent, ok := g.identify(r)
	if !ok {
		g.met.requests.WithLabelValues("", "unknown", string(CodeUnknownAgent)).Inc()
		g.log.Debug("gateway request from an unknown address", "remote", terminal.Escape(r.RemoteAddr))
		writeError(w, refuse(http.StatusForbidden, CodeUnknownAgent, "this address belongs to no agent"))
		return
	}
	var ep *endpoint
	switch r.URL.Path {
	case "/v1/chat/completions":
		ep = epChat
	case "/v1/completions":
		ep = epCompletions
	case "/v1/embeddings":
		ep = epEmbeddings
	case "/v1/models":
		g.serveModels(w, r, agent, "")
		return
	default:
		if id, ok := cutPrefix(r.URL.Path, "/v1/models/"); ok && id != "" {
			g.serveModels(w, r, agent, id)
			return
		}
		writeError(w, refuse(http.StatusNotFound, CodeNotFound, "no endpoint %s", quote(r.URL.Path)))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, refuse(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s takes POST", r.URL.Path))
		return
	}
	g.serveForward(w, r, agent, ep, start)
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

// checkHeaders bounds the headers even when the server in front sets no
// MaxHeaderBytes (NewServer does).
func checkHeaders(r *http.Request, limit int) *Error {
	n := 0
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if n > limit {
		return refuse(http.StatusRequestHeaderFieldsTooLarge, CodeHeadersTooLarge, "headers of %d bytes, at most %d", n, limit)
	}
	return nil
}

func (g *Gateway) identify(r *http.Request) (AgentRef, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return AgentRef{}, false
	}
	a, ok := g.id.Identify(ap.Addr().Unmap())
	if ok && a.Tenant == "" {
		a.Tenant = "default"
	}
	return a, ok && a.ID != ""
}

// NewServer is the http.Server for the gateway's listener: bounded
// headers and request reading, no write timeout (streams last as long as
// their backend), idle connections closed.
func NewServer(h http.Handler, errorLog *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: defaultReadHeaderTimout,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    DefaultBounds().MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(errorLog.Handler(), slog.LevelDebug),
	}
}

// Serve answers on ln until ctx ends, then gives requests in flight up to
// grace to finish.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := NewServer(g, g.log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("gateway listener %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("stopping the gateway listener: %w", err)
	}
	return nil
}

// HTTPService is the gateway's listener as a daemon service (Name, Run),
// apart from the Gateway's own Run, which writes usage: the listener can
// only open once the agents' bridge exists.
type HTTPService struct {
	g      *Gateway
	listen func() (net.Listener, error)
	grace  time.Duration
}

// HTTPService returns the service that opens its listener with listen
// (on the agents' bridge) and serves the gateway on it until its context
// ends, then gives requests in flight grace to finish.
func (g *Gateway) HTTPService(listen func() (net.Listener, error), grace time.Duration) *HTTPService {
	return &HTTPService{g: g, listen: listen, grace: grace}
}

// Name is the daemon service's name.
func (s *HTTPService) Name() string { return serviceName + "-http" }

// Run listens and serves.
func (s *HTTPService) Run(ctx context.Context) error {
	ln, err := s.listen()
	if err != nil {
		return fmt.Errorf("opening the gateway listener: %w", err)
	}
	return s.g.Serve(ctx, ln, s.grace)
}

// drain reads a little of a body that is being dropped, so that its
// connection may be reused.
func drain(rc io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	rc.Close()
}
