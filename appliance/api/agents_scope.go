package api

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Tenant scope on the agents routes. An operator or auditor limited to
// some tenants sees nothing of the others' agents: they are not in the
// list, and every route naming one (its logs, tasks, a task by id)
// answers 404 as for an agent that does not exist, never 403, so that a
// restricted caller cannot even learn which ids are taken. Deploying into
// a tenant out of scope is refused the same way.

// restricted is the caller's scope when it is limited to some tenants;
// ok is false for an unrestricted caller or without a policy service.
func (s *Server) restricted(c *fiber.Ctx) (sc policy.Scope, ok bool, err error) {
	if s.deps.Policy == nil {
		return sc, false, nil
	}
	sc, err = s.scopeOf(c)
	return sc, err == nil && sc.Restricted, err
}

// noAgent is the answer for an agent out of the caller's scope: the same
// as for one that does not exist.
func noAgent(id string) error {
	return fiber.NewError(fiber.StatusNotFound, "no agent "+terminal.Escape(quoteValue(id)))
}

// scopedAgent wraps a handler of /agents/:id...: it runs only when the
// caller's scope holds the agent's tenant.
func (s *Server) scopedAgent(h fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		sc, ok, err := s.restricted(c)
		if err != nil {
			return s.fail(c, err)
		}
		if ok {
			id := c.Params("id")
			if t, found := s.agentTenant(c.UserContext(), id); !found || !sc.Sees(t) {
				return noAgent(id)
			}
		}
		return h(c)
	}
}

// scopedTask is scopedAgent for /tasks/:id: the task's agent decides.
func (s *Server) scopedTask(h fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		sc, ok, err := s.restricted(c)
		if err != nil {
			return s.fail(c, err)
		}
		if ok {
			id := c.Params("id")
			t, terr := s.deps.Agents.Service.GetTask(c.UserContext(), id)
			tenant, found := s.agentTenant(c.UserContext(), t.Agent)
			if terr != nil || !found || !sc.Sees(tenant) {
				return fiber.NewError(fiber.StatusNotFound, "no task "+terminal.Escape(quoteValue(id)))
			}
		}
		return h(c)
	}
}

// deployScope refuses a deploy into a tenant out of the caller's scope.
func (s *Server) deployScope(c *fiber.Ctx, tenant string) error {
	sc, ok, err := s.restricted(c)
	if err != nil || !ok {
		return err
	}
	if tenant == "" {
		tenant = policy.DefaultTenant
	}
	return sc.Check(tenant)
}

// visibleTTL is how long a stream trusts what it learnt of an agent's
// tenant: an id deleted and deployed again into another tenant is seen
// anew after it.
const visibleTTL = 30 * time.Second

// maxVisible bounds what one stream remembers of agents' tenants.
const maxVisible = 1024

// agentVisible tells a restricted caller's event stream whether an
// agent's events are its to see. It runs on the stream's goroutine only.
func (s *Server) agentVisible(sc policy.Scope) func(agent string) bool {
	type seen struct {
		ok bool
		at time.Time
	}
	memo := map[string]seen{}
	return func(agent string) bool {
		now := time.Now()
		if v, ok := memo[agent]; ok && now.Sub(v.at) < visibleTTL {
			return v.ok
		}
		if len(memo) >= maxVisible {
			clear(memo)
		}
		t, found := s.agentTenant(context.Background(), agent)
		ok := found && sc.Sees(t)
		memo[agent] = seen{ok: ok, at: now}
		return ok
	}
}
