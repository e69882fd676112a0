package ui

import (
	"github.com/gofiber/fiber/v2"
)

// actModelsRead reads the gateway's models: omertad serves GET /models
// under policy.read, as the policies that allow models are.
const actModelsRead = "policy.read"

// modelsPage shows the model gateway's models and whether omertad enabled
// each: its manifest in a signed registry, its VRAM against the GPUs, and
// for a refused one the registry's reason, which is what an agent calling
// it gets back (403 model_not_enabled).
func (s *Server) modelsPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actModelsRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not read the models.")
	}
	l, err := api(c).Models(c.UserContext())
	if err != nil {
		return s.backendError(c, err)
	}
	return s.render(c, fiber.StatusOK, "models", &page{Title: "Models", Nav: "models", Who: w, CSRF: w.CSRFToken, D: &l})
}
