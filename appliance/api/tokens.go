package api

import (
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
)

// tokenRoutes serves the API tokens (admin): GET /tokens (never their
// secrets), POST /tokens (the secret is in this answer and nowhere else,
// ever) and DELETE /tokens/{id} (revoked for good; its name is never
// reused).
func (s *Server) tokenRoutes(v1 fiber.Router) {
	v1.Get("/tokens", s.listTokens)
	v1.Post("/tokens", s.createToken)
	v1.Delete("/tokens/:id", s.revokeToken)
}

func tokenView(t auth.Token) apitype.Token {
	return apitype.Token{ID: t.ID, Name: t.Name, Role: string(t.Role), CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt}
}

func (s *Server) listTokens(c *fiber.Ctx) error {
	ts, err := s.deps.Auth.ListTokens(c.UserContext(), principalOf(c))
	if err != nil {
		return s.authError(c, err)
	}
	out := apitype.TokenList{Tokens: make([]apitype.Token, 0, len(ts))}
	for _, t := range ts {
		out.Tokens = append(out.Tokens, tokenView(t))
	}
	return c.JSON(out)
}

func (s *Server) createToken(c *fiber.Ctx) error {
	var req apitype.TokenCreate
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	nt := auth.NewToken{Name: req.Name, Role: auth.Role(req.Role)}
	if req.ExpiresAt != nil {
		nt.ExpiresAt = *req.ExpiresAt
	}
	it, err := s.deps.Auth.CreateToken(c.UserContext(), principalOf(c), nt)
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(fiber.StatusCreated).JSON(apitype.TokenIssued{Token: tokenView(it.Token), Secret: it.Secret})
}

func (s *Server) revokeToken(c *fiber.Ctx) error {
	v := c.Params("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return s.authError(c, &auth.InvalidError{Field: "id", Reason: strconv.Quote(cut(v, maxQuoted)) + " is not a token id (a positive integer)"})
	}
	if err := s.committed(c, s.deps.Auth.RevokeToken(c.UserContext(), principalOf(c), id)); err != nil {
		return s.authError(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}
