package ui

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

func (s *Server) routes() {
	a := s.app
	a.Use(s.headers, s.sameOrigin)
	a.Get("/static/:name", s.static)
	a.All("/api/v1/*", s.bounded, s.forward)

	a.Get("/setup", s.bounded, s.setupPage)
	a.Post("/setup", s.bounded, s.setupSubmit)
	a.Get("/login", s.bounded, s.loginPage)
	a.Post("/login", s.bounded, s.loginSubmit)
	a.Get("/reset", s.bounded, s.resetPage)
	a.Post("/reset", s.bounded, s.resetSubmit)
	a.All("/agents/:id/ui/*", s.bounded, s.agentUI) // agentui.go: a session, but no CSRF token: see there

	p := a.Group("", s.bounded, s.authed(newIdentityCache(s.now)))
	p.Post("/logout", s.logout)
	p.Get("/", s.dashboard)
	p.Get("/catalog", s.catalogPage)
	p.Get("/catalog/:id", s.catalogEntryPage)
	p.Post("/catalog/:id", s.deploySubmit)
	p.Get("/agents", s.agentsPage)
	p.Get("/agents/:id", s.agentPage)
	p.Post("/agents/:id", s.agentSubmit)
	p.Post("/agents/:id/tasks", s.agentTaskSubmit)
	p.Get("/tasks", s.tasksPage)
	p.Post("/tasks", s.taskSubmit)
	p.Get("/report", s.reportPage)
	p.Get("/report.json", s.reportJSON)
	p.Get("/report.html", s.reportHTML)
	p.Get("/audit", s.auditPage)
	p.Get("/users", s.usersPage)
	p.Post("/users", s.userCreate)
	p.Post("/users/:name", s.userSubmit)
	p.Get("/tokens", s.tokensPage)
	p.Post("/tokens", s.tokenCreate)
	p.Post("/tokens/:id/revoke", s.tokenRevoke)
	s.policyPages(p)
	p.Get("/gpus", s.gpusPage)
	p.Get("/models", s.modelsPage)
	a.Use(s.notFound)
}

// Locals keys of an authenticated request.
const (
	localWho = "ui.who"
	localAPI = "ui.api"
)

func who(c *fiber.Ctx) *apitype.Whoami { w, _ := c.Locals(localWho).(*apitype.Whoami); return w }
func api(c *fiber.Ctx) API             { a, _ := c.Locals(localAPI).(API); return a }

// clientAddr is the browser's address as the connection shows it; no
// forwarding header is believed (nothing stands in front of the console).
func clientAddr(c *fiber.Ctx) string { return c.IP() }

// authed lets a request through only with a session omertad accepts, and
// a state-changing one only with that session's CSRF token. omertad's
// whoami for a session is kept for identityTTL for pages that change
// nothing (see identityCache for why that is safe); a page that ends the
// session (logout, any 401 from omertad) forgets it.
func (s *Server) authed(ids *identityCache) fiber.Handler {
	return func(c *fiber.Ctx) error {
		sid := sessionID(c)
		if sid == "" {
			return s.toLogin(c)
		}
		id := Identity{Session: sid, ClientAddr: clientAddr(c)}
		ctx, cancel := s.callCtx(c)
		defer cancel()
		// A change always asks: its CSRF token is checked against omertad's
		// answer of now.
		w, ok := ids.get(sid)
		if !ok || !safeMethod(c.Method()) {
			var err error
			if w, err = s.be.For(id).Identity(ctx); err != nil {
				if statusOf(err) == http.StatusUnauthorized {
					ids.forget(sid)
					clearSessionCookie(c)
					return s.toLogin(c)
				}
				return s.backendError(c, err)
			}
			ids.put(sid, w)
		}
		if !safeMethod(c.Method()) {
			got := csrfFromRequest(c)
			if !csrfMatches(w.CSRFToken, got) {
				return s.refuse(c, fiber.StatusForbidden, "Refused: this form is missing its security token or it has expired. Reload the page and try again.")
			}
			id.CSRF = got
		}
		c.Locals(localWho, &w)
		c.Locals(localAPI, s.be.For(id))
		c.SetUserContext(ctx)
		err := c.Next()
		if sessionCleared(c) {
			ids.forget(sid)
		}
		return err
	}
}

// toLogin sends a person without a session to the login page, or to setup
// while there is no account yet.
func (s *Server) toLogin(c *fiber.Ctx) error {
	if !s.isSetupDone(c) {
		return c.Redirect("/setup", fiber.StatusSeeOther)
	}
	target := "/login"
	if c.Method() == fiber.MethodGet && c.Path() != "/" {
		target += "?next=" + url.QueryEscape(c.OriginalURL())
	}
	return c.Redirect(target, fiber.StatusSeeOther)
}

