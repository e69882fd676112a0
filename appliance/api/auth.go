package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// omertad decides who calls and what they may do, for every route:
//
//   - root on the socket (the CLI) without credentials is auth.System("root");
//   - any other peer, that is a member of daemon.socket_group (the console),
//     presents a session (apitype.HeaderSession, with apitype.HeaderCSRF on
//     a change) or an API token (Authorization: Bearer), or gets 401;
//   - the route's rule (authz.go) then says which action the role must
//     allow; a role without it gets 403.
//
// apitype.HeaderClientAddr, the browser's address, is believed only from a
// peer other than root: root has no browser behind it, and a header is not
// how root would lie about its address anyway.

const principalKey = "omerta.principal"

// authenticate is the middleware in front of every route.
func (s *Server) authenticate(c *fiber.Ctx) error {
	// Answers carry sessions, secrets and state of the moment: never
	// to be kept by anything between omertad and the browser.
	c.Set(fiber.HeaderCacheControl, "no-store")
	r := matchRule(c.Method(), c.Path())
	if r == nil {
		// The same answer fiber gives for a route it does not have.
		return fiber.NewError(fiber.StatusNotFound, "Cannot "+c.Method()+" "+html.EscapeString(c.Path()))
	}
	p, err := s.principal(c, r)
	if err != nil {
		return s.authError(c, err)
	}
	if err := authorize(c, r, p); err != nil {
		if mutating(c.Method()) {
			if aerr := s.auditRefusal(c, r, p, err); aerr != nil {
				return aerr
			}
		}
		return s.authError(c, err)
	}
	c.Locals(principalKey, p)
	return c.Next()
}

// principal finds who calls. On a public route, credentials that do not
// authenticate are ignored rather than refused: a browser with an expired
// cookie must still reach the login page.
func (s *Server) principal(c *fiber.Ctx, r *rule) (auth.Principal, error) {
	peer, ok := PeerFrom(c)
	if !ok {
		return auth.Principal{}, fmt.Errorf("%w: no peer credentials: the API is served on a unix socket only", auth.ErrForbidden)
	}
	addr, err := clientAddress(c, peer)
	if err != nil {
		return auth.Principal{}, err
	}
	sess, bearer := c.Get(apitype.HeaderSession), c.Get(apitype.HeaderAuthorization)
	var p auth.Principal
	switch {
	case sess != "" && bearer != "":
		return auth.Principal{}, fmt.Errorf("%w: send a session or a bearer token, not both", auth.ErrUnauthenticated)
	case sess == "" && bearer == "":
		switch {
		case peer.UID == 0:
			p = auth.System("root")
		case !r.public:
			return auth.Principal{}, fmt.Errorf("%w: a caller other than root must present a session (%s) or an API token (Authorization: Bearer)",
				auth.ErrUnauthenticated, apitype.HeaderSession)
		}
	default:
		p, err = s.credentials(c.UserContext(), sess, bearer)
		if err != nil {
			if r.public && errors.Is(err, auth.ErrUnauthenticated) {
				err, p = nil, auth.Principal{}
			} else {
				return auth.Principal{}, err
			}
		}
	}
	p.Address = addr
	return p, nil
}

// credentials checks a session ID or an Authorization header.
func (s *Server) credentials(ctx context.Context, sess, authorization string) (auth.Principal, error) {
	if s.deps.Auth == nil {
		return auth.Principal{}, fmt.Errorf("%w: this omertad checks no sessions or tokens", auth.ErrUnauthenticated)
	}
	if sess != "" {
		return s.deps.Auth.Authenticate(ctx, sess)
	}
	tok, ok := bearerToken(authorization)
	if !ok {
		return auth.Principal{}, fmt.Errorf("%w: the Authorization header is not \"Bearer <token>\"", auth.ErrUnauthenticated)
	}
	return s.deps.Auth.AuthenticateToken(ctx, tok)
}

// bearerToken is the token of "Bearer <token>" (the scheme in any case,
// RFC 9110), or false.
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// clientAddress is the address recorded for the caller: the browser's,
// as the console reports it, or the local uid.
func clientAddress(c *fiber.Ctx, peer apitype.Peer) (string, error) {
	h := c.Get(apitype.HeaderClientAddr)
	if h == "" || peer.UID == 0 {
		return "local:uid=" + strconv.FormatUint(uint64(peer.UID), 10), nil
	}
	return parseClientAddr(h)
}

// parseClientAddr accepts an IP address without a zone, as its canonical
// text (an IPv4-mapped IPv6 address as IPv4).
func parseClientAddr(h string) (string, error) {
	a, err := netip.ParseAddr(h)
	if err != nil || a.Zone() != "" {
		return "", &auth.InvalidError{Field: apitype.HeaderClientAddr, Reason: "must be an IP address, as " + strconv.Quote(cut(h, maxQuoted)) + " is not"}
	}
	return a.Unmap().String(), nil
}

