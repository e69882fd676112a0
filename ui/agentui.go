package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/hangup"
)

// An agent's own UI in the console: ANY /agents/{id}/ui/{path} is sent
// to omertad's /api/v1/agents/{id}/ui/{path} for the signed-in session,
// and the agent's answer streamed back. omertad decides who may
// (agents.write, the caller's tenants), records the opening, and passes
// the agent nothing of the caller's identity.
//
// The agent's page is the agent's content on the console's origin, so it
// is served under its own Content-Security-Policy, AgentUIPolicy:
//
//   - sandbox, with allow-forms and allow-same-origin but without
//     allow-scripts: no script of the agent's runs at all, so it cannot
//     read the console's pages (their CSRF token), call the API, or read
//     anything the session may see. Without allow-same-origin and with
//     allow-scripts instead (the other way to contain a script), the
//     page gets an opaque origin: the browser then treats every request
//     it makes, its stylesheet, its links and its form posts, as
//     cross-site, and never sends the SameSite=Strict session cookie with
//     them: the UI would show its first page and nothing after it. An
//     agent UI that needs scripts needs an origin of its own, which this
//     console does not give yet.
//   - form-action 'self' and default-src 'self': the page's forms and
//     files stay on the console; frame-ancestors 'none' as every page.
//
// Changes (POST, PUT, PATCH, DELETE) from the agent's forms cannot carry
// the console's CSRF token: the agent never sees it. What stands in its
// place: the sameOrigin middleware (a request another site made the
// browser send is refused by its Fetch metadata or Origin), and here a
// Referer that must be a page of this same agent's UI on this console
// (the answers are served with Referrer-Policy: same-origin for that),
// so that one agent's page cannot post to another agent's UI, nor a
// console page be made to. Having checked that, the console sends the
// session's CSRF token itself, as omertad wants one on every change.

// AgentUIPolicy is the Content-Security-Policy of an agent's answer.
const AgentUIPolicy = "sandbox allow-forms allow-same-origin; default-src 'self'; script-src 'none'; object-src 'none'; " +
	"img-src 'self' data:; style-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'"

// AgentUIForwarder is an API that can send a request to an agent's UI;
// *apiclient.Client is one.
type AgentUIForwarder interface {
	AgentUI(ctx context.Context, method, agent, path, rawQuery string, header http.Header, body []byte) (*http.Response, error)
}

// agentUIHeader marks an answer that is the agent's: omertad sets it on
// what it passes back from the agent, never on its own refusals.
const agentUIHeader = "X-Omerta-Agent-Ui"

// agentUIAnswerHeaders are the headers of the agent's answer passed to
// the browser; Location is rewritten (agentUILocation).
var agentUIAnswerHeaders = []string{fiber.HeaderContentType, fiber.HeaderContentDisposition, fiber.HeaderContentLanguage,
	fiber.HeaderETag, fiber.HeaderLastModified, fiber.HeaderRetryAfter, fiber.HeaderVary}

// agentUIPrefix is the console's path of an agent's UI.
func agentUIPrefix(id string) string { return "/agents/" + id + "/ui" }

// agentUI answers ANY /agents/:id/ui/*.
func (s *Server) agentUI(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validParam(id) {
		return s.notFound(c)
	}
	switch c.Method() {
	case fiber.MethodGet, fiber.MethodHead, fiber.MethodPost, fiber.MethodPut, fiber.MethodPatch, fiber.MethodDelete:
	default:
		return s.refuse(c, fiber.StatusMethodNotAllowed, "An agent's UI takes GET, HEAD, POST, PUT, PATCH and DELETE.")
	}
	prefix := agentUIPrefix(id)
	rawPath, rawQuery, _ := strings.Cut(c.OriginalURL(), "?")
	rest, ok := strings.CutPrefix(rawPath, prefix)
	if !ok {
		return s.notFound(c)
	}
	if rest == "" {
		if !safeMethod(c.Method()) {
			return s.notFound(c)
		}
		// Relative links of the agent's pages resolve against the slash.
		return c.Redirect(prefix+"/", fiber.StatusFound)
	}
	sid := sessionID(c)
	if sid == "" {
		return s.toLogin(c)
	}
	ident := Identity{Session: sid, ClientAddr: clientAddr(c)}
	if !safeMethod(c.Method()) {
		if !s.fromAgentUI(c, prefix) {
			return s.refuse(c, fiber.StatusForbidden, "Refused: a change to an agent's UI must come from a page of that agent's UI in this console.")
		}
		ctx, cancel := s.callCtx(c)
		w, err := s.be.For(ident).Identity(ctx)
		cancel()
		if err != nil {
			return s.backendError(c, err)
		}
		ident.CSRF = w.CSRFToken
	}
	fw, ok := s.be.For(ident).(AgentUIForwarder)
	if !ok {
		return s.refuse(c, fiber.StatusNotImplemented, "This console cannot reach agents' UIs.")
	}
	return s.forwardAgentUI(c, fw, id, rest, rawQuery)
}

// fromAgentUI reports whether the request's Referer is a page of this
// agent's UI on this console.
func (s *Server) fromAgentUI(c *fiber.Ctx, prefix string) bool {
	ref := c.Get(fiber.HeaderReferer)
	u, err := url.Parse(ref)
	if ref == "" || err != nil || u.Scheme != "https" || u.User != nil || !strings.EqualFold(u.Host, string(c.Request().Host())) {
		return false
	}
	return strings.HasPrefix(u.EscapedPath(), prefix+"/")
}

