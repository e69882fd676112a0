package api

import (
	"github.com/gofiber/fiber/v2/middleware/adaptor"
)

// metricsRoutes serves GET /metrics, Prometheus's text format, from the
// handler the daemon builds (promhttp on its own registry: omertad's
// process and Go collectors and the agents'). It is a read: anyone who can
// connect to the socket may scrape it, and nothing in it is secret.
func (s *Server) metricsRoutes() {
	s.app.Get("/metrics", adaptor.HTTPHandler(s.deps.Agents.Metrics))
}
