package api

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/version"
)

// healthz answers 200 while the store answers. A bad audit chain is shown
// but does not make omertad unhealthy: it keeps serving, with the evidence
// kept, and systemd must not restart it in a loop over history.
func (s *Server) healthz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	h := apitype.Health{Status: apitype.HealthOK, Store: "ok"}
	if s.deps.AuditChain != nil {
		h.AuditChain = s.deps.AuditChain.State
	}
	if err := s.deps.Store.Ping(ctx); err != nil {
		h.Status, h.Store = apitype.HealthUnhealthy, err.Error()
		return c.Status(fiber.StatusServiceUnavailable).JSON(h)
	}
	return c.JSON(h)
}

func (s *Server) version(c *fiber.Ctx) error {
	return c.JSON(apitype.Version(version.Get()))
}