// authorize checks p against the route's rule, and a session's CSRF token
// on a change.
func authorize(c *fiber.Ctx, r *rule, p auth.Principal) error {
	if r.public {
		return nil
	}
	if mutating(c.Method()) {
		if err := auth.CheckCSRF(p, c.Get(apitype.HeaderCSRF)); err != nil {
			return err
		}
	}
	if r.rootOnly && p.Kind != auth.KindSystem {
		return fmt.Errorf("%w: only root on omertad's socket may %s %s: omertad opens the path it is given", auth.ErrForbidden, r.method, r.path)
	}
	if !auth.Allowed(p.Role, r.action) {
		return fmt.Errorf("%w: role %q may not %s", auth.ErrForbidden, p.Role, r.action)
	}
	return nil
}

// maxAuditPath bounds the request path kept in a refusal's record.
const maxAuditPath = 256

// auditRefusal records a change refused to an authenticated caller. Calls
// without credentials are not recorded: anyone who can connect could fill
// the log with them, and failed logins are the auth domain's to record.
func (s *Server) auditRefusal(c *fiber.Ctx, r *rule, p auth.Principal, cause error) error {
	if p.Kind == "" {
		return nil
	}
	ca := callerOf(p)
	d := map[string]any{"role": ca.Role, "address": ca.Address, "outcome": "refused", "reason": cause.Error(),
		"path": quoteCut(c.Path())}
	err := s.deps.Store.Audit(context.WithoutCancel(c.UserContext()), store.AuditEntry{Actor: ca.Name, Action: "api.refused", Target: r.key(), Detail: d})
	if err != nil && !errors.Is(err, store.ErrAnchor) {
		return fmt.Errorf("recording a refused %s: %w", r.key(), err)
	}
	return nil
}

// maxQuoted bounds a request value quoted in an error message.
const maxQuoted = 64

// quoteCut cuts foreign text that goes into a record.
func quoteCut(s string) string { return cut(s, maxAuditPath) }

// cut shortens s to n bytes and valid UTF-8.
func cut(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// principalOf is the caller authenticate found; the zero Principal (no
// kind, no role) for an anonymous caller of a public route.
func principalOf(c *fiber.Ctx) auth.Principal {
	p, _ := c.Locals(principalKey).(auth.Principal)
	return p
}

// Caller is who made a request, for the audit records of the domains the
// API serves: Actor(c).String() is what they record as the actor.
type Caller struct {
	// Kind is "session", "token", "system", or "" for an anonymous caller
	// of a public route.
	Kind string
	// Name: "user:alice", "token:ci", "system:root" or "anonymous".
	Name string
	// Role is the caller's role, "" when anonymous.
	Role string
	// Address is the browser's IP as the console reported it, or
	// "local:uid=N" for a process on the machine.
	Address string
}

// String is "user:alice (admin) from 192.0.2.7".
func (c Caller) String() string {
	role := c.Role
	if role == "" {
		role = "no role"
	}
	return c.Name + " (" + role + ") from " + c.Address
}

// Actor is the caller of the request c, as authentication found it.
func Actor(c *fiber.Ctx) Caller { return callerOf(principalOf(c)) }

func callerOf(p auth.Principal) Caller {
	ca := Caller{Kind: string(p.Kind), Role: string(p.Role), Address: p.Address}
	switch p.Kind {
	case auth.KindSession:
		ca.Name = "user:" + p.User
	case auth.KindSystem:
		ca.Name = "system:" + p.User
	case auth.KindToken:
		ca.Name = p.User // already "token:<name>"
	default:
		ca.Name = "anonymous"
	}
	return ca
}

// authError answers an error of the auth domain (or of authentication)
// with its status; anything else goes to the error handler as a 500.
// Setup and reset refusals show only the sentinel's own message, so that a
// guesser learns nothing of why.
func (s *Server) authError(c *fiber.Ctx, err error) error {
	var rl *auth.RateLimitError
	var inv *auth.InvalidError
	switch {
	case errors.As(err, &rl):
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(rl.RetryAfterSeconds()))
		return fiber.NewError(fiber.StatusTooManyRequests, rl.Error())
	case errors.As(err, &inv):
		return c.Status(fiber.StatusBadRequest).JSON(apitype.Invalid{Error: inv.Error(),
			Problems: []apitype.Problem{{Path: inv.Field, Code: "invalid", Reason: inv.Reason}}})
	case errors.Is(err, auth.ErrSetupToken):
		return fiber.NewError(fiber.StatusForbidden, auth.ErrSetupToken.Error())
	case errors.Is(err, auth.ErrResetToken):
		return fiber.NewError(fiber.StatusForbidden, auth.ErrResetToken.Error())
	case errors.Is(err, auth.ErrBadCredentials):
		return fiber.NewError(fiber.StatusUnauthorized, auth.ErrBadCredentials.Error())
	}
	for _, m := range []struct {
		err  error
		code int
	}{
		{auth.ErrUnauthenticated, fiber.StatusUnauthorized},
		{auth.ErrForbidden, fiber.StatusForbidden},
		{auth.ErrNotFound, fiber.StatusNotFound},
		{auth.ErrConflict, fiber.StatusConflict},
		{auth.ErrSetupDone, fiber.StatusConflict},
		{auth.ErrInvalid, fiber.StatusBadRequest},
	} {
		if errors.Is(err, m.err) {
			return fiber.NewError(m.code, err.Error())
		}
	}
	return err
}

