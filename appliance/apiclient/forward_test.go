package apiclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// TestForwardCopiesTheAnswer: Forward sends the body, Content-Type, Accept
// and the client's credentials, nothing else of the caller's headers, and
// hands back omertad's status, headers and bytes as they came.
func TestForwardCopiesTheAnswer(t *testing.T) {
	answer := []byte(`{"agents":[ {"id":"a"} ]}` + "\n") // spacing kept: nothing re-encodes it
	var got *http.Request
	var gotBody []byte
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusConflict)
		w.Write(answer)
	})
	c := New(sock).As(Credentials{Session: "sess", CSRF: "tok", ClientAddr: "192.0.2.7"})
	defer c.Close()
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"},
		apitype.HeaderSession: {"forged"}, "Cookie": {"x=y"}, "X-Forwarded-For": {"10.0.0.1"}}
	resp, err := c.Forward(context.Background(), http.MethodPost, "/api/v1/agents?x=1", h, []byte(`{"entry":"e"}`), false)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, answer) || resp.StatusCode != http.StatusConflict || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("answer %d %q (Retry-After %q), %v; want omertad's as sent", resp.StatusCode, body, resp.Header.Get("Retry-After"), err)
	}
	if got.Method != http.MethodPost || got.URL.RequestURI() != "/api/v1/agents?x=1" || string(gotBody) != `{"entry":"e"}` {
		t.Errorf("omertad got %s %s %q", got.Method, got.URL.RequestURI(), gotBody)
	}
	want := map[string]string{"Content-Type": "application/json", "Accept": "application/json",
		apitype.HeaderSession: "sess", apitype.HeaderCSRF: "tok", apitype.HeaderClientAddr: "192.0.2.7", "Cookie": "", "X-Forwarded-For": ""}
	for k, v := range want {
		if g := got.Header.Get(k); g != v {
			t.Errorf("omertad got %s: %q, want %q", k, g, v)
		}
	}
}

// TestForwardCapsTheAnswer: an answer past the client's cap fails with
// ErrTooLarge; one of exactly the cap is whole.
func TestForwardCapsTheAnswer(t *testing.T) {
	const limit = 32 << 10
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		n := limit
		if r.URL.Path == "/big" {
			n++
		}
		w.Write(bytes.Repeat([]byte("a"), n))
	})
	c := New(sock, WithMaxResponse(limit))
	defer c.Close()
	for path, wantErr := range map[string]bool{"/big": true, "/fits": false} {
		resp, err := c.Forward(context.Background(), http.MethodGet, path, nil, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := errors.Is(err, ErrTooLarge); got != wantErr || (!wantErr && (err != nil || len(b) != limit)) {
			t.Errorf("%s: %d bytes, %v; want ErrTooLarge %v", path, len(b), err, wantErr)
		}
	}
}

// TestForwardRefusesOtherHosts: a path that would make the URL name
// another host, or no path at all, is never sent.
func TestForwardRefusesOtherHosts(t *testing.T) {
	hit := false
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) { hit = true })
	c := New(sock)
	defer c.Close()
	for _, p := range []string{"@evil.example/api/v1/agents", "//evil.example/x", "", "api/v1/agents", ".evil/x"} {
		if _, err := c.Forward(context.Background(), http.MethodGet, p, nil, nil, false); !errors.Is(err, ErrBadPath) {
			t.Errorf("Forward(%q) = %v, want ErrBadPath", p, err)
		}
	}
	if hit {
		t.Error("a refused path reached the server")
	}
}

// TestForwardStream: a stream outlives the client's timeout as long as
// its headers come within it, and closing the body ends the call.
func TestForwardStream(t *testing.T) {
	ended := make(chan struct{})
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := 0; ; i++ {
			if _, err := w.Write([]byte(": tick\n\n")); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				if r.URL.Path == "/events" {
					close(ended)
				}
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	c := New(sock, WithTimeout(300*time.Millisecond))
	defer c.Close()
	if _, err := c.Forward(context.Background(), http.MethodGet, "/slow", nil, nil, true); err == nil {
		t.Fatal("a stream whose headers came after the timeout was served")
	}
	resp, err := c.Forward(context.Background(), http.MethodGet, "/events", nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second) // past the timeout
	var seen strings.Builder
	buf := make([]byte, 64)
	for time.Now().Before(deadline) {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("the stream ended after %q: %v", seen.String(), err)
		}
		seen.Write(buf[:n])
	}
	resp.Body.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("closing the body did not end the call at the server")
	}
}
