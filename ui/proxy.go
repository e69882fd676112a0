package ui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/hangup"
)

const fiberJSON = fiber.MIMEApplicationJSON

// fwd is one forwarded request as a route's call sees it.
type fwd struct {
	ctx   context.Context
	api   API
	p     map[string]string
	query url.Values
	body  []byte
	// stream is the context of a stream the call opens: it outlives the
	// handler and ends with the client or at Shutdown.
	stream context.Context
}

// badRequest is a refusal by the console itself, before omertad is asked.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{msg: fmt.Sprintf(format, args...)} }

// decode reads the request body into v as omertad would: one JSON value,
// no unknown field, nothing after it.
func (f *fwd) decode(v any) error {
	dec := json.NewDecoder(bytes.NewReader(f.body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badf("request body: empty; a JSON object is expected")
		}
		return badf("request body: %s", err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badf("request body: more than one JSON value")
	}
	return nil
}

func (f *fwd) intQuery(name string, def int) (int, error) {
	v := f.query.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, badf("query parameter %s: %q is not a number", name, v)
	}
	return n, nil
}

func (f *fwd) int64Query(name string, def int64) (int64, error) {
	v := f.query.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, badf("query parameter %s: %q is not a number", name, v)
	}
	return n, nil
}

func (f *fwd) boolQuery(name string) (bool, error) {
	switch v := f.query.Get(name); v {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	default:
		return false, badf("query parameter %s: %q is not true or false", name, v)
	}
}

func (f *fwd) durationQuery(name string) (time.Duration, error) {
	v := f.query.Get(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, badf("query parameter %s: %q is not a duration such as 30s", name, v)
	}
	return d, nil
}

func (f *fwd) int64Param(name string) (int64, error) {
	n, err := strconv.ParseInt(f.p[name], 10, 64)
	if err != nil || n < 1 {
		return 0, badf("%s: %q is not a positive number", name, f.p[name])
	}
	return n, nil
}

// rawAnswer is an answer passed on as omertad sent it (a document, text).
type rawAnswer struct {
	ctype string
	body  []byte
}

func raw(ctype string, b []byte) *rawAnswer { return &rawAnswer{ctype: ctype, body: b} }

// sseAnswer is an open stream: next returns each message, formatted as a
// server-sent event, io.EOF after the last.
type sseAnswer struct {
	next  func() (string, error)
	close func()
}

func agentLogs(f *fwd) (any, error) {
	tail, err := f.intQuery("tail", 0)
	if err != nil {
		return nil, err
	}
	follow, err := f.boolQuery("follow")
	if err != nil {
		return nil, err
	}
	if !follow {
		b, err := f.api.AgentLogs(f.ctx, f.p["id"], tail)
		return raw("text/plain; charset=utf-8", b), err
	}
	ls, err := f.api.FollowAgentLogs(f.stream, f.p["id"], tail)
	if err != nil {
		return nil, err
	}
	ended := false
	return &sseAnswer{close: func() { ls.Close() }, next: func() (string, error) {
		if ended {
			return "", io.EOF
		}
		text, err := ls.Next()
		if errors.Is(err, io.EOF) {
			ended = true
			return "event: " + apitype.EventLogEnd + "\ndata: {}\n\n", nil
		}
		if err != nil {
			return "", err
		}
		b, _ := json.Marshal(text)
		return "event: " + apitype.EventLog + "\ndata: " + string(b) + "\n\n", nil
	}}, nil
}

func events(f *fwd) (any, error) {
	filt := apiclient.EventFilter{Agent: f.query.Get("agent"), Task: f.query.Get("task")}
	if t := f.query.Get("types"); t != "" {
		filt.Types = strings.Split(t, ",")
	}
	es, err := f.api.Events(f.stream, filt)
	if err != nil {
		return nil, err
	}
	ended := false
	return &sseAnswer{close: func() { es.Close() }, next: func() (string, error) {
		if ended {
			return "", io.EOF
		}
		ev, err := es.Next()
		if err != nil {
			return "", err
		}
		if ev.Type == apitype.EventLagged || ev.Type == apitype.EventShutdown {
			ended = true
			data := ev.Data
			if len(data) == 0 || !json.Valid(data) {
				data = json.RawMessage("{}")
			}
			return "event: " + ev.Type + "\ndata: " + string(compactJSON(data)) + "\n\n", nil
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return "", err
		}
		return "id: " + strconv.FormatUint(ev.Seq, 10) + "\nevent: " + ev.Type + "\ndata: " + string(b) + "\n\n", nil
	}}, nil
}

