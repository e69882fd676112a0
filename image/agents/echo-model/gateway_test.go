package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/gateway"
	"github.com/omertaos/omertaos/appliance/store"
)

// TestThroughGateway is the demo's path: an agent calls the model gateway,
// which forwards to this backend; the usage the backend reports is what
// the gateway records.
func TestThroughGateway(t *testing.T) {
	backend := httptest.NewServer(newModel([]string{"local-echo"}, 30*time.Millisecond, time.Now).handler())
	t.Cleanup(backend.Close)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(gateway.Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := gateway.ParseRegistry([]byte(fmt.Sprintf(`backends:
  - {name: echo, url: %q, kind: local}
models:
  - {name: local-echo, route: [{backend: echo}]}
`, backend.URL+"/v1")), "test")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), st, gateway.Deps{
		Identifier: gateway.IdentifierFunc(func(a netip.Addr) (gateway.AgentRef, bool) {
			return gateway.AgentRef{ID: "demo-agent"}, a.IsLoopback()
		}),
		Policy: gateway.PolicyFunc(func(context.Context, gateway.AgentRef) (gateway.Rules, error) {
			return gateway.Rules{Models: []string{"local-echo"}}, nil
		}),
		Secrets:  gateway.SecretsFunc(func(context.Context, string) ([]byte, error) { return nil, fmt.Errorf("none") }),
		Registry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	t.Cleanup(front.Close)

	resp, out := post(t, front, "/v1/chat/completions", `{"model":"local-echo","messages":[{"role":"user","content":"Hello, gateway!"}]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Omerta-Backend") != "echo" {
		t.Fatalf("chat: %s %v", resp.Status, out)
	}
	if got := out["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"]; got != "Hello, gateway!" {
		t.Fatalf("echo %v", got)
	}
	if resp, out := post(t, front, "/v1/embeddings", `{"model":"local-echo","input":"a b"}`); resp.StatusCode != 200 || len(out["data"].([]any)) != 1 {
		t.Fatalf("embeddings: %s %v", resp.Status, out)
	}
	resp, out = post(t, front, "/v1/completions", `{"model":"local-echo","prompt":"x y z","max_tokens":2}`)
	if resp.StatusCode != 200 || out["choices"].([]any)[0].(map[string]any)["text"] != "x y" {
		t.Fatalf("completions: %s %v", resp.Status, out)
	}

	// A stream through the gateway: tokens arrive spaced by the model's
	// delay, not all at the end.
	start := time.Now()
	sresp, err := http.Post(front.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"local-echo","stream":true,"messages":[{"role":"user","content":"one two three four"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var first, last time.Duration
	var text strings.Builder
	sc := bufio.NewScanner(sresp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if first == 0 {
			first = time.Since(start)
		}
		last = time.Since(start)
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(data), &c) == nil && len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
	}
	io.Copy(io.Discard, sresp.Body)
	sresp.Body.Close()
	if text.String() != "one two three four" || last-first < 120*time.Millisecond {
		t.Fatalf("streamed %q, first event at %s, last at %s", text.String(), first, last)
	}

	if err := gw.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	us, err := gw.RecentUsage(context.Background(), "demo-agent", 10)
	if err != nil || len(us) != 4 {
		t.Fatalf("usage %v %+v", err, us)
	}
	// Newest first: the stream (4 prompt tokens, 4 completion, reported in
	// the usage chunk the gateway asked for), the completion, the
	// embedding, the chat.
	if s := us[0]; !s.Stream || !s.Reported || s.PromptTokens != 4 || s.CompletionTokens != 4 {
		t.Fatalf("stream usage %+v", s)
	}
	if c := us[1]; c.Endpoint != "completions" || c.PromptTokens != 3 || c.CompletionTokens != 2 {
		t.Fatalf("completion usage %+v", c)
	}
	if e := us[2]; e.Endpoint != "embeddings" || e.PromptTokens != 2 || e.CompletionTokens != 0 {
		t.Fatalf("embedding usage %+v", e)
	}
	// "Hello, gateway!" is 4 tokens, echoed.
	if c := us[3]; !c.Reported || c.PromptTokens != 4 || c.CompletionTokens != 4 || c.Backend != "echo" {
		t.Fatalf("chat usage %+v", c)
	}
}
