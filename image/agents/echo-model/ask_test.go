package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAsk(t *testing.T) {
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Authorization") != "" {
			http.Error(w, "bad request shape", http.StatusBadRequest)
			return
		}
		if strings.Contains(string(got), "denied") {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":{"code":"model_not_allowed"}}`)
			return
		}
		io.WriteString(w, `{"choices":[{"message":{"content":"hi"}}]}`)
	}))
	defer srv.Close()
	endpoint, err := askURL(func(string) string { return srv.URL + "/v1/" })
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	req := `{"model":"local-echo","messages":[{"role":"user","content":"hi"}]}`
	if err := ask(context.Background(), endpoint, strings.NewReader(req), &out); err != nil || out.String() != `{"choices":[{"message":{"content":"hi"}}]}` || string(got) != req {
		t.Fatalf("ask: %v, answer %q, request %q", err, out.String(), got)
	}
	out.Reset()
	err = ask(context.Background(), endpoint, strings.NewReader(`{"model":"denied"}`), &out)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(out.String(), "model_not_allowed") {
		t.Fatalf("a refusal: %v, answer %q", err, out.String())
	}
	if err := ask(context.Background(), endpoint, strings.NewReader(strings.Repeat("x", maxAskInput+1)), &out); err == nil {
		t.Fatal("an oversized request was sent")
	}
	if u, err := askURL(func(string) string { return "" }); err != nil || u != "http://10.88.0.1:8080/v1/chat/completions" {
		t.Fatalf("default endpoint %q, %v", u, err)
	}
	for _, bad := range []string{"ftp://x/v1", "http://user:pw@x/v1", "http:///v1", "http://x/v1?k=1"} {
		if _, err := askURL(func(string) string { return bad }); err == nil {
			t.Errorf("OPENAI_BASE_URL %q accepted", bad)
		}
	}
}
