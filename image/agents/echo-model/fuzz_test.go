package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"
)

var fuzzPaths = []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}

// FuzzRequests: whatever body arrives, each endpoint answers a JSON
// object (or, for a stream, events), 200 or a 4xx, never a panic or a 5xx.
func FuzzRequests(f *testing.F) {
	for _, s := range []string{
		`{"model":"local-echo","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"local-echo","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"local-echo","prompt":["a","b"],"max_tokens":1}`,
		`{"model":"local-echo","input":"x","dimensions":3,"encoding_format":"base64"}`,
		`{"model":"local-echo","messages":[{"role":"user","content":null}],"max_completion_tokens":-1}`,
		`[]`, `{"model":"local-echo","messages":[{}]}`,
	} {
		for i := range fuzzPaths {
			f.Add(uint8(i), s)
		}
	}
	h := newModel([]string{"local-echo"}, 0, func() time.Time { return time.Unix(0, 0) }).handler()
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		path := fuzzPaths[int(which)%len(fuzzPaths)]
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "http://x"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d", path, body, rec.Code)
		}
		out := rec.Body.String()
		if rec.Header().Get("Content-Type") == eventStream {
			if !strings.HasSuffix(out, "data: [DONE]\n\n") {
				t.Fatalf("stream %q does not end with [DONE]", out)
			}
			return
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%s %q: answer %q is not a JSON object", path, body, out)
		}
	})
}

// FuzzTokenize: the tokens rebuild the text, and none is only white space.
func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"", "Hello, world!", "  a  b  ", "héllo 世界\t42\n", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		toks := tokenize(s)
		if len(toks) > 0 && strings.Join(toks, "") != s {
			t.Fatalf("tokens %q do not rebuild %q", toks, s)
		}
		if len(toks) == 0 && strings.TrimFunc(s, unicode.IsSpace) != "" {
			t.Fatalf("no tokens for %q", s)
		}
		for _, tok := range toks {
			if strings.TrimFunc(tok, unicode.IsSpace) == "" {
				t.Fatalf("a white-space token in %q", toks)
			}
		}
	})
}