// isSetupDone asks omertad until it says yes, then never again. An
// unreachable omertad counts as done: the login page explains the outage.
func (s *Server) isSetupDone(c *fiber.Ctx) bool {
	if s.setupDone.Load() {
		return true
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	st, err := s.be.For(Identity{ClientAddr: clientAddr(c)}).SetupState(ctx)
	if err != nil {
		s.log.Warn("asking omertad whether setup is done", "err", err)
		return true
	}
	if st.Done {
		s.setupDone.Store(true)
	}
	return st.Done
}

// statusOf is the HTTP status omertad answered with, 0 when it did not
// answer at all.
func statusOf(err error) int {
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// messageOf is omertad's own message for a refusal.
func messageOf(err error) string {
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// explain turns an error from omertad into a sentence for the page: what
// happened and what to do next.
func explain(err error) (int, string) {
	st := statusOf(err)
	msg := messageOf(err)
	var de *apiclient.DeniedError
	switch {
	case errors.As(err, &de):
		// A policy's refusal, not the role's: say which rule and why.
		out := "Refused by policy: " + msg + "."
		if why := explainRule(de.Decision.Rule); why != "" {
			out += " " + why
		}
		return st, out
	case st == 0:
		return fiber.StatusBadGateway, "omertad did not answer (" + err.Error() + "). Check that it runs: systemctl status omertad."
	case st == http.StatusUnauthorized:
		return st, "Your session has ended. Sign in again."
	case st == http.StatusForbidden:
		return st, "Your role may not do this: " + msg + ". Ask an administrator if you need it."
	case st == http.StatusNotFound:
		return st, "Not found: " + msg + "."
	case st == http.StatusTooManyRequests:
		return st, "Too many attempts: " + msg + ". Wait a little and try again."
	case st >= 500:
		return fiber.StatusBadGateway, "omertad failed: " + msg + ". Try again; if it persists, see journalctl -u omertad."
	default:
		return st, msg
	}
}

// backendError renders a failed call as an error page.
func (s *Server) backendError(c *fiber.Ctx, err error) error {
	st, msg := explain(err)
	if st == http.StatusUnauthorized {
		clearSessionCookie(c)
		return s.toLogin(c)
	}
	if st >= 500 {
		s.log.Warn("a call to omertad failed", "path", c.Path(), "err", err)
	}
	return s.errorPage(c, st, msg)
}

func (s *Server) errorPage(c *fiber.Ctx, status int, msg string) error {
	p := &page{Title: http.StatusText(status), Who: who(c), Error: msg, D: status}
	if p.Who != nil {
		p.CSRF = p.Who.CSRFToken
	}
	return s.render(c, status, "error", p)
}

// refuse answers a refusal: JSON under /api/, a page elsewhere.
func (s *Server) refuse(c *fiber.Ctx, status int, msg string) error {
	if strings.HasPrefix(c.Path(), "/api/") {
		return c.Status(status).JSON(fiber.Map{"error": msg})
	}
	return s.errorPage(c, status, msg)
}

func (s *Server) notFound(c *fiber.Ctx) error {
	return s.refuse(c, fiber.StatusNotFound, "There is no such page. Use the navigation to find your way.")
}

// errorHandler answers what a handler returned, and what fasthttp refused
// before any handler ran (413, 431, timeouts): with the security headers
// too, since the middleware did not run for those.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	setSecurityHeaders(c)
	c.Set(fiber.HeaderCacheControl, "no-store")
	code := fiber.StatusInternalServerError
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code = fe.Code
	}
	msg := http.StatusText(code)
	switch code {
	case fiber.StatusRequestEntityTooLarge:
		msg = "The request is too large for the console."
	case fiber.StatusRequestHeaderFieldsTooLarge:
		msg = "The request's headers are too large for the console."
	case fiber.StatusInternalServerError:
		s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
		msg = "Something went wrong in the console. Try again; the console's log has the details."
	}
	if fe != nil && code < 500 && code != fiber.StatusRequestEntityTooLarge && code != fiber.StatusRequestHeaderFieldsTooLarge {
		msg = fe.Message
	}
	if strings.HasPrefix(c.Path(), "/api/") || c.Path() == "" {
		return c.Status(code).JSON(fiber.Map{"error": msg})
	}
	if rerr := s.errorPage(c, code, msg); rerr != nil {
		return c.Status(code).SendString(msg)
	}
	return nil
}

// callCtx is the request's context, bounded for a quick call to omertad.
func (s *Server) callCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), s.limits.Call)
}

// slowCallCtx is callCtx for a call that hashes a password.
func (s *Server) slowCallCtx(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), s.limits.Slow)
}

// routeCtx is callCtx for a forwarded call of rt.
func (s *Server) routeCtx(c *fiber.Ctx, rt *route, q url.Values) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.UserContext(), rt.timeout(s.limits, q))
}
