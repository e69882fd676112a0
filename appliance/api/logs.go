package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// LogSource is what the logs route reads; *agents.Service is one.
type LogSource interface {
	Logs(ctx context.Context, id string, tail int) ([]byte, error)
	FollowLogs(ctx context.Context, id string, tail int) (io.ReadCloser, error)
}

// logChunk bounds one event of a followed log.
const logChunk = 16 << 10

// logRoutes serves GET /agents/{id}/logs?tail=N: the last N lines (default
// 100, at most 10000) of the agent's current log as text/plain, the raw
// bytes the agent wrote (escape them before showing them). With
// ?follow=true the answer is a stream of server-sent events instead: each
// "event: log" carries a piece of the log as a JSON string (invalid UTF-8
// replaced), with keep-alive comments in between, until the client goes
// away or omertad stops.
func (s *Server) logRoutes(r fiber.Router) {
	r.Get("/agents/:id/logs", s.scopedAgent(s.agentLogs))
}

func (s *Server) agentLogs(c *fiber.Ctx) error {
	tail, err := queryInt(c, "tail", apitype.LogTailDefault)
	if err != nil {
		return err
	}
	if tail < 1 || tail > apitype.LogTailMax {
		return fiber.NewError(fiber.StatusBadRequest, "query parameter tail: must be between 1 and "+strconv.Itoa(apitype.LogTailMax))
	}
	follow, err := queryBool(c, "follow")
	if err != nil {
		return err
	}
	id := c.Params("id")
	if !follow {
		b, err := s.deps.Agents.Logs.Logs(c.UserContext(), id, tail)
		if err != nil {
			return s.fail(c, err)
		}
		c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
		c.Set("X-Content-Type-Options", "nosniff")
		return c.Send(b)
	}
	release, err := s.streamSlot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := s.deps.Agents.Logs.FollowLogs(ctx, id, tail)
	if err != nil {
		cancel()
		release()
		return s.fail(c, err)
	}
	conn := streamHeaders(c)
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer release()
		defer cancel()
		defer rc.Close()
		sw := newStreamWriter(w, conn, s.limits.Write)
		defer sw.close()
		s.streamLog(sw, rc)
	})
	return nil
}

// streamLog copies rc to the stream as log events. The reading happens
// in its own goroutine so that the stream can end while the log is quiet
// (the client gone, omertad stopping); it ends when rc is closed.
func (s *Server) streamLog(w *streamWriter, rc io.Reader) {
	chunks := make(chan []byte)
	stop := make(chan struct{})
	defer close(stop)
	go readChunks(rc, chunks, stop)
	if !w.write(": omertad log\n\n") {
		return
	}
	hb := time.NewTicker(s.agents.heartbeat)
	defer hb.Stop()
	var carry []byte
	for {
		select {
		case <-s.agents.done:
			return
		case <-w.gone():
			return
		case <-hb.C:
			if !w.write(": heartbeat\n\n") {
				return
			}
		case b, ok := <-chunks:
			if !ok {
				w.write("event: " + apitype.EventLogEnd + "\ndata: {}\n\n")
				return
			}
			var text []byte
			text, carry = splitRune(append(carry, b...))
			data, _ := json.Marshal(string(text))
			if !w.write("event: " + apitype.EventLog + "\ndata: " + string(data) + "\n\n") {
				return
			}
		}
	}
}

// readChunks sends what r gives, a chunk at a time, until it fails or
// stop is closed.
func readChunks(r io.Reader, out chan<- []byte, stop <-chan struct{}) {
	defer close(out)
	for {
		buf := make([]byte, logChunk)
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case out <- buf[:n]:
			case <-stop:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// splitRune keeps an incomplete UTF-8 sequence at the end of b for the
// next chunk, so that a rune cut between two reads is not mangled.
func splitRune(b []byte) (text, rest []byte) {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			break // ASCII: nothing incomplete
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i], append([]byte(nil), b[len(b)-i:]...)
			}
			break
		}
	}
	return b, nil
}
