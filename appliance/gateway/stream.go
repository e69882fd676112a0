package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// maxReportedTokens bounds the token counts a backend may report; a
// larger or negative figure is not believed (the estimate is charged).
const maxReportedTokens = 1 << 30

var redacted = []byte("[redacted]")

// tokenUsage is what a backend reported.
type tokenUsage struct {
	prompt, completion int64
	reported           bool
}

// parseUsage reads the "usage" member of a JSON answer or stream chunk.
func parseUsage(data []byte, maxDepth int) (tokenUsage, bool) {
	if checkDepth(data, maxDepth) != nil {
		return tokenUsage{}, false
	}
	var v struct {
		Usage *struct {
			Prompt     *int64 `json:"prompt_tokens"`
			Completion *int64 `json:"completion_tokens"`
			Total      *int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(data, &v) != nil || v.Usage == nil || v.Usage.Prompt == nil {
		return tokenUsage{}, false
	}
	p := *v.Usage.Prompt
	var c int64
	switch {
	case v.Usage.Completion != nil:
		c = *v.Usage.Completion
	case v.Usage.Total != nil:
		c = *v.Usage.Total - p // embeddings report prompt and total only
	}
	if p < 0 || c < 0 || p > maxReportedTokens || c > maxReportedTokens {
		return tokenUsage{}, false
	}
	return tokenUsage{prompt: p, completion: c, reported: true}, true
}

// redact replaces every whole occurrence of secret in data.
func redact(data, secret []byte) []byte {
	if len(secret) == 0 || !bytes.Contains(data, secret) {
		return data
	}
	return bytes.ReplaceAll(data, secret, redacted)
}

// heldSuffix is the length of the longest tail of data that could be the
// start of secret: those bytes wait for the next chunk, so that a secret
// split across two reads is still caught. SSE events end in a blank line
// and a credential holds no line break, so at the end of an event nothing
// is held.
func heldSuffix(data, secret []byte) int {
	if len(secret) < 2 {
		return 0
	}
	for i := max(0, len(data)-(len(secret)-1)); i < len(data); i++ {
		if data[i] == secret[0] && bytes.HasPrefix(secret, data[i:]) {
			return len(data) - i
		}
	}
	return 0
}

// forwarder passes a stream on as it comes, with the credential hidden,
// and reads the usage chunk out of its data lines.
type forwarder struct {
	w        io.Writer
	secret   []byte
	tail     []byte
	line     []byte
	lineOver bool
	maxLine  int
	maxDepth int
	usage    tokenUsage
}

func (f *forwarder) write(p []byte) error {
	f.scan(p)
	if len(f.secret) == 0 {
		_, err := f.w.Write(p)
		return err
	}
	data := make([]byte, 0, len(f.tail)+len(p))
	data = append(append(data, f.tail...), p...)
	data = redact(data, f.secret)
	k := heldSuffix(data, f.secret)
	f.tail = append(f.tail[:0], data[len(data)-k:]...)
	_, err := f.w.Write(data[:len(data)-k])
	return err
}

// close writes what was held back.
func (f *forwarder) close() error {
	if len(f.tail) == 0 {
		return nil
	}
	_, err := f.w.Write(f.tail)
	f.tail = nil
	return err
}

// scan cuts p into lines, keeping at most maxLine bytes of the current one.
func (f *forwarder) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		if !f.lineOver {
			if len(f.line)+len(part) > f.maxLine {
				f.lineOver, f.line = true, f.line[:0]
			} else {
				f.line = append(f.line, part...)
			}
		}
		if i < 0 {
			return
		}
		if !f.lineOver {
			f.inspect(f.line)
		}
		f.line, f.lineOver = f.line[:0], false
		p = p[i+1:]
	}
}

var usageKey = []byte(`"usage"`)

func (f *forwarder) inspect(line []byte) {
	payload, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r"), []byte("data:"))
	if !ok || !bytes.Contains(payload, usageKey) {
		return
	}
	if u, ok := parseUsage(bytes.TrimSpace(payload), f.maxDepth); ok {
		f.usage = u
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pipeStream passes server-sent events on chunk by chunk, flushing each,
// until the backend ends the stream, goes quiet for StreamIdleTimeout,
// exceeds MaxStreamBytes or MaxStreamDuration, or the agent goes away.
func (g *Gateway) pipeStream(ctx context.Context, cancel context.CancelCauseFunc, w http.ResponseWriter, r *http.Request,
	resp *http.Response, be *Backend, secret []byte) result {
	defer resp.Body.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(headerBackend, be.Name)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	res := result{outcome: served, status: http.StatusOK, backendOK: true}
	if rc.Flush() != nil {
		res.gone = true
		return res
	}
	idle := time.AfterFunc(g.bounds.StreamIdleTimeout, func() { cancel(errStreamIdle) })
	defer idle.Stop()
	long := time.AfterFunc(g.bounds.MaxStreamDuration, func() { cancel(errStreamTooLong) })
	defer long.Stop()
	fw := &forwarder{w: w, secret: secret, maxLine: g.bounds.MaxLineBytes, maxDepth: g.bounds.MaxJSONDepth}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var total int64
	for {
		n, err := resp.Body.Read(*bp)
		if n > 0 {
			idle.Reset(g.bounds.StreamIdleTimeout)
			over := total+int64(n) > g.bounds.MaxStreamBytes
			if over {
				n = int(g.bounds.MaxStreamBytes - total) // what fits is passed on
			}
			total += int64(n)
			if fw.write((*bp)[:n]) != nil || rc.Flush() != nil {
				res.gone = true
				break
			}
			if over {
				g.log.Warn("gateway stream too large", "backend", be.Name, "limit", g.bounds.MaxStreamBytes)
				res.broken = true
				break
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			res.gone = r.Context().Err() != nil
			res.broken = !res.gone
			if res.broken {
				g.log.Warn("gateway stream broke off", "backend", be.Name, "cause", causeText(ctx))
			}
			break
		}
	}
	if !res.gone && fw.close() == nil {
		rc.Flush()
	}
	res.usage = fw.usage
	return res
}

func causeText(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil {
		return c.Error()
	}
	return "the connection failed"
}
