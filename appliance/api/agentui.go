package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// An agent's own UI, reached through omertad: ANY
// /api/v1/agents/{id}/ui/{path} is passed to the port the agent's
// manifest declares (uiPort), on the address its running container holds
// on the agents' network, and the agent's answer is streamed back.
//
// Who. agents.write (operators and admins): an agent's UI is
// interactive (its forms change what the agent holds), so reading an
// agent's state (agents.read, which auditors have) is not enough. A
// caller restricted to some tenants gets 404 for the others' agents
// (scopedAgent), as on every route naming an agent.
//
// What passes. The agent is foreign code: it gets the request's path
// below /ui/, the query, the body (bounded by Limits.Body, as every
// request), and the request's headers less the hop-by-hop ones and less
// everything that carries the caller's identity to omertad or the
// console (Authorization, Cookie, X-Omerta-*, forwarding headers): an
// agent must never hold a credential it could replay against the API.
// It gets X-Forwarded-Prefix, the console's path of its UI, to build its
// links. Its answer comes back with a short list of headers (no
// Set-Cookie: an agent may not set cookies on the console's origin), is
// streamed as it comes (flushed on every read), and is cut at
// maxAgentUIAnswer bytes and at the server's write timeout. WebSocket
// upgrades are refused (501): the console does not pass them.
//
// Audit. One agents.ui.open record per caller's session (or token) and
// agent within agentUIAuditWindow, kept in a bounded map: a UI loads
// many files, and one record per file would drown the log; a new session,
// or the same one after the window, records again.

// AgentUINetwork reaches agents on the agents' network, from the
// namespace that network lives in.
type AgentUINetwork interface {
	// DialAgent connects to port on the agent's running container. An
	// agent that has no address on the network (not running, not
	// attached) is ErrAgentUnreachable, wrapped.
	DialAgent(ctx context.Context, agent string, port int) (net.Conn, error)
}

// ErrAgentUnreachable: the agent has no address on the agents' network.
var ErrAgentUnreachable = errors.New("the agent is not running on the agents' network")

// Bounds of a UI call.
const (
	// maxAgentUIAnswer bounds one answer of an agent's UI: far above a
	// page, its scripts and images; a download beyond it is cut.
	maxAgentUIAnswer = 32 << 20
	// maxAgentUIHeaders bounds the agent's answer's headers.
	maxAgentUIHeaders = 32 << 10
	// agentUIConnect bounds the connection and the wait for the answer's
	// headers.
	agentUIConnect = 10 * time.Second
	// agentUIAuditWindow is how long one open of an agent's UI by one
	// session covers its later requests in the audit log.
	agentUIAuditWindow = 10 * time.Minute
	maxAgentUIOpens    = 4096
)

// HeaderForwardedPrefix tells the agent where the console serves its UI.
const HeaderForwardedPrefix = "X-Forwarded-Prefix"

// HeaderAgentUI marks an answer that is the agent's (whatever its
// status), so that the console tells it from omertad's own refusals.
const HeaderAgentUI = "X-Omerta-Agent-Ui"

// agentUIRoutes mounts the UI route for the methods the authorization
// table has rows for (HEAD comes with GET).
func (s *Server) agentUIRoutes(r fiber.Router) {
	ui := &agentUIState{s: s, opens: newOpenSet(agentUIAuditWindow, maxAgentUIOpens)}
	h := s.scopedAgent(ui.serve)
	const p = "/agents/:id/ui/*"
	r.Get(p, h)
	r.Post(p, h)
	r.Put(p, h)
	r.Patch(p, h)
	r.Delete(p, h)
}

// UIPort is the port of an agent's UI: its port named "ui", else the one
// named "http", else the first it lists; 0 when it lists none.
func UIPort(m *manifest.Manifest) int {
	if m == nil || len(m.Spec.Ports) == 0 {
		return 0
	}
	for _, name := range []string{"ui", "http"} {
		for _, p := range m.Spec.Ports {
			if p.Name == name {
				return p.Port
			}
		}
	}
	return m.Spec.Ports[0].Port
}

