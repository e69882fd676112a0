package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// Credentials say who a call is made as. The zero value sends none: root
// on omertad's socket is served as the system without them; any other
// caller needs Session (with CSRF for changes) or Bearer.
type Credentials struct {
	Session    string // the console's session cookie value
	CSRF       string // the session's CSRF token, sent with every call
	Bearer     string // an API token
	ClientAddr string // the browser's IP address (believed from non-root callers only)
}

// merge is cr with the fields set in over replacing its own.
func (cr Credentials) merge(over Credentials) Credentials {
	for _, f := range []struct{ dst, src *string }{
		{&cr.Session, &over.Session}, {&cr.CSRF, &over.CSRF}, {&cr.Bearer, &over.Bearer}, {&cr.ClientAddr, &over.ClientAddr},
	} {
		if *f.src != "" {
			*f.dst = *f.src
		}
	}
	return cr
}

// WithCredentials makes every call of the client carry cr.
func WithCredentials(cr Credentials) Option {
	return func(c *Client) { c.http.Transport = withCreds(c.http.Transport, cr) }
}

// WithSession makes every call carry a console session and its CSRF token.
func WithSession(id, csrf string) Option {
	return WithCredentials(Credentials{Session: id, CSRF: csrf})
}

// WithBearer makes every call carry an API token.
func WithBearer(token string) Option { return WithCredentials(Credentials{Bearer: token}) }

// WithClientAddr makes every call report the browser's address.
func WithClientAddr(ip string) Option { return WithCredentials(Credentials{ClientAddr: ip}) }

// As returns a view of c whose calls carry cr (over the credentials c
// already carries), sharing c's connections: cheap enough for the console
// to make one for each browser request.
func (c *Client) As(cr Credentials) *Client {
	cp := *c
	cp.http = &http.Client{Transport: withCreds(c.http.Transport, cr), Timeout: c.http.Timeout, CheckRedirect: c.http.CheckRedirect}
	return &cp
}

// credTransport adds the credentials' headers to every request.
type credTransport struct {
	base http.RoundTripper
	cr   Credentials
}

func withCreds(rt http.RoundTripper, cr Credentials) http.RoundTripper {
	if ct, ok := rt.(*credTransport); ok {
		return &credTransport{base: ct.base, cr: ct.cr.merge(cr)}
	}
	return &credTransport{base: rt, cr: cr}
}

func (t *credTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for _, h := range [...]struct{ k, v string }{
		{apitype.HeaderSession, t.cr.Session}, {apitype.HeaderCSRF, t.cr.CSRF}, {apitype.HeaderClientAddr, t.cr.ClientAddr},
	} {
		if h.v != "" {
			req.Header.Set(h.k, h.v)
		}
	}
	if t.cr.Bearer != "" {
		req.Header.Set(apitype.HeaderAuthorization, "Bearer "+t.cr.Bearer)
	}
	return t.base.RoundTrip(req)
}

