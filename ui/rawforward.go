package ui

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/hangup"
)

// Forwarder is an API that can send a request on as it is and hand the
// answer back unread. With one, the console copies omertad's answer
// instead of decoding and encoding it again (for 200 agents that is most
// of a forwarded call's cost), and copies streams byte for byte. The
// request is still the console's own: the allow-listed route, its checked
// parameters escaped again, the query re-encoded, the identity's headers,
// Content-Type and Accept, nothing else of the client's.
//
// header holds Content-Type and Accept; the client adds the identity.
// With stream, no overall timeout applies: ctx ends the call. The caller
// closes the answer's body.
type Forwarder interface {
	Forward(ctx context.Context, method, pathQuery string, header http.Header, body []byte, stream bool) (*http.Response, error)
}

// maxForwardedAnswer bounds an answer of omertad copied to the client
// (streams excepted): far above the largest list omertad serves.
const maxForwardedAnswer = 8 << 20

// rawPath is the route's pattern with its parameters escaped in.
func rawPath(pattern string, params map[string]string) string {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = url.PathEscape(params[strings.Trim(s, "{}")])
		}
	}
	return strings.Join(segs, "/")
}

// isStream reports whether the request asks for an event stream.
func isStream(rt *route, q url.Values) bool {
	return rt.stream && (rt.pattern == "/api/v1/events" || q.Get("follow") == "true")
}

// forwardRaw is forward's fast path, with fw.
func (s *Server) forwardRaw(c *fiber.Ctx, fw Forwarder, rt *route, params map[string]string, q url.Values, release func()) error {
	pq := rawPath(rt.pattern, params)
	if len(q) > 0 {
		pq += "?" + q.Encode()
	}
	h := http.Header{}
	if body := c.Body(); len(body) > 0 {
		h.Set("Content-Type", fiberJSON)
	}
	accept := c.Get(fiber.HeaderAccept)
	if accept == "" || len(accept) > 256 {
		accept = "*/*"
	}
	h.Set("Accept", accept)
	stream := isStream(rt, q)
	if !stream {
		release()
		return s.forwardAnswer(c, fw, rt, q, pq, h)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	resp, err := fw.Forward(ctx, rt.method, pq, h, nil, true)
	if err != nil {
		cancel()
		release()
		return s.forwardError(c, err)
	}
	copyAnswerHeaders(c, resp.Header)
	c.Status(resp.StatusCode)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		defer cancel()
		defer release()
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		c.Response().SetBodyRaw(body)
		return nil
	}
	c.Set("X-Accel-Buffering", "no")
	c.Response().SetConnectionClose() // see hangup
	conn, timeout := c.Context().Conn(), s.limits.Write
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		defer cancel()
		defer resp.Body.Close()
		hup := hangup.Watch(conn)
		defer hup.Stop()
		// The browser gone ends the call to omertad, and so the copy.
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

// forwardAnswer sends one call on and passes omertad's answer back. An
// answer of known length within maxForwardedAnswer is copied to the
// browser as it comes, after the handler returns, so that the console
// never holds a copy of it (a list of 200 agents is 300 KB, and fifty
// browsers may ask at once); the call's context ends when the copy does.
// Any other answer is read whole first, and refused past the bound.
func (s *Server) forwardAnswer(c *fiber.Ctx, fw Forwarder, rt *route, q url.Values, pq string, h http.Header) error {
	ctx, cancel := s.routeCtx(c, rt, q)
	resp, err := fw.Forward(ctx, rt.method, pq, h, c.Body(), false)
	if err != nil {
		cancel()
		return s.forwardError(c, err)
	}
	if n := resp.ContentLength; n >= 0 && n <= maxForwardedAnswer {
		copyAnswerHeaders(c, resp.Header)
		c.Status(resp.StatusCode)
		c.Response().SetBodyStream(&answerBody{ReadCloser: resp.Body, done: cancel}, int(n))
		return nil
	}
	defer cancel()
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardedAnswer+1))
	if err != nil || len(body) > maxForwardedAnswer {
		return c.Status(fiber.StatusBadGateway).JSON(apitype.Error{Error: "omertad's answer could not be read whole"})
	}
	copyAnswerHeaders(c, resp.Header)
	c.Status(resp.StatusCode)
	c.Response().SetBodyRaw(body)
	return nil
}

// answerBody is omertad's answer as the body fasthttp copies; fasthttp
// closes it when the copy ends, however it ends.
type answerBody struct {
	io.ReadCloser
	done func()
}

func (b *answerBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

// copyBufs are the buffers answers are copied through.
var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// WriteTo copies the answer in pieces of up to 32 KiB. fasthttp would
// copy it through its connection's 4 KiB buffer, and TLS would send a
// record, and the kernel a write, for each 4 KiB; a larger piece goes
// past the empty buffer to TLS whole, in full 16 KiB records. (A list of
// 200 agents is 300 KB.)
func (b *answerBody) WriteTo(w io.Writer) (int64, error) {
	buf := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(buf)
	// The wrappers hide ReadFrom and WriteTo, which would lead back to
	// the small buffer.
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{b.ReadCloser}, buf[:])
}

// answerHeaders are the headers of omertad's answer passed on; the rest
// (omertad's own Date, anything else) stays behind.
var answerHeaders = []string{fiber.HeaderContentType, fiber.HeaderRetryAfter, fiber.HeaderContentDisposition}

func copyAnswerHeaders(c *fiber.Ctx, h http.Header) {
	for _, k := range answerHeaders {
		if v := h.Get(k); v != "" {
			c.Set(k, v)
		}
	}
}

// copyStream copies omertad's stream, its keep-alive comments included,
// flushing each read so that events reach the browser at once. It ends
// with omertad's stream: a browser that went away ends the call (see
// forwardRaw), else shows as a failed write.
// Each write gets a fresh deadline: a stream stays open while the browser
// reads it, and one that stops reading is cut off after timeout.
func copyStream(w *bufio.Writer, r io.Reader, conn net.Conn, timeout time.Duration) {
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if conn != nil {
				_ = conn.SetWriteDeadline(time.Now().Add(timeout))
			}
			if _, werr := w.Write(buf[:n]); werr != nil || w.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
