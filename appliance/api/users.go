package api

import (
	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
)

// userRoutes serves the console's accounts (admin): GET and POST /users,
// GET /users/{name}, POST /users/{name}/disable|enable|reset (a one-time
// link to set a password) and PUT /users/{name}/role. Disabling a user or
// changing its role ends all of its sessions. The auth domain checks the
// role again and audits every change, refusals included.
func (s *Server) userRoutes(v1 fiber.Router) {
	v1.Get("/users", s.listUsers)
	v1.Post("/users", s.createUser)
	v1.Get("/users/:name", s.getUser)
	v1.Post("/users/:name/disable", s.setUserDisabled(true))
	v1.Post("/users/:name/enable", s.setUserDisabled(false))
	v1.Post("/users/:name/reset", s.resetUser)
	v1.Put("/users/:name/role", s.setUserRole)
}

func userView(u auth.User) apitype.User {
	return apitype.User{
		ID: u.ID, Username: u.Username, Role: string(u.Role), Disabled: u.Disabled, PasswordSet: u.PasswordSet,
		CreatedAt: u.CreatedAt, CreatedBy: u.CreatedBy, UpdatedAt: u.UpdatedAt,
		PasswordChangedAt: u.PasswordChangedAt, LastLoginAt: u.LastLoginAt,
	}
}

func resetView(r auth.ResetLink) *apitype.ResetLink {
	return &apitype.ResetLink{Token: r.Token, User: r.User, ExpiresAt: r.ExpiresAt}
}

func (s *Server) listUsers(c *fiber.Ctx) error {
	us, err := s.deps.Auth.ListUsers(c.UserContext(), principalOf(c))
	if err != nil {
		return s.authError(c, err)
	}
	out := apitype.UserList{Users: make([]apitype.User, 0, len(us))}
	for _, u := range us {
		out.Users = append(out.Users, userView(u))
	}
	return c.JSON(out)
}

func (s *Server) createUser(c *fiber.Ctx) error {
	var req apitype.UserCreate
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	cu, err := s.deps.Auth.CreateUser(c.UserContext(), principalOf(c), auth.NewUser{Username: req.Username, Role: auth.Role(req.Role), Password: req.Password})
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	out := apitype.UserCreated{User: userView(cu.User)}
	if cu.Reset != nil {
		out.Reset = resetView(*cu.Reset)
	}
	return c.Status(fiber.StatusCreated).JSON(out)
}

func (s *Server) getUser(c *fiber.Ctx) error {
	u, err := s.deps.Auth.GetUser(c.UserContext(), principalOf(c), c.Params("name"))
	if err != nil {
		return s.authError(c, err)
	}
	return c.JSON(userView(u))
}

// answerUser answers a change to a user with the user as it now is.
func (s *Server) answerUser(c *fiber.Ctx, err error) error {
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	return s.getUser(c)
}

func (s *Server) setUserDisabled(disabled bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		return s.answerUser(c, s.deps.Auth.SetDisabled(c.UserContext(), principalOf(c), c.Params("name"), disabled))
	}
}

func (s *Server) setUserRole(c *fiber.Ctx) error {
	var req apitype.RoleChange
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	return s.answerUser(c, s.deps.Auth.SetRole(c.UserContext(), principalOf(c), c.Params("name"), auth.Role(req.Role)))
}

func (s *Server) resetUser(c *fiber.Ctx) error {
	link, err := s.deps.Auth.IssueReset(c.UserContext(), principalOf(c), c.Params("name"))
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	return c.Status(fiber.StatusCreated).JSON(resetView(link))
}
