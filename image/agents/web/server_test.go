package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var started = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testServer(t *testing.T) (*server, *httptest.Server) {
	t.Helper()
	s := newServer(`web <b>"x"</b>`, "0.1.0", started, func() time.Time { return started.Add(90*time.Minute + 1500*time.Millisecond) })
	ts := httptest.NewServer(s.handler())
	t.Cleanup(ts.Close)
	return s, ts
}

func get(t *testing.T, ts *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := ts.Client().Get(ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func postForm(t *testing.T, ts *httptest.Server, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := ts.Client().PostForm(ts.URL+"/extract", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestStatusPage(t *testing.T) {
	_, ts := testServer(t)
	get(t, ts, "/healthz")
	resp, body := get(t, ts, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	for _, want := range []string{
		`<h1>web &lt;b&gt;&#34;x&#34;&lt;/b&gt;</h1>`, // the name, escaped
		`<dd id="uptime">1h30m1s</dd>`,
		`<dd id="requests">2</dd>`, // the health check and this page
		`<form method="post" action="extract">`,
		`2026-01-02T03:04:05Z`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>") {
		t.Error("the name is not escaped")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q", got)
	}
}

func TestExtractForm(t *testing.T) {
	_, ts := testServer(t)
	text := `Write to <script>alert(1)</script>a@example.com by 2026-03-01, see https://example.org/x?a=1&b=<i>`
	resp, body := postForm(t, ts, url.Values{"text": {text}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	for _, want := range []string{
		"<code>a@example.com</code>",
		"<code>2026-03-01</code> → 2026-03-01",
		"<code>https://example.org/x?a=1&amp;b=</code>",
		"&lt;script&gt;alert(1)&lt;/script&gt;", // the text, echoed escaped
	} {
		if !strings.Contains(body, want) {
			t.Errorf("result lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "<i>") {
		t.Error("submitted markup reached the page unescaped")
	}
}

func TestExtractRefusals(t *testing.T) {
	_, ts := testServer(t)
	tests := []struct {
		name string
		body string
		ct   string
		code int
	}{
		{"no text field", "other=1", "application/x-www-form-urlencoded", http.StatusBadRequest},
		{"text over the limit", "text=" + strings.Repeat("a", maxText+1), "application/x-www-form-urlencoded", http.StatusRequestEntityTooLarge},
		{"body over the limit", "text=" + strings.Repeat("%41", maxForm/3+1), "application/x-www-form-urlencoded", http.StatusRequestEntityTooLarge},
		{"not a form", `{"text":"x"}`, "application/json", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := ts.Client().Post(ts.URL+"/extract", tt.ct, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.code)
			}
			if !strings.Contains(string(body), `class="error"`) {
				t.Errorf("no error shown: %.300s", body)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	_, ts := testServer(t)
	tests := []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "/healthz", 200, "application/json"},
		{"GET", "/status.json", 200, "application/json"},
		{"GET", "/style.css", 200, "text/css; charset=utf-8"},
		{"GET", "/nope", 404, ""},
		{"DELETE", "/", 405, ""},
		{"GET", "/extract", 405, ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, ts.URL+tt.path, nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.code)
		}
		if tt.ctype != "" && resp.Header.Get("Content-Type") != tt.ctype {
			t.Errorf("%s %s: Content-Type %q", tt.method, tt.path, resp.Header.Get("Content-Type"))
		}
	}
}

func TestStatusJSON(t *testing.T) {
	_, ts := testServer(t)
	_, body := get(t, ts, "/status.json")
	var got statusBody
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := statusBody{Name: `web <b>"x"</b>`, Version: "0.1.0", UptimeSeconds: 5401, Requests: 1}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		env     map[string]string
		want    config
		wantErr string // the variable the error must name
	}{
		{map[string]string{}, config{name: "web", port: 8080}, ""},
		{map[string]string{"PORT": "9000", "AGENT_NAME": "Résumé bot"}, config{name: "Résumé bot", port: 9000}, ""},
		{map[string]string{"PORT": "0"}, config{}, "PORT"},
		{map[string]string{"PORT": "80a"}, config{}, "PORT"},
		{map[string]string{"AGENT_NAME": "a\x1b[2Jb"}, config{}, "AGENT_NAME"},
		{map[string]string{"AGENT_NAME": strings.Repeat("n", maxNameRunes+1)}, config{}, "AGENT_NAME"},
	}
	for _, tt := range tests {
		got, err := loadConfig(func(k string) string { return tt.env[k] })
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr+":") {
				t.Errorf("%v: error %v, want one naming %s", tt.env, err, tt.wantErr)
			}
			if err != nil && strings.ContainsRune(err.Error(), 0x1b) {
				t.Errorf("error carries a raw escape: %q", err)
			}
		case err != nil:
			t.Errorf("%v: %v", tt.env, err)
		case got != tt.want:
			t.Errorf("%v: got %+v, want %+v", tt.env, got, tt.want)
		}
	}
}

// syncBuffer is a log the server goroutine writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeStopsGracefully: a request in flight when SIGTERM arrives still
// gets its answer, then serve returns nil and the port is closed.
func TestServeStopsGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuffer
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, config{name: "web", port: 0}, time.Now, &log) }()
	base := "http://" + ln.Addr().String()
	if err := healthcheck(context.Background(), base+"/healthz"); err != nil {
		t.Fatal(err)
	}
	// A slow client: the headers are sent, the body is still coming.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := "text=a@b.io"
	io.WriteString(conn, "POST /extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	cancel()
	time.Sleep(100 * time.Millisecond)
	io.WriteString(conn, body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("in-flight request: %s", resp.Status)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(stopTimeout + 5*time.Second):
		t.Fatal("serve did not stop")
	}
	if err := healthcheck(context.Background(), base+"/healthz"); err == nil {
		t.Error("still answering after stop")
	}
	for _, want := range []string{`"web" serving on`, "stopping", "stopped after 2 requests"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q: %q", want, log.String())
		}
	}
}

func TestRunRefusesBadArgs(t *testing.T) {
	env := func(string) string { return "" }
	for _, args := range [][]string{nil, {"serve", "x"}, {"rm"}} {
		if err := run(context.Background(), args, env, io.Discard); err == nil {
			t.Errorf("run %q succeeded", args)
		}
	}
}

func TestHealthcheckFailsOnBadStatus(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	if err := healthcheck(context.Background(), ts.URL); err == nil {
		t.Error("healthy on a 503")
	}
}

// The console serves an agent's own UI under /agents/{id}/ui/, so every
// link of the page must be relative: an absolute one would leave the
// prefix and reach the console itself.
func TestPageLinksAreRelative(t *testing.T) {
	_, ts := testServer(t)
	_, body := get(t, ts, "/")
	for _, attr := range []string{`href="/`, `src="/`, `action="/`} {
		if strings.Contains(body, attr) {
			t.Errorf("the page has an absolute link (%s...)", attr)
		}
	}
}
