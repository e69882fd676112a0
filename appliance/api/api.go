// Package api serves omertad's internal JSON API on a unix socket.
//
// Only local processes reach it: the console (as its own unprivileged user)
// and the CLI. Every request carries the peer's uid and gid, read from the
// socket with SO_PEERCRED, so that handlers can authorise the caller rather
// than trust whatever the console says about it.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/version"
)

// Options are the handles the API serves from.
type Options struct {
	Store  *store.Store
	Logger *slog.Logger
}

// Server is the API's HTTP application.
type Server struct {
	app *fiber.App
	v1  fiber.Router
	st  *store.Store
	log *slog.Logger
}

// New builds the API. Other domains add their routes through V1 before Serve.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{st: opts.Store, log: opts.Logger}
	s.app = fiber.New(fiber.Config{
		AppName:               "omertad",
		DisableStartupMessage: true,
		// Values taken from a request must outlive the handler in places
		// (logs, audit details); immutable strings make that safe.
		Immutable:    true,
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  2 * time.Minute,
		BodyLimit:    4 << 20,
		ErrorHandler: s.errorHandler,
	})
	s.app.Use(s.peerCredentials)
	s.app.Get("/healthz", s.healthz)
	s.v1 = s.app.Group("/api/v1")
	s.v1.Get("/version", s.version)
	s.v1.Get("/audit", s.audit)
	s.v1.Get("/whoami", s.whoami)
	return s
}

// V1 is the /api/v1 router, for other domains' routes.
func (s *Server) V1() fiber.Router { return s.v1 }

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown stops accepting, lets requests in flight finish until ctx ends,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		return s.app.Shutdown()
	}
	return s.app.ShutdownWithTimeout(time.Until(deadline))
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
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
	return c.Status(code).JSON(Error{Error: err.Error()})
}

// Health is the body of /healthz.
type Health struct {
	Status string `json:"status"`
	Store  string `json:"store"`
}

func (s *Server) healthz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		return c.Status(fiber.StatusServiceUnavailable).JSON(Health{Status: "unhealthy", Store: err.Error()})
	}
	return c.JSON(Health{Status: "ok", Store: "ok"})
}

func (s *Server) version(c *fiber.Ctx) error {
	return c.JSON(version.Get())
}

// whoami tells a caller what omertad sees of it; the CLI and console use it
// to explain a refusal.
func (s *Server) whoami(c *fiber.Ctx) error {
	p, ok := PeerFrom(c)
	if !ok {
		return fiber.NewError(fiber.StatusForbidden, "no peer credentials: the API is served on a unix socket only")
	}
	return c.JSON(p)
}

func (s *Server) audit(c *fiber.Ctx) error {
	after, err := queryInt(c, "after", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", 100)
	if err != nil {
		return err
	}
	if limit < 1 || limit > 1000 {
		return fiber.NewError(fiber.StatusBadRequest, "query parameter limit: must be between 1 and 1000")
	}
	recs, err := s.st.AuditLog(c.UserContext(), int64(after), limit)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []store.AuditRecord{}
	}
	return c.JSON(recs)
}

func queryInt(c *fiber.Ctx, name string, def int) (int, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fiber.NewError(fiber.StatusBadRequest, "query parameter "+name+": "+strconv.Quote(v)+" is not a non-negative integer")
	}
	return n, nil
}
