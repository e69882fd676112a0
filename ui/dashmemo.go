package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// The dashboard page is a function of two things only: omertad's answer
// to GET /api/v1/dashboard for the session, and the session's whoami (the
// navigation, the controls the role gets, the CSRF token in the forms).
// Decoding that answer and executing the templates were most of the
// console's CPU time per dashboard (measured under the load benchmark:
// 45 % the templates, 18 % the JSON, and the collector for their garbage),
// and fifty browsers asking for the same figures got the same page built
// fifty times over.
//
// dashboardMemo keeps, per identity, the page last rendered and the bytes
// it was made from. Every dashboard still asks omertad with its own
// session, and omertad decides what it may see: only when omertad's
// answer is, byte for byte, the one the kept page was made from, and the
// identity is the very same, is the kept page sent instead of rendered
// again. A change of any figure, any section's status or the identity
// makes a new page at once; nothing is kept for a time.

// maxDashboardPages bounds the pages kept (about 9 KB each): a handful of
// people's sessions and a load test's fifty fit; a flood of sessions
// costs renders, not memory.
const maxDashboardPages = 128

// maxDashboardError bounds what is read of a refusal's body.
const maxDashboardError = 64 << 10

type dashboardMemo struct {
	max int

	mu sync.Mutex
	// last is the newest answer decoded: identities that get the same
	// bytes (every admin's dashboard, say) share it and its decoding.
	last  *dashAnswer
	pages map[string]*dashPage
	// renders counts the pages rendered, for tests.
	renders int
}

// dashAnswer is one answer of omertad, as it came and decoded. Neither is
// changed once made, only replaced.
type dashAnswer struct {
	raw  []byte
	dash apitype.Dashboard
}

// dashPage is a rendered page and the answer it was made from.
type dashPage struct {
	ans  *dashAnswer
	body []byte
}

func newDashboardMemo() *dashboardMemo {
	return &dashboardMemo{max: maxDashboardPages, pages: map[string]*dashPage{}}
}

// identityKey is everything of w that a page may show or depend on,
// each field length-prefixed so that no two identities share a key.
func identityKey(w *apitype.Whoami) string {
	var b strings.Builder
	put := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	for _, s := range []string{w.Kind, w.User, w.Role, w.CSRFToken} {
		put(s)
	}
	b.WriteString(strconv.Itoa(len(w.Actions)))
	for _, a := range w.Actions {
		put(a)
	}
	if w.Peer != nil {
		put(fmt.Sprintf("%+v", *w.Peer))
	}
	return b.String()
}

// lookup is the page kept for key and the newest answer decoded.
func (m *dashboardMemo) lookup(key string) (*dashPage, *dashAnswer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pages[key], m.last
}

// keep remembers a page rendered for key. When full, all go (as the
// identity cache does): a page is cheap to make again.
func (m *dashboardMemo) keep(key string, pg *dashPage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renders++
	if _, ok := m.pages[key]; !ok && len(m.pages) >= m.max {
		clear(m.pages)
	}
	m.pages[key] = pg
}

// answer is the decoded answer of raw: the newest one when it is the
// same bytes, else raw decoded, which becomes the newest.
func (m *dashboardMemo) answer(raw []byte, last *dashAnswer) (*dashAnswer, error) {
	if last != nil && bytes.Equal(raw, last.raw) {
		return last, nil
	}
	a := &dashAnswer{raw: raw}
	if err := json.Unmarshal(raw, &a.dash); err != nil {
		return nil, fmt.Errorf("GET /api/v1/dashboard: decoding the response: %w", err)
	}
	m.mu.Lock()
	m.last = a
	m.mu.Unlock()
	return a, nil
}

// dashboardRaw is the dashboard through fw: omertad's answer read, and
// the kept page sent when it was made from the same answer for the same
// identity. Anything but a plain 200 is answered as the typed call's
// error would be, and nothing of it is kept.
func (s *Server) dashboardRaw(c *fiber.Ctx, fw Forwarder, w *apitype.Whoami) error {
	ctx := c.UserContext()
	resp, err := fw.Forward(ctx, http.MethodGet, "/api/v1/dashboard", http.Header{"Accept": {fiberJSON}}, nil, false)
	if err != nil {
		return s.dashboardPage(c, w, dashboardFailed(w, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := answerError(resp)
		if statusOf(err) == http.StatusNotFound {
			return s.dashboardPage(c, w, s.dashboardCalls(ctx, w, api(c)))
		}
		return s.dashboardPage(c, w, dashboardFailed(w, err))
	}
	key := identityKey(w)
	pg, last := s.dash.lookup(key)
	kept := []byte(nil)
	switch {
	case pg != nil:
		kept = pg.ans.raw
	case last != nil:
		kept = last.raw
	}
	raw, same, err := readUnlessSame(resp, kept, maxMemoAnswer)
	if err != nil {
		return s.dashboardPage(c, w, dashboardFailed(w, fmt.Errorf("GET /api/v1/dashboard: reading the response: %w", err)))
	}
	if same && pg != nil {
		return sendPage(c, pg.body)
	}
	if same {
		raw = kept
	}
	ans, err := s.dash.answer(raw, last)
	if err != nil {
		return s.dashboardPage(c, w, dashboardFailed(w, err))
	}
	d := dashboardFrom(w, ans.dash)
	if dashboardUnauthorized(d) {
		clearSessionCookie(c)
		return s.toLogin(c)
	}
	body, err := s.renderBytes("dashboard", dashboardView(w, d))
	if err != nil {
		return err
	}
	s.dash.keep(key, &dashPage{ans: ans, body: body})
	return sendPage(c, body)
}

// answerError is a refusal of omertad's as the API client reports one:
// its status and its message.
func answerError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxDashboardError))
	msg := string(b)
	var e apitype.Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if len(msg) > 1024 {
		msg = msg[:1024] + "…"
	}
	return &apiclient.Error{Method: http.MethodGet, Path: "/api/v1/dashboard", Status: resp.StatusCode, Message: msg}
}

// sendPage sends a rendered page that is never changed once made (a kept
// one is replaced, not written to), so fasthttp may send it uncopied.
func sendPage(c *fiber.Ctx, body []byte) error {
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Response().SetBodyRaw(body)
	return nil
}
