package api

import (
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// auditRoutes serves GET /audit (records with seq > ?after, oldest first,
// ?limit up to 1000) and GET /audit/status (the chain as verified at start).
func (s *Server) auditRoutes(r fiber.Router) {
	r.Get("/audit", s.audit)
	r.Get("/audit/status", s.auditStatus)
}

func (s *Server) audit(c *fiber.Ctx) error {
	after, err := queryInt(c, "after", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", apitype.AuditLimitDefault)
	if err != nil {
		return err
	}
	if limit < 1 || limit > apitype.MaxListLimit {
		return fiber.NewError(fiber.StatusBadRequest, "query parameter limit: must be between 1 and "+strconv.Itoa(apitype.MaxListLimit))
	}
	recs, err := s.deps.Store.AuditLog(c.UserContext(), int64(after), limit)
	if err != nil {
		return err
	}
	out := make([]apitype.AuditRecord, 0, len(recs))
	for _, r := range recs {
		out = append(out, apitype.AuditRecord{
			Seq: r.Seq, At: r.At, Actor: r.Actor, Action: r.Action, Target: r.Target,
			Detail: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash,
		})
	}
	return c.JSON(out)
}

func (s *Server) auditStatus(c *fiber.Ctx) error {
	if s.deps.AuditChain == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, "the audit chain has not been verified")
	}
	return c.JSON(s.deps.AuditChain)
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
