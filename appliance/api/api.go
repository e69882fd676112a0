// Package api serves omertad's internal JSON API on a unix socket.
//
// Only local processes reach it: the console (as its own unprivileged user)
// and the CLI. Every request carries the peer's uid and gid, read from the
// socket with SO_PEERCRED, so that handlers can authorise the caller rather
// than trust whatever the console says about it.
//
// The routes live here, one file per domain, built from explicit handles
// (Deps); the bodies they answer with are in appliance/apitype, which the
// client (appliance/apiclient) shares. Domain packages know nothing of HTTP.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/store"
)

// Deps are the handles the API serves from. Store is required; a nil domain
// handle means that domain's routes are not served.
type Deps struct {
	Store  *store.Store
	Logger *slog.Logger
	// AuditChain is the audit chain as verified when omertad started; nil
	// when it was not verified (GET /api/v1/audit/status then answers 503).
	AuditChain *apitype.AuditStatus
	// Probe answers /api/v1/probe and /api/v1/probe/drift.
	Probe ProbeQueries
	// Auth checks every caller other than root without credentials, and
	// serves setup, login, users and tokens (see auth.go). Without it
	// only root is served, and the public routes.
	Auth *auth.Service
	// Report is where /api/v1/report reads the first-boot report.
	Report ReportFiles
	// Agents are the handles of the catalog, image, agent, task and event
	// routes and of /metrics (see agents.go).
	Agents AgentsDeps
	// GPU answers /api/v1/gpus: the GPUs the GPU service found and the
	// agents holding them (see gpus.go); nil when omertad runs none.
	GPU GPUService
	// Policy serves the policies, tenants, scopes, decisions and coverage
	// (see policy.go); nil leaves those routes out.
	Policy PolicyService
	// Models answers /api/v1/models: the gateway's models and whether
	// each was enabled (see models.go); nil leaves the route out.
	Models ModelQueries
	// AgentUI reaches agents' own UIs on the agents' network (see
	// agentui.go); nil answers those routes 503.
	AgentUI AgentUINetwork
	// Limits bound what one client can make the API hold; zero fields take
	// the defaults of DefaultLimits.
	Limits Limits
}

// Limits bound the resources a client of the API can tie up.
type Limits struct {
	// Body is the largest request body read into memory, for every route:
	// fasthttp reads a body before routing, so one route's larger limit
	// would be every route's. A later route that takes large bodies
	// (uploads) must stream them to disk under its own cap instead.
	Body int
	// Header is the largest request line plus headers.
	Header int
	// Conns is the most connections served at once. Connections beyond it
	// wait in the socket's backlog, unread, until one closes.
	Conns int
	// Read bounds the time to receive one whole request (headers and body),
	// so that a slow client cannot hold a connection slot for long.
	Read time.Duration
	// Write bounds the time to send one response.
	Write time.Duration
	// Idle bounds how long a keep-alive connection waits for its next
	// request.
	Idle time.Duration
}

// DefaultLimits fit an API whose callers are the CLI and the console:
// small requests; connections for the console's streams (DefaultMaxStreams,
// each holding one), its page calls (up to 64 pages in flight, a few calls
// each) and the CLI.
var DefaultLimits = Limits{
	Body:   64 << 10,
	Header: 8 << 10,
	Conns:  128,
	Read:   10 * time.Second,
	Write:  30 * time.Second,
	Idle:   time.Minute,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.Body > 0 {
		d.Body = l.Body
	}
	if l.Header > 0 {
		d.Header = l.Header
	}
	if l.Conns > 0 {
		d.Conns = l.Conns
	}
	if l.Read > 0 {
		d.Read = l.Read
	}
	if l.Write > 0 {
		d.Write = l.Write
	}
	if l.Idle > 0 {
		d.Idle = l.Idle
	}
	return d
}

// Server is the API's HTTP application.
type Server struct {
	app    *fiber.App
	deps   Deps
	limits Limits
	log    *slog.Logger
	agents agentsState
	report reportCache
	// dbv is the database's version, for answers cached until it changes
	// (agentList: GET /agents; probeAnswer: GET /probe).
	dbv         *dbVersion
	agentList   answerCache
	probeAnswer answerCache
	// openapi is the document of the routes registered (openapi.go).
	openapi []byte
}

// New builds the API and mounts every domain's routes that has a handle in d.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	s := &Server{deps: d, limits: d.Limits.withDefaults(), log: d.Logger, agents: newAgentsState(d.Agents), dbv: &dbVersion{st: d.Store}}
	s.app = fiber.New(fiber.Config{
		AppName:               "omertad",
		DisableStartupMessage: true,
		// Values taken from a request must outlive the handler in places
		// (logs, audit details); immutable strings make that safe.
		Immutable: true,
		// One spelling per route: /API/V1/AUDIT and /api/v1/audit/ are not
		// /api/v1/audit, so that authorisation written against a path
		// cannot be walked around by another spelling of it.
		StrictRouting:  true,
		CaseSensitive:  true,
		BodyLimit:      s.limits.Body,
		ReadBufferSize: s.limits.Header,
		// The listener caps connections (see Serve). fasthttp's own cap
		// is set above it only because a worker returns to its pool just
		// after closing its connection, which frees a listener slot: at an
		// equal cap the next connection would meet a 503 in that gap.
		Concurrency:                  2 * s.limits.Conns,
		ReadTimeout:                  s.limits.Read,
		WriteTimeout:                 s.limits.Write,
		IdleTimeout:                  s.limits.Idle,
		DisablePreParseMultipartForm: true,
		ErrorHandler:                 s.errorHandler,
	})
	s.app.Use(s.peerCredentials)
	// Every route is behind the table of authz.go: deny by default.
	s.app.Use(s.authenticate)
	s.app.Get("/healthz", s.healthz)
	v1 := s.app.Group("/api/v1")
	v1.Get("/version", s.version)
	s.authRoutes(v1)
	s.auditRoutes(v1)
	if d.Probe != nil {
		s.probeRoutes(v1)
	}
	s.agentsRoutes(v1)
	if d.GPU != nil {
		s.gpuRoutes(v1, d.GPU)
	}
	if d.Policy != nil {
		s.policyRoutes(v1)
	}
	if d.Models != nil {
		v1.Get("/models", func(c *fiber.Ctx) error { return c.JSON(d.Models.Models()) })
	}
	if d.Report.Root.Dir() != "" {
		s.reportRoutes(v1)
	}
	s.dashboardRoutes(v1)
	s.serveOpenAPI(v1) // last: it documents the routes mounted before it
	return s
}

// Serve serves on ln until Shutdown, at most Limits.Conns connections at a
// time.
func (s *Server) Serve(ln net.Listener) error {
	return s.app.Listener(newLimitListener(ln, s.limits.Conns))
}

// Shutdown stops accepting, lets requests in flight finish until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeStreams() // streams never finish on their own
	defer s.dbv.close()
	deadline, ok := ctx.Deadline()
	if !ok {
		return s.app.Shutdown()
	}
	return s.app.ShutdownWithTimeout(time.Until(deadline))
}

func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	code := fiber.StatusInternalServerError
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code = fe.Code
	}
	if code >= 500 {
		s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
	}
	return c.Status(code).JSON(apitype.Error{Error: err.Error()})
}