// compactJSON keeps event data on one line, as the format needs.
func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return []byte("{}")
	}
	return out.Bytes()
}

// forward answers an allow-listed /api/v1 request by making the same call
// to omertad through the API client, with the identity the contract asks
// for, built here from the cookie or the Authorization header: none of the
// client's own headers is passed on, so a client cannot speak for another
// address or session.
func (s *Server) forward(c *fiber.Ctx) error {
	rt, params, ok := matchRoute(c.Method(), string(c.Request().URI().PathOriginal()))
	if !ok {
		return c.Status(fiber.StatusNotFound).JSON(apitype.Error{Error: "no such API route on the console"})
	}
	rawQ := string(c.Request().URI().QueryString())
	q, err := url.ParseQuery(rawQ)
	if err != nil || len(rawQ) > maxQuery || len(q) > maxQueryKeys {
		return c.Status(fiber.StatusBadRequest).JSON(apitype.Error{Error: "query: malformed or too large"})
	}
	id := Identity{ClientAddr: clientAddr(c)}
	if tok := bearer(c); tok != "" {
		id.Bearer = tok // a browser never sends a token on its own: no CSRF to check
	} else if sid := sessionID(c); sid != "" {
		id.Session = sid
		if !safeMethod(c.Method()) {
			if id.CSRF = c.Get(CSRFHeader); id.CSRF == "" {
				return c.Status(fiber.StatusForbidden).JSON(apitype.Error{Error: "missing " + CSRFHeader + " header: a state-changing call with a session needs the session's CSRF token"})
			}
		}
	}
	if id.Bearer == "" && id.Session == "" && !rt.public {
		return c.Status(fiber.StatusUnauthorized).JSON(apitype.Error{Error: "sign in first: send the console's session cookie or Authorization: Bearer <API token>"})
	}
	body := c.Body()
	if len(body) > 0 {
		mt, _, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
		if err != nil || mt != fiberJSON {
			return c.Status(fiber.StatusUnsupportedMediaType).JSON(apitype.Error{Error: "the API takes application/json bodies only"})
		}
	}
	release := func() {}
	if rt.stream {
		// Taken before omertad is asked: a refused stream costs omertad
		// nothing.
		select {
		case s.streams <- struct{}{}:
			release = sync.OnceFunc(func() { <-s.streams })
		default:
			c.Set(fiber.HeaderRetryAfter, "5")
			return c.Status(fiber.StatusServiceUnavailable).JSON(apitype.Error{Error: "too many live streams open on the console; close a tab and try again"})
		}
	}
	api := s.be.For(id)
	if fw, ok := api.(Forwarder); ok {
		return s.forwardRaw(c, fw, rt, params, q, release)
	}
	ctx, cancel := s.routeCtx(c, rt, q)
	defer cancel()
	sctx, scancel := context.WithCancel(s.ctx)
	f := &fwd{ctx: ctx, api: api, p: params, query: q, body: body, stream: sctx}
	res, err := rt.call(f)
	if sa, ok := res.(*sseAnswer); ok && err == nil {
		return s.sendStream(c, sa, func() { scancel(); release() })
	}
	scancel()
	release()
	if err != nil {
		return s.forwardError(c, err)
	}
	return sendAnswer(c, rt.status, res)
}

func sendAnswer(c *fiber.Ctx, status int, res any) error {
	if status == 0 {
		status = fiber.StatusOK
	}
	if status == fiber.StatusNoContent {
		return c.SendStatus(status)
	}
	if r, ok := res.(*rawAnswer); ok {
		c.Status(status)
		c.Set(fiber.HeaderContentType, r.ctype)
		return c.Send(r.body)
	}
	return c.Status(status).JSON(res)
}

