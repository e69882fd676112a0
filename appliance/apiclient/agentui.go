package apiclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// MaxAgentUIAnswer bounds an answer of an agent's UI read through
// AgentUI: omertad cuts it there too.
const MaxAgentUIAnswer = 32 << 20

// agentUIHeaders are the request headers AgentUI sends of those it is
// given: what a browser needs to say of its request to a web page and
// nothing that identifies it (the client adds the credentials, and
// omertad passes none of them to the agent).
var agentUIHeaders = []string{"Content-Type", "Accept", "Accept-Language", "If-None-Match", "If-Modified-Since", "User-Agent"}

// AgentUI sends a request to agent's own UI through omertad (ANY
// /api/v1/agents/{id}/ui/{path}) and returns the answer unread, whatever
// its status. path is the path below /ui/, starting with a single /, as
// it was written (escapes kept); rawQuery is the query as it was written.
// The connection and the answer's headers must come within the client's
// timeout; the body is then read as it comes, ended by ctx, and a read
// past MaxAgentUIAnswer fails with ErrTooLarge. The caller closes the
// body.
func (c *Client) AgentUI(ctx context.Context, method, agent, path, rawQuery string, header http.Header, body []byte) (*http.Response, error) {
	if err := checkUIPath(path, rawQuery); err != nil {
		return nil, fmt.Errorf("%s the UI of %.100q: %w", method, agent, err)
	}
	pq := "/api/v1/agents/" + url.PathEscape(agent) + "/ui" + path
	if rawQuery != "" {
		pq += "?" + rawQuery
	}
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://omertad"+pq, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %.200q: %w", method, pq, err)
	}
	for _, k := range agentUIHeaders {
		if v := header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.forwardStream(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{rc: resp.Body, left: MaxAgentUIAnswer, max: MaxAgentUIAnswer, what: method + " " + pq}
	return resp, nil
}

// checkUIPath refuses a path or query that would not reach omertad as
// the same request: nothing but printable ASCII, no space or fragment,
// valid escapes, no ? in
// the path, which starts with / (it follows omertad's own prefix, so a
// second / names no other host).
func checkUIPath(path, rawQuery string) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("%w: the path must start with /", ErrBadPath)
	}
	if strings.Contains(path, "?") {
		return fmt.Errorf("%w: the path holds a ?", ErrBadPath)
	}
	for _, s := range []string{path, rawQuery} {
		for i := 0; i < len(s); i++ {
			if b := s[i]; b <= ' ' || b >= 0x7f || b == '#' {
				return fmt.Errorf("%w: byte %#x at %d is not allowed", ErrBadPath, b, i)
			}
		}
	}
	if _, err := url.PathUnescape(path); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPath, err)
	}
	return nil
}
