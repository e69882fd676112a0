package ui

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// Bounds of the sign-in forms' fields, before anything is sent on.
const (
	maxUsername = 64
	maxPassword = 1024
	maxSecret   = 256
)

type authForm struct {
	Username string
	Next     string
	Token    string
	Done     bool
}

// setupState asks omertad whether setup is done; ok is false (and the
// page answered) when omertad cannot say.
func (s *Server) setupState(c *fiber.Ctx) (done, ok bool, err error) {
	if s.setupDone.Load() {
		return true, true, nil
	}
	ctx, cancel := s.callCtx(c)
	defer cancel()
	st, err := s.be.For(Identity{ClientAddr: clientAddr(c)}).SetupState(ctx)
	if err != nil {
		return false, false, s.backendError(c, err)
	}
	if st.Done {
		s.setupDone.Store(true)
	}
	return st.Done, true, nil
}

func (s *Server) setupPage(c *fiber.Ctx) error {
	done, ok, err := s.setupState(c)
	if !ok {
		return err
	}
	if done {
		return s.notFound(c)
	}
	return s.render(c, fiber.StatusOK, "setup", &page{Title: "Set up the console", D: authForm{}})
}

func (s *Server) setupSubmit(c *fiber.Ctx) error {
	done, ok, err := s.setupState(c)
	if !ok {
		return err
	}
	if done {
		return s.notFound(c)
	}
	f := authForm{Username: strings.TrimSpace(c.FormValue("username"))}
	token, pw, pw2 := strings.TrimSpace(c.FormValue("token")), c.FormValue("password"), c.FormValue("password2")
	again := func(status int, msg string) error {
		return s.render(c, status, "setup", &page{Title: "Set up the console", Error: msg, D: f})
	}
	switch {
	case token == "" || len(token) > maxSecret:
		return again(fiber.StatusBadRequest, "Enter the setup token shown on the appliance's screen at first boot.")
	case f.Username == "" || len(f.Username) > maxUsername:
		return again(fiber.StatusBadRequest, "Choose a username of at most 64 characters.")
	case len(pw) > maxPassword:
		return again(fiber.StatusBadRequest, "The password is too long.")
	case pw != pw2:
		return again(fiber.StatusBadRequest, "The two passwords differ; type the same password twice.")
	}
	ctx, cancel := s.slowCallCtx(c)
	defer cancel()
	sess, err := s.be.For(Identity{ClientAddr: clientAddr(c)}).Setup(ctx, apitype.SetupRequest{Token: token, Username: f.Username, Password: pw})
	if err != nil {
		st, msg := explain(err)
		if st == http.StatusConflict || st == http.StatusNotFound {
			s.setupDone.Store(true)
		}
		if st == http.StatusUnauthorized || st == http.StatusForbidden {
			msg = "The setup token was not accepted: " + messageOf(err) + ". Use the token shown on the appliance's screen; it works once."
		}
		return again(st, msg)
	}
	s.setupDone.Store(true)
	setSessionCookie(c, sess, s.now())
	return c.Redirect("/", fiber.StatusSeeOther)
}

// safeNext accepts a local path to return to after sign-in; anything
// that could leave the console ("//host", "/\host", a scheme) is "/".
func safeNext(next string) string {
	if next == "" || len(next) > 512 || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

func (s *Server) loginPage(c *fiber.Ctx) error {
	if !s.isSetupDone(c) {
		return c.Redirect("/setup", fiber.StatusSeeOther)
	}
	p := &page{Title: "Sign in", D: authForm{Next: safeNext(c.Query("next"))}}
	if c.Query("done") == "reset" {
		p.Notice = "Your password is set. Sign in with it."
	}
	if c.Query("done") == "logout" {
		p.Notice = "You are signed out."
	}
	return s.render(c, fiber.StatusOK, "login", p)
}

func (s *Server) loginSubmit(c *fiber.Ctx) error {
	f := authForm{Username: strings.TrimSpace(c.FormValue("username")), Next: safeNext(c.FormValue("next"))}
	pw := c.FormValue("password")
	again := func(status int, msg string) error {
		return s.render(c, status, "login", &page{Title: "Sign in", Error: msg, D: f})
	}
	if f.Username == "" || pw == "" || len(f.Username) > maxUsername || len(pw) > maxPassword {
		return again(fiber.StatusBadRequest, "Enter your username and password.")
	}
	ctx, cancel := s.slowCallCtx(c)
	defer cancel()
	sess, err := s.be.For(Identity{ClientAddr: clientAddr(c)}).Login(ctx, f.Username, pw)
	if err != nil {
		st, msg := explain(err)
		switch st {
		case http.StatusUnauthorized, http.StatusForbidden:
			// One message for every refusal: whether the account exists
			// is not for this page to say.
			st, msg = http.StatusUnauthorized, "Wrong username or password, or the account is disabled."
		case http.StatusTooManyRequests:
			msg = "Too many sign-in attempts: " + messageOf(err) + ". Wait and try again."
		}
		return again(st, msg)
	}
	setSessionCookie(c, sess, s.now())
	return c.Redirect(f.Next, fiber.StatusSeeOther)
}

func (s *Server) logout(c *fiber.Ctx) error {
	err := api(c).Logout(c.UserContext())
	clearSessionCookie(c)
	if err != nil && statusOf(err) != http.StatusUnauthorized {
		s.log.Warn("logging out at omertad", "err", err)
	}
	return c.Redirect("/login?done=logout", fiber.StatusSeeOther)
}

func (s *Server) resetPage(c *fiber.Ctx) error {
	tok := c.Query("token")
	if tok == "" || len(tok) > maxSecret {
		return s.errorPage(c, fiber.StatusBadRequest, "This reset link is incomplete. Ask an administrator for a new one.")
	}
	return s.render(c, fiber.StatusOK, "reset", &page{Title: "Set your password", D: authForm{Token: tok}})
}

func (s *Server) resetSubmit(c *fiber.Ctx) error {
	f := authForm{Token: c.FormValue("token")}
	pw, pw2 := c.FormValue("password"), c.FormValue("password2")
	again := func(status int, msg string) error {
		return s.render(c, status, "reset", &page{Title: "Set your password", Error: msg, D: f})
	}
	switch {
	case f.Token == "" || len(f.Token) > maxSecret:
		return again(fiber.StatusBadRequest, "This reset link is incomplete. Ask an administrator for a new one.")
	case len(pw) > maxPassword:
		return again(fiber.StatusBadRequest, "The password is too long.")
	case pw != pw2:
		return again(fiber.StatusBadRequest, "The two passwords differ; type the same password twice.")
	}
	ctx, cancel := s.slowCallCtx(c)
	defer cancel()
	if err := s.be.For(Identity{ClientAddr: clientAddr(c)}).CompleteReset(ctx, f.Token, pw); err != nil {
		st, msg := explain(err)
		if st == http.StatusUnauthorized || st == http.StatusForbidden {
			msg = "This reset link does not work any more (used, replaced or expired). Ask an administrator for a new one."
		}
		return again(st, msg)
	}
	return c.Redirect("/login?done=reset", fiber.StatusSeeOther)
}
