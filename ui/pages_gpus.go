package ui

import (
	"github.com/gofiber/fiber/v2"
)

// actGPURead reads the GPUs: omertad serves GET /gpus under probe.read
// (every role), as it does the hardware the probe found.
const actGPURead = "probe.read"

// gpusPage shows the GPUs omertad hands out: each GPU and MIG device,
// its memory and the agents holding it; without any, why (no driver, a
// driver and no GPU it supports), and units agents hold that are gone.
func (s *Server) gpusPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actGPURead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not read the GPUs.")
	}
	l, err := api(c).GPUs(c.UserContext())
	if err != nil {
		return s.backendError(c, err)
	}
	return s.render(c, fiber.StatusOK, "gpus", &page{Title: "GPUs", Nav: "gpus", Who: w, CSRF: w.CSRFToken, D: &l})
}
