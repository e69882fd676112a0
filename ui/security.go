package ui

import (
	"crypto/subtle"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// CookieName is the session cookie. The __Host- prefix makes the browser
// refuse it unless it is Secure, has Path=/ and no Domain: no other host,
// not even a sibling subdomain, can set or overwrite it.
const CookieName = "__Host-omerta_session"

// CSRFField and CSRFHeader carry the session's synchronizer token on a
// state-changing request: a form field from the pages, a header from
// scripts and automation.
const (
	CSRFField  = "csrf"
	CSRFHeader = "X-CSRF-Token"
)

// ContentSecurityPolicy allows nothing but the console's own scripts,
// styles and images: no inline script or style, no framing, no form posts
// or connections elsewhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders are sent on every answer, errors and forwarded API
// answers included.
var securityHeaders = [][2]string{
	{"Content-Security-Policy", ContentSecurityPolicy},
	{"Strict-Transport-Security", "max-age=31536000"},
	{"X-Content-Type-Options", "nosniff"},
	{"Referrer-Policy", "no-referrer"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
	{"Cross-Origin-Resource-Policy", "same-origin"},
	{"X-Frame-Options", "DENY"},
	{"Permissions-Policy", "camera=(), microphone=(), geolocation=(), usb=(), payment=()"},
}

func setSecurityHeaders(c *fiber.Ctx) {
	for _, h := range securityHeaders {
		c.Set(h[0], h[1])
	}
}

// headers is the first middleware: every answer gets the security headers
// and, unless a handler says otherwise, is not cached (pages carry the
// CSRF token).
func (s *Server) headers(c *fiber.Ctx) error {
	setSecurityHeaders(c)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Next()
}

func safeMethod(m string) bool {
	return m == fiber.MethodGet || m == fiber.MethodHead || m == fiber.MethodOptions
}

// sameOrigin refuses requests another site made the browser send. Fetch
// metadata first: a state-changing request must come from this origin
// (or from no browser at all); a cross-site read is refused too, except a
// top-level navigation (a link to the console from elsewhere lands on a
// page, without the SameSite=Strict cookie). Without fetch metadata (an
// older browser, a script), Origin decides: a browser sends it on every
// state-changing request, and it must be this host over HTTPS.
//
// Sec-Fetch-Site: same-origin is taken over Origin because browsers set it
// themselves and pages cannot, while Origin is "null" on this console's
// own form posts: with Referrer-Policy: no-referrer, browsers send
// Origin: null for a form's POST (Fetch standard, "serializing a request
// origin").
func (s *Server) sameOrigin(c *fiber.Ctx) error {
	site := c.Get("Sec-Fetch-Site")
	unsafe := !safeMethod(c.Method())
	switch site {
	case "same-origin":
		return c.Next()
	case "", "none":
	case "cross-site", "same-site":
		if unsafe || c.Get("Sec-Fetch-Mode") != "navigate" || c.Method() != fiber.MethodGet {
			return s.refuse(c, fiber.StatusForbidden, "Refused: this request came from another site (Sec-Fetch-Site: "+site+").")
		}
	default:
		return s.refuse(c, fiber.StatusForbidden, "Refused: unknown Sec-Fetch-Site value.")
	}
	if !unsafe {
		return c.Next()
	}
	if origin := c.Get(fiber.HeaderOrigin); origin != "" && !s.originAllowed(c, origin) {
		return s.refuse(c, fiber.StatusForbidden, "Refused: the request's Origin is not this console.")
	}
	return c.Next()
}

// originAllowed: Origin must be https:// and exactly the Host the request
// was sent to ("null", other schemes, other hosts or ports are refused).
func (s *Server) originAllowed(c *fiber.Ctx, origin string) bool {
	host := string(c.Request().Host())
	if host == "" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "https" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return false
	}
	return strings.EqualFold(u.Host, host)
}

// sessionID is the cookie's value when it is shaped like a session ID
// (omertad makes 22 base64url characters; the bounds leave room), else "".
func sessionID(c *fiber.Ctx) string {
	v := c.Cookies(CookieName)
	if len(v) < 16 || len(v) > 128 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return ""
		}
	}
	return v
}

// bearer is the request's API token, "" when there is none or the header
// is not a well-formed Bearer credential.
func bearer(c *fiber.Ctx) string {
	h := c.Get(fiber.HeaderAuthorization)
	const p = "Bearer "
	if len(h) <= len(p) || len(h) > 512 || !strings.EqualFold(h[:len(p)], p) {
		return ""
	}
	tok := strings.TrimSpace(h[len(p):])
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return ""
		}
	}
	return tok
}

// csrfFromRequest is the token the request carries, from the header or
// the form.
func csrfFromRequest(c *fiber.Ctx) string {
	if v := c.Get(CSRFHeader); v != "" {
		return v
	}
	return c.FormValue(CSRFField)
}

// csrfMatches compares in constant time; an empty expected token never
// matches.
func csrfMatches(expected, got string) bool {
	return expected != "" && subtle.ConstantTimeCompare([]byte(expected), []byte(got)) == 1
}

// setSessionCookie hands the browser the session. Max-Age ends it with
// the session's absolute timeout; omertad ends it sooner when idle.
func setSessionCookie(c *fiber.Ctx, sess apitype.Session, now time.Time) {
	age := int(sess.ExpiresAt.Sub(now).Seconds())
	if age <= 0 || sess.ExpiresAt.IsZero() {
		age = 0 // a browser-session cookie
	}
	c.Cookie(&fiber.Cookie{
		Name: CookieName, Value: sess.SessionID, Path: "/", MaxAge: age,
		Secure: true, HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
	})
}

// clearSessionCookie tells the browser to drop the cookie.
func clearSessionCookie(c *fiber.Ctx) {
	c.Cookie(&fiber.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(0, 0),
		Secure: true, HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
	})
}
