package api

import (
	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
)

// setupRoutes serves GET /setup (whether the first admin exists) and POST
// /setup, which redeems first boot's one-time token, creates the first
// admin and logs it in, once: afterwards it answers 409 for good. Both are
// public: nobody has an account before setup.
func (s *Server) setupRoutes(v1 fiber.Router) {
	v1.Get("/setup", s.setupState)
	v1.Post("/setup", s.setup)
}

func (s *Server) setupState(c *fiber.Ctx) error {
	done, err := s.deps.Auth.SetupDone(c.UserContext())
	if err != nil {
		return err
	}
	return c.JSON(apitype.SetupState{Done: done})
}

func (s *Server) setup(c *fiber.Ctx) error {
	var req apitype.SetupRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	addr := principalOf(c).Address
	_, err := s.deps.Auth.Setup(c.UserContext(), auth.SetupRequest{Token: req.Token, Username: req.Username, Password: req.Password, Address: addr})
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	// The admin exists; the session is a login like any other (rotated,
	// audited). Should it fail, the admin logs in on the login page.
	sess, err := s.deps.Auth.Login(c.UserContext(), auth.LoginRequest{
		Username: req.Username, Password: req.Password, Address: addr, PreviousSessionID: c.Get(apitype.HeaderSession),
	})
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	return c.Status(fiber.StatusCreated).JSON(sessionView(sess))
}