// RateLimitedError is a 429: the *Error, and when to try again.
type RateLimitedError struct {
	Err        *Error
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string { return e.Err.Error() }

// Unwrap makes errors.As(err, &*Error) find the 429.
func (e *RateLimitedError) Unwrap() error { return e.Err }

// maxRetryAfter bounds what a server's Retry-After can make a caller wait.
const maxRetryAfter = 24 * time.Hour

// authCall sends method path with body (JSON, when not nil) and decodes a
// 2xx answer into into (when not nil).
func (c *Client) authCall(ctx context.Context, method, path string, body, into any) error {
	status, hdr, data, err := c.authRaw(ctx, method, path, body)
	if err != nil {
		return err
	}
	if status == http.StatusTooManyRequests {
		e := &Error{Method: method, Path: path, Status: status, Message: errorMessage(data)}
		secs, _ := strconv.Atoi(hdr.Get("Retry-After"))
		secs = min(max(secs, 1), int(maxRetryAfter/time.Second))
		return &RateLimitedError{Err: e, RetryAfter: time.Duration(secs) * time.Second}
	}
	if status < 200 || status > 299 {
		return answerError(method, path, status, data) // an *InvalidError when fields are named
	}
	if into == nil {
		return nil
	}
	if err := decode(data, into); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// authRaw sends a request and reads at most maxBody bytes of the answer.
func (c *Client) authRaw(ctx context.Context, method, path string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, fmt.Errorf("%s %s: encoding the request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://omertad"+path, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s on %s: %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	data, err := readBody(resp, c.maxBody)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: reading the response: %w", method, path, err)
	}
	if int64(len(data)) > c.maxBody {
		return 0, nil, nil, fmt.Errorf("%s %s: %w: more than %d bytes", method, path, ErrTooLarge, c.maxBody)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// SetupState calls GET /api/v1/setup.
func (c *Client) SetupState(ctx context.Context) (apitype.SetupState, error) {
	var s apitype.SetupState
	return s, c.authCall(ctx, http.MethodGet, "/api/v1/setup", nil, &s)
}

// Setup calls POST /api/v1/setup: redeem the setup token, create the first
// admin, and start its session.
func (c *Client) Setup(ctx context.Context, r apitype.SetupRequest) (apitype.Session, error) {
	var s apitype.Session
	return s, c.authCall(ctx, http.MethodPost, "/api/v1/setup", r, &s)
}

// Login calls POST /api/v1/login. A session the client carries is ended.
func (c *Client) Login(ctx context.Context, username, password string) (apitype.Session, error) {
	var s apitype.Session
	return s, c.authCall(ctx, http.MethodPost, "/api/v1/login", apitype.LoginRequest{Username: username, Password: password}, &s)
}

// Logout calls POST /api/v1/logout: the session the client carries ends.
func (c *Client) Logout(ctx context.Context) error {
	return c.authCall(ctx, http.MethodPost, "/api/v1/logout", nil, nil)
}

// Identity calls GET /api/v1/whoami: the caller's kind, user, role, the
// actions the role allows, and (for a session) its CSRF token.
func (c *Client) Identity(ctx context.Context) (apitype.Whoami, error) {
	var w apitype.Whoami
	return w, c.authCall(ctx, http.MethodGet, "/api/v1/whoami", nil, &w)
}

// CompleteReset calls POST /api/v1/reset: set a password with a reset link.
func (c *Client) CompleteReset(ctx context.Context, token, password string) error {
	return c.authCall(ctx, http.MethodPost, "/api/v1/reset", apitype.ResetRequest{Token: token, Password: password}, nil)
}

// ChangePassword calls POST /api/v1/password for the session's own account.
func (c *Client) ChangePassword(ctx context.Context, current, next string) error {
	return c.authCall(ctx, http.MethodPost, "/api/v1/password", apitype.PasswordChange{CurrentPassword: current, NewPassword: next}, nil)
}

// Users calls GET /api/v1/users.
func (c *Client) Users(ctx context.Context) ([]apitype.User, error) {
	var l apitype.UserList
	return l.Users, c.authCall(ctx, http.MethodGet, "/api/v1/users", nil, &l)
}

// User calls GET /api/v1/users/{name}.
func (c *Client) User(ctx context.Context, name string) (apitype.User, error) {
	var u apitype.User
	return u, c.authCall(ctx, http.MethodGet, userPath(name, ""), nil, &u)
}

// CreateUser calls POST /api/v1/users.
func (c *Client) CreateUser(ctx context.Context, u apitype.UserCreate) (apitype.UserCreated, error) {
	var out apitype.UserCreated
	return out, c.authCall(ctx, http.MethodPost, "/api/v1/users", u, &out)
}

// DisableUser calls POST /api/v1/users/{name}/disable; the user's
// sessions end.
func (c *Client) DisableUser(ctx context.Context, name string) (apitype.User, error) {
	var u apitype.User
	return u, c.authCall(ctx, http.MethodPost, userPath(name, "/disable"), nil, &u)
}

// EnableUser calls POST /api/v1/users/{name}/enable.
func (c *Client) EnableUser(ctx context.Context, name string) (apitype.User, error) {
	var u apitype.User
	return u, c.authCall(ctx, http.MethodPost, userPath(name, "/enable"), nil, &u)
}

// ResetUser calls POST /api/v1/users/{name}/reset: a one-time reset link.
func (c *Client) ResetUser(ctx context.Context, name string) (apitype.ResetLink, error) {
	var l apitype.ResetLink
	return l, c.authCall(ctx, http.MethodPost, userPath(name, "/reset"), nil, &l)
}

// SetUserRole calls PUT /api/v1/users/{name}/role; the user's sessions end.
func (c *Client) SetUserRole(ctx context.Context, name, role string) (apitype.User, error) {
	var u apitype.User
	return u, c.authCall(ctx, http.MethodPut, userPath(name, "/role"), apitype.RoleChange{Role: role}, &u)
}

func userPath(name, suffix string) string { return "/api/v1/users/" + url.PathEscape(name) + suffix }

// Tokens calls GET /api/v1/tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) ([]apitype.Token, error) {
	var l apitype.TokenList
	return l.Tokens, c.authCall(ctx, http.MethodGet, "/api/v1/tokens", nil, &l)
}

// CreateToken calls POST /api/v1/tokens; the answer's Secret is shown once.
func (c *Client) CreateToken(ctx context.Context, t apitype.TokenCreate) (apitype.TokenIssued, error) {
	var out apitype.TokenIssued
	return out, c.authCall(ctx, http.MethodPost, "/api/v1/tokens", t, &out)
}

// RevokeToken calls DELETE /api/v1/tokens/{id}.
func (c *Client) RevokeToken(ctx context.Context, id int64) error {
	return c.authCall(ctx, http.MethodDelete, "/api/v1/tokens/"+strconv.FormatInt(id, 10), nil, nil)
}

// Report calls GET /api/v1/report: the first-boot report and what
// verifying it against the device's key found.
func (c *Client) Report(ctx context.Context) (apitype.ReportView, error) {
	var v apitype.ReportView
	return v, c.authCall(ctx, http.MethodGet, "/api/v1/report", nil, &v)
}

// ReportHTML calls GET /api/v1/report.html: the report as a printable page.
func (c *Client) ReportHTML(ctx context.Context) ([]byte, error) {
	return c.rawBody(ctx, "/api/v1/report.html")
}

// OpenAPI calls GET /api/v1/openapi.json.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	return c.rawBody(ctx, "/api/v1/openapi.json")
}

func (c *Client) rawBody(ctx context.Context, path string) ([]byte, error) {
	status, _, data, err := c.authRaw(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, &Error{Method: http.MethodGet, Path: path, Status: status, Message: errorMessage(data)}
	}
	return data, nil
}

// IsStatus reports whether err is an *Error with the given status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}