// forwardAgentUI sends the request on and streams the answer back.
func (s *Server) forwardAgentUI(c *fiber.Ctx, fw AgentUIForwarder, id, path, rawQuery string) error {
	h := http.Header{}
	for _, k := range []string{"Content-Type", "Accept", "Accept-Language", "If-None-Match", "If-Modified-Since", "User-Agent"} {
		if v := c.Get(k); v != "" && len(v) <= 1024 {
			h.Set(k, v)
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.limits.Write)
	resp, err := fw.AgentUI(ctx, c.Method(), id, path, rawQuery, h, c.Body())
	if err != nil {
		cancel()
		if errors.Is(err, apiclient.ErrBadPath) {
			return s.errorPage(c, fiber.StatusBadRequest, "This address cannot be passed to the agent's UI.")
		}
		return s.backendError(c, err)
	}
	if resp.Header.Get(agentUIHeader) == "" {
		// omertad's own answer: a refusal, explained as on any page.
		defer cancel()
		return s.agentUIRefusal(c, resp)
	}
	c.Status(resp.StatusCode)
	for _, k := range agentUIAnswerHeaders {
		if v := resp.Header.Get(k); v != "" {
			c.Set(k, v)
		}
	}
	if loc := resp.Header.Get(fiber.HeaderLocation); loc != "" {
		c.Set(fiber.HeaderLocation, agentUILocation(agentUIPrefix(id), loc))
	}
	c.Set(fiber.HeaderContentSecurityPolicy, AgentUIPolicy)
	c.Set(fiber.HeaderReferrerPolicy, "same-origin")
	if c.Method() == fiber.MethodHead {
		resp.Body.Close()
		cancel()
		return nil
	}
	conn, timeout := c.Context().Conn(), s.limits.Write
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer cancel()
		defer resp.Body.Close()
		hup := hangup.Watch(conn)
		defer hup.Stop()
		go func() {
			select {
			case <-hup.Gone():
				cancel()
			case <-ctx.Done():
			}
		}()
		copyStream(w, resp.Body, conn, timeout)
	})
	return nil
}

// agentUILocation keeps a redirect of the agent's inside its UI: a path
// the agent wrote for itself ("/done") is put under the UI's prefix, one
// already under it is kept, a relative one is kept, and one to another
// host, or any that is not plain URL text, goes to the UI's first page
// instead.
func agentUILocation(prefix, loc string) string {
	u, err := url.Parse(loc)
	switch {
	// Browsers drop spaces, tabs and newlines from a URL and read \ as /:
	// " //evil" and "/\\evil" would name another host.
	case err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(loc, "//") || !plainURLText(loc):
		return prefix + "/"
	case !strings.HasPrefix(loc, "/"):
		return loc
	case loc == prefix || strings.HasPrefix(loc, prefix+"/"):
		return loc
	}
	return prefix + loc
}

// plainURLText reports whether s is printable ASCII without space or \.
func plainURLText(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b <= ' ' || b >= 0x7f || b == '\\' {
			return false
		}
	}
	return true
}

// agentUIRefusal renders omertad's refusal of a UI request: the login
// page for an ended session, else an error page with omertad's reason.
func (s *Server) agentUIRefusal(c *fiber.Ctx, resp *http.Response) error {
	defer resp.Body.Close()
	var e apitype.Error
	msg := http.StatusText(resp.StatusCode)
	if err := decodeLimited(resp, &e); err == nil && e.Error != "" {
		msg = e.Error
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		clearSessionCookie(c)
		return s.toLogin(c)
	case http.StatusForbidden:
		return s.errorPage(c, resp.StatusCode, "Your role may not use agents' UIs: "+msg+". Ask an administrator if you need it.")
	case http.StatusNotFound:
		return s.errorPage(c, resp.StatusCode, "Not found: "+msg+".")
	}
	return s.errorPage(c, resp.StatusCode, msg+".")
}

// decodeLimited decodes omertad's JSON refusal, of 64 KiB at most.
func decodeLimited(resp *http.Response, v any) error {
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(v)
}

// agentUILink is the agent page's way to the agent's UI: Href when it can
// be opened, else Reason.
type agentUILink struct {
	Port   int
	Href   string
	Reason string
}

// UI is the agent's UI as its page shows it; nil when its manifest lists
// no port. The port is omertad's choice (api.UIPort): the one named ui,
// else http, else the first.
func (d *agentData) UI() *agentUILink {
	ps := d.Manifest.Spec.Ports
	if len(ps) == 0 {
		return nil
	}
	l := &agentUILink{Port: ps[0].Port}
	for _, name := range []string{"http", "ui"} { // ui last: it wins
		for _, p := range ps {
			if p.Name == name {
				l.Port = p.Port
				break
			}
		}
	}
	if mode := d.Manifest.Spec.Network.Mode; mode != "gateway" {
		if mode == "" {
			mode = "none"
		}
		l.Reason = "Its UI (port " + strconv.Itoa(l.Port) + ") cannot be opened: spec.network.mode is " + mode +
			", so the agent has no network. Deploy it with spec.network.mode gateway to reach it through the console."
		return l
	}
	l.Href = agentUIPrefix(url.PathEscape(d.Agent.ID)) + "/"
	return l
}