// agentUITarget is the agent's UI port, or the refusal that says why
// there is none to reach.
func (s *Server) agentUITarget(c *fiber.Ctx, id string) (int, error) {
	a, err := s.deps.Agents.Service.Get(c.UserContext(), id)
	if err != nil {
		return 0, err
	}
	qid := terminal.Escape(quoteValue(id))
	port := UIPort(a.Manifest)
	switch {
	case port == 0:
		return 0, fiber.NewError(fiber.StatusNotFound, "agent "+qid+" declares no UI: its manifest lists no spec.ports")
	case a.Manifest.Spec.Network.Mode != manifest.NetworkGateway:
		return 0, fiber.NewError(fiber.StatusConflict, "the UI of agent "+qid+" cannot be reached: its spec.network.mode is "+
			strconv.Quote(a.Manifest.Spec.Network.Mode)+", so it has no network; deploy it with spec.network.mode gateway")
	case s.deps.AgentUI == nil:
		return 0, fmt.Errorf("the UI of agent %s cannot be reached: %w: the agents' network is not running on this appliance (gateway.enabled in omerta.yaml)",
			qid, agents.ErrUnavailable)
	}
	return port, nil
}

// agentUIState is what the UI route keeps: the opens it has recorded.
type agentUIState struct {
	s     *Server
	opens *openSet
}

// serve answers ANY /agents/:id/ui/*.
func (u *agentUIState) serve(c *fiber.Ctx) error {
	s, id := u.s, c.Params("id")
	port, err := s.agentUITarget(c, id)
	if err != nil {
		return s.fail(c, err)
	}
	if c.Get(fiber.HeaderUpgrade) != "" {
		return c.Status(fiber.StatusNotImplemented).JSON(apitype.Error{Error: "an agent's UI is served over plain HTTP requests: upgrades (WebSocket) are not passed on"})
	}
	if err := u.auditOpen(c, id, port); err != nil {
		return err
	}
	req, cancel, err := s.agentUIRequest(c, id)
	if err != nil {
		return err
	}
	resp, err := agentUITransport(s.deps.AgentUI, id, port).RoundTrip(req)
	if err != nil {
		cancel()
		// Answered here, not by the error handler, which logs every 5xx:
		// an agent that is down is its state, not omertad's failure.
		if errors.Is(err, ErrAgentUnreachable) {
			return c.Status(fiber.StatusServiceUnavailable).JSON(apitype.Error{Error: "the UI of agent " + terminal.Escape(quoteValue(id)) +
				" cannot be reached: " + terminal.Escape(err.Error())})
		}
		return c.Status(fiber.StatusBadGateway).JSON(apitype.Error{Error: "the UI of agent " + terminal.Escape(quoteValue(id)) +
			" on port " + strconv.Itoa(port) + " did not answer: " + terminal.Escape(err.Error())})
	}
	s.sendAgentUIAnswer(c, resp, cancel)
	return nil
}

// agentUIRequest is the request the agent gets, and the cancel that ends
// it (with its answer's copy).
func (s *Server) agentUIRequest(c *fiber.Ctx, id string) (*http.Request, context.CancelFunc, error) {
	target := "/" + c.Params("*")
	if q := c.Request().URI().QueryString(); len(q) > 0 {
		target += "?" + string(q)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.limits.Write)
	var body io.Reader
	if b := c.Body(); len(b) > 0 {
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, c.Method(), "http://agent"+target, body)
	if err != nil {
		cancel()
		return nil, nil, fiber.NewError(fiber.StatusBadRequest, "the path for the agent's UI: "+terminal.Escape(err.Error()))
	}
	c.Request().Header.VisitAll(func(k, v []byte) {
		name := http.CanonicalHeaderKey(string(k))
		if passRequestHeader(name) {
			req.Header.Add(name, string(v))
		}
	})
	req.Header.Set(HeaderForwardedPrefix, "/agents/"+id+"/ui")
	req.Host = "agent"
	return req, cancel, nil
}

// hopByHop are the headers of one connection (RFC 9110 7.6.1), never
// passed on in either direction.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
}

// passRequestHeader says whether a caller's header reaches the agent.
// The caller's credentials and omertad's contract headers never do;
// Accept-Encoding does not either, so that the answer comes as the agent
// makes it, uncompressed, and the byte cap counts what is sent.
func passRequestHeader(name string) bool {
	switch {
	case hopByHop[name], strings.HasPrefix(name, "X-Omerta-"), strings.HasPrefix(name, "X-Forwarded-"):
		return false
	}
	switch name {
	case "Authorization", "Cookie", "Host", "Forwarded", "X-Real-Ip", "Accept-Encoding", "Content-Length", "Expect":
		return false
	}
	return true
}