// committed turns the error of an action that did commit but whose audit
// anchor could not be written into a logged alarm: the caller's action
// happened, and answering it as failed would be a lie.
func (s *Server) committed(c *fiber.Ctx, err error) error {
	if errors.Is(err, store.ErrAnchor) {
		s.log.Error("audit anchor not written", "method", c.Method(), "route", c.Route().Path, "err", err)
		return nil
	}
	return err
}

// authRoutes mounts whoami, and, with an auth domain, login, logout, the
// password routes, users and tokens.
func (s *Server) authRoutes(v1 fiber.Router) {
	v1.Get("/whoami", s.identify)
	if s.deps.Auth == nil {
		return
	}
	s.setupRoutes(v1)
	v1.Post("/login", s.login)
	v1.Post("/logout", s.logout)
	v1.Post("/reset", s.completeReset)
	v1.Post("/password", s.changePassword)
	s.userRoutes(v1)
	s.tokenRoutes(v1)
}

// identify answers GET /whoami.
func (s *Server) identify(c *fiber.Ctx) error {
	p := principalOf(c)
	w := apitype.Whoami{Kind: string(p.Kind), User: p.User, Role: string(p.Role), Actions: allowedActions(p.Role), CSRFToken: p.CSRFToken()}
	if peer, ok := PeerFrom(c); ok {
		w.Peer = &peer
	}
	return c.JSON(w)
}

// allowedActions lists what role may do, sorted (auth.Actions is).
func allowedActions(role auth.Role) []string {
	out := []string{}
	for _, a := range auth.Actions() {
		if auth.Allowed(role, a) {
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) login(c *fiber.Ctx) error {
	var req apitype.LoginRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	sess, err := s.deps.Auth.Login(c.UserContext(), auth.LoginRequest{
		Username: req.Username, Password: req.Password, Address: principalOf(c).Address,
		PreviousSessionID: c.Get(apitype.HeaderSession),
	})
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	return c.JSON(sessionView(sess))
}

func sessionView(s auth.Session) apitype.Session {
	return apitype.Session{SessionID: s.ID, CSRFToken: s.CSRFToken, User: s.User, Role: string(s.Role),
		ExpiresAt: s.ExpiresAt, IdleTimeoutS: int64(s.IdleTimeout / time.Second)}
}

func (s *Server) logout(c *fiber.Ctx) error {
	if err := s.committed(c, s.deps.Auth.Logout(c.UserContext(), principalOf(c))); err != nil {
		return s.authError(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Server) completeReset(c *fiber.Ctx) error {
	var req apitype.ResetRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	err := s.deps.Auth.CompleteReset(c.UserContext(), auth.ResetRequest{Token: req.Token, Password: req.Password, Address: principalOf(c).Address})
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Server) changePassword(c *fiber.Ctx) error {
	var req apitype.PasswordChange
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	err := s.deps.Auth.ChangePassword(c.UserContext(), principalOf(c), req.CurrentPassword, req.NewPassword)
	if err = s.committed(c, err); err != nil {
		return s.authError(c, err)
	}
	return c.SendStatus(fiber.StatusNoContent)
}

// decodeStrict decodes the request's JSON body into v: one object, no
// unknown member, nothing after it. The body is bounded by Limits.Body.
// Error messages are escaped: they quote the body.
func decodeStrict(c *fiber.Ctx, v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fiber.NewError(fiber.StatusBadRequest, "request body: empty; a JSON object is expected")
		}
		return fiber.NewError(fiber.StatusBadRequest, "request body: "+terminal.Escape(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fiber.NewError(fiber.StatusBadRequest, "request body: more than one JSON value")
	}
	return nil
}
