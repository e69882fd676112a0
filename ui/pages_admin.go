package ui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// roles are the roles omertad knows, most privileged first, for the
// forms' choices; omertad refuses any other.
var roles = []string{"admin", "operator", "auditor"}

// --- audit log -------------------------------------------------------------

type auditData struct {
	Records []apitype.AuditRecord
	Status  part[apitype.AuditStatus]
	After   int64
	// Older and Newer are the ?after= of the neighbouring pages; -1 when
	// there is none.
	Older, Newer int64
}

const auditPage = 50

func (s *Server) auditPage(c *fiber.Ctx) error {
	w, a, ctx := who(c), api(c), c.UserContext()
	if !can(w, actAuditRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Your role ("+w.Role+") may not read the audit log.")
	}
	d := &auditData{Older: -1, Newer: -1}
	st, err := a.AuditStatus(ctx)
	fill(&d.Status, st, err)
	if v := c.Query("after"); v != "" {
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil || n < 0 {
			return s.errorPage(c, fiber.StatusBadRequest, "The page number is not a record number; use the links below the table.")
		}
		d.After = n
	} else {
		head, herr := s.auditHead(ctx, a)
		if herr != nil {
			return s.backendError(c, herr)
		}
		d.After = max(0, head-auditPage)
	}
	recs, err := a.Audit(ctx, d.After, auditPage)
	if err != nil {
		return s.backendError(c, err)
	}
	d.Records = recs
	if d.After > 0 {
		d.Older = max(0, d.After-auditPage)
	}
	if len(recs) == auditPage {
		d.Newer = recs[len(recs)-1].Seq
	}
	return s.render(c, fiber.StatusOK, "audit", &page{Title: "Audit log", Nav: "audit", Who: w, CSRF: w.CSRFToken, D: d})
}

// --- users -----------------------------------------------------------------

type usersData struct {
	Users    []apitype.User
	Roles    []string
	Created  *apitype.UserCreated
	Reset    *apitype.ResetLink
	ResetURL string
	New      struct{ Username, Role string }
}

func (s *Server) loadUsers(c *fiber.Ctx) (*usersData, error) {
	us, err := api(c).Users(c.UserContext())
	if err != nil {
		return nil, err
	}
	d := &usersData{Users: us, Roles: roles}
	d.New.Role = "operator"
	return d, nil
}

func (s *Server) usersPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actUsersRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators manage users.")
	}
	d, err := s.loadUsers(c)
	if err != nil {
		return s.backendError(c, err)
	}
	notice := map[string]string{"disabled": "The user is disabled and signed out everywhere.", "enabled": "The user is enabled.",
		"role": "The role is changed; the user's sessions have ended."}[c.Query("done")]
	return s.renderUsers(c, fiber.StatusOK, d, notice, "")
}

func (s *Server) renderUsers(c *fiber.Ctx, status int, d *usersData, notice, msg string) error {
	w := who(c)
	return s.render(c, status, "users", &page{Title: "Users", Nav: "users", Who: w, CSRF: w.CSRFToken, Notice: notice, Error: msg, D: d})
}

// resetURL is the one-time link for the user to open.
func resetURL(c *fiber.Ctx, token string) string {
	return "https://" + string(c.Request().Host()) + "/reset?token=" + url.QueryEscape(token)
}

func (s *Server) userCreate(c *fiber.Ctx) error {
	if !can(who(c), actUsersWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators manage users.")
	}
	name, role, pw := trimTo(c.FormValue("username"), maxUsername), c.FormValue("role"), c.FormValue("password")
	cu, err := api(c).CreateUser(c.UserContext(), apitype.UserCreate{Username: name, Role: role, Password: pw})
	d, lerr := s.loadUsers(c)
	if lerr != nil {
		return s.backendError(c, lerr)
	}
	if err != nil {
		st, msg := explain(err)
		if st == http.StatusUnauthorized {
			return s.backendError(c, err)
		}
		d.New.Username, d.New.Role = name, role
		return s.renderUsers(c, st, d, "", msg)
	}
	// The secret is shown on this answer only, never put in a URL.
	d.Created = &cu
	notice := "User " + cu.User.Username + " is created."
	if cu.Reset != nil {
		d.Reset, d.ResetURL = cu.Reset, resetURL(c, cu.Reset.Token)
		notice += " Give them the one-time link below to set their password; it is shown once."
	}
	return s.renderUsers(c, fiber.StatusOK, d, notice, "")
}

