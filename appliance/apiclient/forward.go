package apiclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// forwardHeaders are the only request headers Forward sends of those it
// is given; the credentials come from the client, never from the caller.
var forwardHeaders = []string{"Content-Type", "Accept"}

// Forward sends method pathQuery with body as it is and returns the
// answer unread: for a front that passes answers on byte for byte (the
// console), with no decoding and no second encoding. header gives
// Content-Type and Accept (anything else in it is left out); the client's
// credentials are added as on every call. Any status comes back as an
// answer, not as an error.
//
// The answer's body is bounded: reading more than the client's response
// cap (WithMaxResponse) fails with ErrTooLarge. With stream, the call asks
// for an event stream and no cap or overall timeout applies (ctx ends
// it); the connection and the answer's headers must still come within the
// client's timeout. The caller closes the body.
func (c *Client) Forward(ctx context.Context, method, pathQuery string, header http.Header, body []byte, stream bool) (*http.Response, error) {
	// "http://omertad" + "@host/..." would name another host.
	if !strings.HasPrefix(pathQuery, "/") || strings.HasPrefix(pathQuery, "//") {
		return nil, fmt.Errorf("%s %.200q: %w: the path must start with a single /", method, pathQuery, ErrBadPath)
	}
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://omertad"+pathQuery, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, pathQuery, err)
	}
	for _, k := range forwardHeaders {
		if v := header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	if !stream {
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%s %s on %s: %w", method, pathQuery, c.socket, err)
		}
		resp.Body = &cappedBody{rc: resp.Body, left: c.maxBody, max: c.maxBody, what: method + " " + pathQuery}
		return resp, nil
	}
	return c.forwardStream(req)
}

// forwardStream sends a stream's request: the headers within the client's
// timeout, then no timeout (see openStream).
func (c *Client) forwardStream(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	req = req.WithContext(ctx)
	hc := &http.Client{Transport: c.http.Transport, CheckRedirect: c.http.CheckRedirect}
	var timer *time.Timer
	if c.http.Timeout > 0 {
		timer = time.AfterFunc(c.http.Timeout, cancel)
	}
	resp, err := hc.Do(req)
	stopped := timer == nil || timer.Stop()
	if err != nil || !stopped {
		cancel()
		if err == nil {
			resp.Body.Close()
			err = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("%s %s on %s: %w", req.Method, req.URL.RequestURI(), c.socket, err)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// ErrBadPath is returned (wrapped) by Forward for a path it will not send.
var ErrBadPath = errors.New("bad path")

// cappedBody fails a read past the response cap with ErrTooLarge.
type cappedBody struct {
	rc        io.ReadCloser
	left, max int64
	what      string
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body that ends at the cap from one
		// that goes on.
		var one [1]byte
		for {
			n, err := b.rc.Read(one[:])
			if n > 0 {
				return 0, fmt.Errorf("%s: %w: more than %d bytes", b.what, ErrTooLarge, b.max)
			}
			if err != nil {
				return 0, err
			}
		}
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// cancelBody ends the stream's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// readBody reads at most limit bytes of an answer (limit+1 when more
// came, for the caller to refuse). A body of declared length within the
// limit is read into one buffer of its size rather than one grown by
// doubling: the console reads many answers of tens of kilobytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	r := io.LimitReader(resp.Body, limit+1)
	if n := resp.ContentLength; n >= 0 && n <= limit {
		buf := bytes.NewBuffer(make([]byte, 0, n+1)) // +1: EOF is seen without growing
		_, err := buf.ReadFrom(r)
		return buf.Bytes(), err
	}
	return io.ReadAll(r)
}