// forwardError passes omertad's refusal on as omertad gave it: the status,
// the message, the field problems and Retry-After.
func (s *Server) forwardError(c *fiber.Ctx, err error) error {
	var br *badRequest
	var inv *apiclient.InvalidError
	var rl *apiclient.RateLimitedError
	var ae *apiclient.Error
	var de *apiclient.DeniedError
	switch {
	case errors.As(err, &de):
		return c.Status(de.Err.Status).JSON(apitype.Denied{Error: de.Err.Message, Decision: de.Decision})
	case errors.As(err, &br):
		return c.Status(fiber.StatusBadRequest).JSON(apitype.Error{Error: br.msg})
	case errors.As(err, &inv):
		return c.Status(inv.Err.Status).JSON(apitype.Invalid{Error: inv.Err.Message, Problems: inv.Problems})
	case errors.As(err, &rl):
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(rl.RetryAfter.Seconds())))
		return c.Status(rl.Err.Status).JSON(apitype.Error{Error: rl.Err.Message})
	case errors.As(err, &ae):
		return c.Status(ae.Status).JSON(apitype.Error{Error: ae.Message})
	}
	s.log.Warn("forwarding to omertad", "path", c.Path(), "err", err)
	if errors.Is(err, context.DeadlineExceeded) {
		// omertad may still finish what it was asked: say so, rather
		// than that it is down.
		return c.Status(fiber.StatusGatewayTimeout).JSON(apitype.Error{Error: "omertad did not answer in time; what was asked may still happen: look again in a moment"})
	}
	return c.Status(fiber.StatusBadGateway).JSON(apitype.Error{Error: "omertad did not answer; check that it runs (systemctl status omertad)"})
}

// streamHeartbeat is the time between keep-alive comments on a forwarded
// stream, which keep proxies from closing a quiet one. A browser that
// goes away is seen at once (see hangup), not at the next comment.
var streamHeartbeat = 15 * time.Second

// sendStream copies a stream to the client as it comes. It runs after the
// handler returned, in fasthttp's body writer; the stream ends when the
// client goes away (its hangup, a failed write or Flush), when omertad
// ends it, or at Shutdown.
func (s *Server) sendStream(c *fiber.Ctx, sa *sseAnswer, done func()) error {
	c.Set(fiber.HeaderContentType, "text/event-stream; charset=utf-8")
	c.Set("X-Accel-Buffering", "no")
	c.Response().SetConnectionClose() // see hangup
	conn, timeout, stop := c.Context().Conn(), s.limits.Write, s.ctx.Done()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer done()
		defer sa.close()
		hup := hangup.Watch(conn)
		defer hup.Stop()
		msgs := make(chan string)
		go func() {
			defer close(msgs)
			for {
				m, err := sa.next()
				if err != nil {
					return
				}
				select {
				case msgs <- m:
				case <-stop:
					return
				}
			}
		}()
		pumpStream(w, conn, timeout, msgs, stop, hup.Gone())
		sa.close() // ends the reader's call
		for range msgs {
		}
	})
	return nil
}

// pumpStream writes each message, and a comment every streamHeartbeat.
// Each write gets a fresh deadline: a stream stays open while the browser
// reads it, and one that stops reading is cut off after timeout.
func pumpStream(w *bufio.Writer, conn net.Conn, timeout time.Duration, msgs <-chan string, done, gone <-chan struct{}) {
	write := func(s string) bool {
		if conn != nil {
			_ = conn.SetWriteDeadline(time.Now().Add(timeout))
		}
		if _, err := w.WriteString(s); err != nil {
			return false
		}
		return w.Flush() == nil
	}
	if !write(": omerta console\nretry: 3000\n\n") {
		return
	}
	hb := time.NewTicker(streamHeartbeat)
	defer hb.Stop()
	for {
		select {
		case <-done:
			write("event: " + apitype.EventShutdown + "\ndata: {}\n\n")
			return
		case <-gone:
			return
		case <-hb.C:
			if !write(": heartbeat\n\n") {
				return
			}
		case m, ok := <-msgs:
			if !ok || !write(m) {
				return
			}
		}
	}
}