func (s *Server) userSubmit(c *fiber.Ctx) error {
	if !can(who(c), actUsersWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators manage users.")
	}
	a, ctx, name := api(c), c.UserContext(), c.Params("name")
	var err error
	var link apitype.ResetLink
	action := c.FormValue("action")
	switch action {
	case "disable":
		_, err = a.DisableUser(ctx, name)
		action = "disabled"
	case "enable":
		_, err = a.EnableUser(ctx, name)
		action = "enabled"
	case "role":
		_, err = a.SetUserRole(ctx, name, c.FormValue("role"))
	case "reset":
		link, err = a.ResetUser(ctx, name)
	default:
		return s.errorPage(c, fiber.StatusBadRequest, "Unknown action; use the buttons on the users page.")
	}
	if err == nil && action != "reset" {
		return c.Redirect("/users?done="+action, fiber.StatusSeeOther)
	}
	d, lerr := s.loadUsers(c)
	if lerr != nil {
		return s.backendError(c, lerr)
	}
	if err != nil {
		st, msg := explain(err)
		if st == http.StatusUnauthorized {
			return s.backendError(c, err)
		}
		return s.renderUsers(c, st, d, "", msg)
	}
	d.Reset, d.ResetURL = &link, resetURL(c, link.Token)
	return s.renderUsers(c, fiber.StatusOK, d, "A one-time reset link for "+link.User+" is below; it is shown once.", "")
}

// --- API tokens ------------------------------------------------------------

type tokensData struct {
	Tokens []apitype.Token
	Roles  []string
	Issued *apitype.TokenIssued
	New    struct{ Name, Role, Days string }
}

func (s *Server) loadTokens(c *fiber.Ctx) (*tokensData, error) {
	ts, err := api(c).Tokens(c.UserContext())
	if err != nil {
		return nil, err
	}
	d := &tokensData{Tokens: ts, Roles: roles}
	d.New.Role = "auditor"
	return d, nil
}

func (s *Server) tokensPage(c *fiber.Ctx) error {
	w := who(c)
	if !can(w, actTokensRead) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators manage API tokens.")
	}
	d, err := s.loadTokens(c)
	if err != nil {
		return s.backendError(c, err)
	}
	notice := ""
	if c.Query("done") == "revoked" {
		notice = "The token is revoked; it no longer works."
	}
	return s.renderTokens(c, fiber.StatusOK, d, notice, "")
}

func (s *Server) renderTokens(c *fiber.Ctx, status int, d *tokensData, notice, msg string) error {
	w := who(c)
	return s.render(c, status, "tokens", &page{Title: "API tokens", Nav: "tokens", Who: w, CSRF: w.CSRFToken, Notice: notice, Error: msg, D: d})
}

// maxTokenDays bounds a token's lifetime as the form takes it.
const maxTokenDays = 3650

func (s *Server) tokenCreate(c *fiber.Ctx) error {
	if !can(who(c), actTokensWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators manage API tokens.")
	}
	name, role, days := trimTo(c.FormValue("name"), 64), c.FormValue("role"), strings.TrimSpace(c.FormValue("days"))
	d, err := s.loadTokens(c)
	if err != nil {
		return s.backendError(c, err)
	}
	d.New.Name, d.New.Role, d.New.Days = name, role, days
	req := apitype.TokenCreate{Name: name, Role: role}
	if days != "" {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > maxTokenDays {
			return s.renderTokens(c, fiber.StatusBadRequest, d, "", "The lifetime is a number of days from 1 to 3650, or blank for a token that does not expire.")
		}
		exp := s.now().Add(time.Duration(n) * 24 * time.Hour).UTC()
		req.ExpiresAt = &exp
	}
	it, err := api(c).CreateToken(c.UserContext(), req)
	if err != nil {
		st, msg := explain(err)
		if st == http.StatusUnauthorized {
			return s.backendError(c, err)
		}
		return s.renderTokens(c, st, d, "", msg)
	}
	if d, err = s.loadTokens(c); err != nil {
		return s.backendError(c, err)
	}
	d.Issued = &it
	return s.renderTokens(c, fiber.StatusOK, d, "Token "+it.Token.Name+" is issued. Copy its secret now: it is shown once.", "")
}

func (s *Server) tokenRevoke(c *fiber.Ctx) error {
	if !can(who(c), actTokensWrite) {
		return s.errorPage(c, fiber.StatusForbidden, "Only administrators manage API tokens.")
	}
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id < 1 {
		return s.errorPage(c, fiber.StatusBadRequest, "No such token; use the buttons on the tokens page.")
	}
	if err := api(c).RevokeToken(c.UserContext(), id); err != nil {
		return s.backendError(c, err)
	}
	return c.Redirect("/tokens?done=revoked", fiber.StatusSeeOther)
}