// answerUIHeaders are the headers of the agent's answer passed back.
var answerUIHeaders = []string{
	"Content-Type", "Content-Disposition", "Content-Language", "Cache-Control", "Etag", "Last-Modified",
	"Location", "Retry-After", "Vary", "Expires",
}

// agentUITransport dials the agent's port, whatever the URL's host, on a
// connection of its own (no pool: the agent's address changes with each
// container it gets).
func agentUITransport(n AgentUINetwork, id string, port int) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return n.DialAgent(ctx, id, port)
		},
		DisableKeepAlives: true, DisableCompression: true,
		ResponseHeaderTimeout: agentUIConnect, MaxResponseHeaderBytes: maxAgentUIHeaders,
	}
}

// sendAgentUIAnswer streams resp to the caller, flushing each piece, to
// maxAgentUIAnswer bytes at most; done ends the call to the agent.
func (s *Server) sendAgentUIAnswer(c *fiber.Ctx, resp *http.Response, done context.CancelFunc) {
	c.Status(resp.StatusCode)
	for _, k := range answerUIHeaders {
		if v := resp.Header.Get(k); v != "" {
			c.Set(k, v)
		}
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(HeaderAgentUI, "answer")
	if resp.Header.Get("Content-Type") == "" {
		c.Set(fiber.HeaderContentType, "application/octet-stream")
	}
	if c.Method() == fiber.MethodHead {
		resp.Body.Close()
		done()
		return
	}
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer done()
		defer resp.Body.Close()
		copyFlushing(w, io.LimitReader(resp.Body, maxAgentUIAnswer))
	})
}

// copyFlushing copies r to w, flushing after each read, until either
// ends.
func copyFlushing(w *bufio.Writer, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil || w.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// auditUIOpen records agents.ui.open the first time a session (or
// token) opens an agent's UI within agentUIAuditWindow.
// A session is told from another of the same user by its ID, kept only
// as a prefix of its hash; a token by its ID.
func (u *agentUIState) auditOpen(c *fiber.Ctx, id string, port int) error {
	pr := principalOf(c)
	p := callerOf(pr)
	sum := sha256.Sum256([]byte(c.Get(apitype.HeaderSession)))
	key := fmt.Sprintf("%s\x00%d\x00%x\x00%s", p.Name, pr.TokenID, sum[:8], id)
	if !u.opens.first(key, time.Now()) {
		return nil
	}
	d := map[string]any{"role": p.Role, "address": p.Address, "port": port, "path": quoteCut(c.Path())}
	e := store.AuditEntry{Actor: p.Name, Action: "agents.ui.open", Target: id, Detail: d}
	if err := u.s.deps.Store.Audit(context.WithoutCancel(c.UserContext()), e); err != nil && !errors.Is(err, store.ErrAnchor) {
		u.opens.forget(key)
		return fmt.Errorf("recording the opening of agent %s's UI: %w", quoteValue(id), err)
	}
	return nil
}

// openSet remembers keys seen within a window, at most max of them: past
// max, the expired ones are dropped, and if none has expired the whole
// set is forgotten (some opens are then recorded twice, never none).
type openSet struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	seen   map[string]time.Time
}

func newOpenSet(window time.Duration, max int) *openSet {
	return &openSet{window: window, max: max, seen: map[string]time.Time{}}
}

// first reports whether key was not seen within the window, and
// remembers it from now.
func (o *openSet) first(key string, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if at, ok := o.seen[key]; ok && now.Sub(at) < o.window {
		return false
	}
	if len(o.seen) >= o.max {
		for k, at := range o.seen {
			if now.Sub(at) >= o.window {
				delete(o.seen, k)
			}
		}
		if len(o.seen) >= o.max {
			clear(o.seen)
		}
	}
	o.seen[key] = now
	return true
}

// forget drops key, so that the next request records again (its record
// could not be written).
func (o *openSet) forget(key string) {
	o.mu.Lock()
	delete(o.seen, key)
	o.mu.Unlock()
}
