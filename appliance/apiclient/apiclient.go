// Package apiclient is the typed client of omertad's internal API over its
// unix socket, for the CLI, the console, the tests and the end-to-end test,
// and over HTTPS through the console (NewRemote) for the CLI elsewhere.
//
// The server is treated as any other input: responses are size-capped,
// decoded into the apitype bodies, and a refusal comes back as an *Error
// carrying the HTTP status and the server's message, to be matched with
// errors.As, not by its text.
package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// DefaultMaxResponse is the largest response body read: an audit page of
// 1000 records or a probe of a large machine fits many times over.
const DefaultMaxResponse = 8 << 20

// DefaultTimeout bounds one call, connection to last byte.
const DefaultTimeout = 30 * time.Second

// maxIdleConns is how many idle connections to omertad a client keeps
// (omertad serves 128 at once, see api.DefaultLimits).
const maxIdleConns = 64

// Client talks to one omertad, over its unix socket (New) or over HTTPS
// through the console (NewRemote): the same calls, caps and errors, the
// transport underneath told apart. It is safe for concurrent use.
type Client struct {
	// socket is where calls go, for errors: the socket's path, or the
	// base URL of a remote client (NewRemote).
	socket  string
	http    *http.Client
	maxBody int64
	// remote is set by NewRemote: the options that only it uses.
	remote *remoteConf
}

// Option configures New.
type Option func(*Client)

// WithTimeout bounds each call (default DefaultTimeout); the context passed
// to a call can end it sooner.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.http.Timeout = d } }

// WithMaxResponse caps the response body read (default DefaultMaxResponse).
func WithMaxResponse(n int64) Option { return func(c *Client) { c.maxBody = n } }

// New returns a client of the API served on the unix socket at socketPath.
// Nothing is dialled until the first call.
func New(socketPath string, opts ...Option) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxResponseHeaderBytes: 64 << 10,
		// The console makes many calls side by side (a page's sections,
		// 50 browsers); with Go's default of 2 idle connections per host
		// most calls would dial omertad afresh. MaxIdleConns bounds what
		// stays open.
		MaxIdleConns:        maxIdleConns,
		MaxIdleConnsPerHost: maxIdleConns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	c := &Client{socket: socketPath, http: &http.Client{Transport: tr, Timeout: DefaultTimeout}, maxBody: DefaultMaxResponse}
	for _, o := range opts {
		o(c)
	}
	// The API never redirects; a redirect would be a server out of its
	// mind, not somewhere to follow it to.
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Error is a non-2xx answer: its HTTP status and the server's message.
type Error struct {
	Method  string
	Path    string
	Status  int
	Message string
}

func (e *Error) Error() string {
	// The message is the server's text; quote it so that it cannot pass
	// for anything else on a terminal or in a log.
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), strconv.Quote(e.Message))
}

// ErrTooLarge is returned (wrapped) when a response exceeds the cap.
var ErrTooLarge = errors.New("response too large")

// Health calls GET /healthz. An unhealthy daemon answers with a Health body
// too: it is returned along with an *Error of status 503.
func (c *Client) Health(ctx context.Context) (apitype.Health, error) {
	var h apitype.Health
	status, body, err := c.do(ctx, "/healthz")
	if err != nil {
		return h, err
	}
	if derr := decode(body, &h); derr != nil && status == http.StatusOK {
		return h, fmt.Errorf("GET /healthz: %w", derr)
	}
	if status != http.StatusOK {
		msg := h.Status
		if h.Store != "" {
			msg += ": store: " + h.Store
		}
		if msg == "" {
			msg = errorMessage(body)
		}
		return h, &Error{Method: http.MethodGet, Path: "/healthz", Status: status, Message: msg}
	}
	return h, nil
}

// Version calls GET /api/v1/version.
func (c *Client) Version(ctx context.Context) (apitype.Version, error) {
	var v apitype.Version
	return v, c.get(ctx, "/api/v1/version", &v)
}

// Audit calls GET /api/v1/audit: up to limit records with seq > after,
// oldest first. limit 0 means the server's default.
func (c *Client) Audit(ctx context.Context, after int64, limit int) ([]apitype.AuditRecord, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var recs []apitype.AuditRecord
	return recs, c.get(ctx, "/api/v1/audit?"+q.Encode(), &recs)
}

// AuditStatus calls GET /api/v1/audit/status: the chain as verified at start.
func (c *Client) AuditStatus(ctx context.Context) (apitype.AuditStatus, error) {
	var s apitype.AuditStatus
	return s, c.get(ctx, "/api/v1/audit/status", &s)
}

// Probe calls GET /api/v1/probe: the latest probe and its verdict.
func (c *Client) Probe(ctx context.Context) (apitype.ProbeView, error) {
	var v apitype.ProbeView
	return v, c.get(ctx, "/api/v1/probe", &v)
}

// Drift calls GET /api/v1/probe/drift: up to limit events, newest first.
// limit 0 means the server's default.
func (c *Client) Drift(ctx context.Context, limit int) (apitype.DriftView, error) {
	path := "/api/v1/probe/drift"
	if limit != 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var v apitype.DriftView
	return v, c.get(ctx, path, &v)
}

func (c *Client) get(ctx context.Context, path string, into any) error {
	status, body, err := c.do(ctx, path)
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return &Error{Method: http.MethodGet, Path: path, Status: status, Message: errorMessage(body)}
	}
	if err := decode(body, into); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// do sends GET path and reads at most maxBody bytes of the answer.
func (c *Client) do(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://omertad"+path, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s on %s: %w", path, c.socket, err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp, c.maxBody)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: reading the response: %w", path, err)
	}
	if int64(len(body)) > c.maxBody {
		return 0, nil, fmt.Errorf("GET %s: %w: more than %d bytes", path, ErrTooLarge, c.maxBody)
	}
	return resp.StatusCode, body, nil
}

func decode(body []byte, into any) error {
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("decoding the response: %w", err)
	}
	return nil
}

// maxMessage bounds the server's message kept in an *Error.
const maxMessage = 1024

// errorMessage is the server's {"error": ...} text, or, from a server that
// did not send one, the start of what it sent.
func errorMessage(body []byte) string {
	var e apitype.Error
	msg := string(body)
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	return msg
}
