package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const streamBody = `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":10}`

// sse writes server-sent events and flushes after each.
func sse(w http.ResponseWriter, events ...string) {
	for _, ev := range events {
		fmt.Fprintf(w, "data: %s\n\n", ev)
		w.(http.Flusher).Flush()
	}
}

func startStream(t *testing.T, e *env, from string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/v1/chat/completions", strings.NewReader(streamBody))
	req.Header.Set("Content-Type", "application/json")
	resp, err := clientFrom(from).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp, cancel
}

// readEvent reads one event (up to its blank line), failing after wait.
func readEvent(t *testing.T, r *bufio.Reader, wait time.Duration) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if err != nil || line == "\n" {
				got <- b.String()
				return
			}
		}
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(wait):
		t.Fatalf("no event within %s", wait)
	}
	return ""
}

// TestStreamPassThrough: the first chunk reaches the agent while the
// backend is still holding back the rest, so nothing buffers the stream;
// the bytes arrive as sent, and the usage chunk the gateway asked for is
// charged.
func TestStreamPassThrough(t *testing.T) {
	release := make(chan struct{})
	first := `{"choices":[{"index":0,"delta":{"content":"one"}}]}`
	rest := []string{`{"choices":[{"index":0,"delta":{"content":" two"}}]}`,
		`{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}`, "[DONE]"}
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		sse(w, first)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		sse(w, rest...)
	})
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	resp, _ := startStream(t, e, "127.0.0.1")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	if got := readEvent(t, br, 5*time.Second); got != "data: "+first+"\n\n" {
		t.Fatalf("first event %q", got)
	}
	close(release)
	tail, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	want := "data: " + strings.Join(rest, "\n\ndata: ") + "\n\n"
	if string(tail) != want {
		t.Fatalf("rest of the stream %q, want %q", tail, want)
	}
	_, sent := b.lastRequest()
	if opts, _ := sent["stream_options"].(map[string]any); sent["stream"] != true || opts["include_usage"] != true {
		t.Fatalf("backend got %v", sent)
	}
	us := e.recent("agent-a")
	if len(us) != 1 || !us[0].Stream || !us[0].Reported || us[0].PromptTokens != 4 || us[0].CompletionTokens != 2 || us[0].Code != "" {
		t.Fatalf("usage %+v", us)
	}
}

func TestStreamKeepsClientOptions(t *testing.T) {
	req, err := parseRequest([]byte(`{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":1}}`), 8, epChat)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(req.body("b")); got != `{"model":"b","stream":true,"stream_options":{"include_usage":true,"x":1}}` {
		t.Fatalf("body %s", got)
	}
}

// TestStreamIdle: a backend that goes quiet mid-stream is cut off after
// the idle timeout, counts as a failure for its circuit, and the request
// is recorded as interrupted and charged its estimate.
func TestStreamIdle(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		sse(w, `{"choices":[{"delta":{"content":"x"}}]}`)
		<-r.Context().Done()
	})
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}}),
		opts: []Option{WithBounds(Bounds{StreamIdleTimeout: 200 * time.Millisecond}), WithBreaker(1, time.Minute)}})
	allowAll(e.policy, false)
	start := time.Now()
	resp, _ := startStream(t, e, "127.0.0.1")
	body, _ := io.ReadAll(resp.Body)
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second {
		t.Fatalf("stream ended after %s", took)
	}
	if !bytes.HasPrefix(body, []byte("data: ")) {
		t.Fatalf("body %q", body)
	}
	us := e.recent("agent-a")
	if us[0].Code != codeStreamInterrupted || us[0].Reported || us[0].ChargedTokens == 0 {
		t.Fatalf("usage %+v", us[0])
	}
	if st := e.gw.BreakerState("b1"); st != BreakerOpen {
		t.Fatalf("breaker %s after a broken stream", st)
	}
}

// TestStreamClientGone: when the agent hangs up, the backend's request is
// cancelled too.
func TestStreamClientGone(t *testing.T) {
	cancelled := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		sse(w, `{"choices":[{"delta":{"content":"x"}}]}`)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	})
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	resp, cancel := startStream(t, e, "127.0.0.1")
	readEvent(t, bufio.NewReader(resp.Body), 5*time.Second)
	cancel()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request was not cancelled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if us := e.recent("agent-a"); len(us) == 1 {
			if us[0].Code != codeClientGone {
				t.Fatalf("usage %+v", us[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no usage recorded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := e.gw.BreakerState("b1"); st != BreakerClosed {
		t.Fatalf("an agent hanging up changed the circuit: %s", st)
	}
}

// TestStreamRefusedByBackend: a 4xx answer to a stream is passed on as
// it came, JSON.
func TestStreamRefusedByBackend(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":{"message":"context too long","type":"invalid_request_error","code":"context_length_exceeded"}}`))
	})
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	a := e.do("127.0.0.1", http.MethodPost, "/v1/chat/completions", nil, streamBody)
	if a.status != http.StatusBadRequest || a.err.Code != "context_length_exceeded" {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if us := e.recent("agent-a"); us[0].ChargedTokens != 0 || us[0].Status != 400 {
		t.Fatalf("usage %+v", us[0])
	}
}

func TestStreamTooLarge(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 100 && r.Context().Err() == nil; i++ {
			sse(w, strings.Repeat("x", 1000))
		}
	})
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}}),
		opts: []Option{WithBounds(Bounds{MaxStreamBytes: 10000})}})
	allowAll(e.policy, false)
	resp, _ := startStream(t, e, "127.0.0.1")
	body, _ := io.ReadAll(resp.Body)
	if len(body) > 10000 || len(body) == 0 {
		t.Fatalf("passed on %d bytes of a stream capped at 10000", len(body))
	}
	if us := e.recent("agent-a"); us[0].Code != codeStreamInterrupted {
		t.Fatalf("usage %+v", us[0])
	}
}

func TestForwarderRedactsAcrossReads(t *testing.T) {
	secret := []byte("abcdefgh")
	for _, split := range [][]string{
		{"xx abcd", "efgh yy\n"},
		{"xx a", "bcdefg", "h yy\n"},
		{"xx abcdefgh", " yy\n"},
		{"xx abc", "x abcdefgh yy\n"},
		{"aaaa", "bcdefgh yy\n"},
	} {
		var out bytes.Buffer
		f := &forwarder{w: &out, secret: secret, maxLine: 1 << 10, maxDepth: 8}
		for _, p := range split {
			if err := f.write([]byte(p)); err != nil {
				t.Fatal(err)
			}
		}
		f.close()
		in := strings.Join(split, "")
		want := strings.ReplaceAll(in, "abcdefgh", "[redacted]")
		if out.String() != want {
			t.Errorf("%q: got %q, want %q", split, out.String(), want)
		}
	}
}

func TestForwarderUsageLines(t *testing.T) {
	var out bytes.Buffer
	f := &forwarder{w: &out, maxLine: 64, maxDepth: 8}
	in := "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n" +
		"data: {\"pad\":\"" + strings.Repeat("z", 100) + "\",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}}\n\n" +
		"data: {\"usage\":null}\n\n"
	for i := 0; i < len(in); i += 7 {
		f.write([]byte(in[i:min(i+7, len(in))]))
	}
	if out.String() != in {
		t.Fatal("the stream was changed")
	}
	// The long line is passed on unread; the null usage changes nothing.
	if f.usage != (tokenUsage{prompt: 1, completion: 2, reported: true}) {
		t.Fatalf("usage %+v", f.usage)
	}
}
