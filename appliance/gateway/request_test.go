package gateway

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ep         *endpoint
		want       string // the body sent to a backend whose model is "B"; "" when refused
		err        string // in the refusal
		stream     bool
		maxTokens  int64
		choices    int64
	}{
		{name: "plain", body: `{"messages":[],"model":"m","temperature":0}`, ep: epChat,
			want: `{"messages":[],"model":"B","temperature":0}`, choices: 1},
		{name: "stream gets usage", body: `{"model":"m","stream":true}`, ep: epChat,
			want: `{"model":"B","stream":true,"stream_options":{"include_usage":true}}`, stream: true, choices: 1},
		{name: "stream null options", body: `{"model":"m","stream":true,"stream_options":null}`, ep: epChat,
			want: `{"model":"B","stream":true,"stream_options":{"include_usage":true}}`, stream: true, choices: 1},
		{name: "no stream on embeddings", body: `{"model":"m","stream":true,"input":"x"}`, ep: epEmbeddings,
			want: `{"model":"B","stream":true,"input":"x"}`, choices: 1},
		{name: "smaller max wins", body: `{"model":"m","max_tokens":100,"max_completion_tokens":30,"n":3}`, ep: epChat,
			want: `{"model":"B","max_tokens":100,"max_completion_tokens":30,"n":3}`, maxTokens: 30, choices: 3},
		{name: "nulls are absent", body: `{"model":"m","max_tokens":null,"n":null,"stream":null}`, ep: epChat,
			want: `{"model":"B","max_tokens":null,"n":null,"stream":null}`, choices: 1},
		{name: "unicode kept", body: `{"model":"m","x":"é\u00e9\ud83d\ude00"}`, ep: epChat,
			want: `{"model":"B","x":"é\u00e9\ud83d\ude00"}`, choices: 1},
		{name: "duplicate", body: `{"model":"m","model":"n"}`, ep: epChat, err: `"model" is given twice`},
		{name: "duplicate other case", body: `{"model":"m","MODEL":"n"}`, ep: epChat, err: `"MODEL" is given twice`},
		{name: "no model", body: `{}`, ep: epChat, err: "model: is required"},
		{name: "model number", body: `{"model":1}`, ep: epChat, err: "member model: a number where a string was expected"},
		{name: "stream string", body: `{"model":"m","stream":"yes"}`, ep: epChat, err: "member stream: a string where true or false"},
		{name: "max float", body: `{"model":"m","max_tokens":1.5}`, ep: epChat, err: "member max_tokens"},
		{name: "options array", body: `{"model":"m","stream_options":[]}`, ep: epChat, err: "member stream_options: not an object"},
		{name: "n zero", body: `{"model":"m","n":0}`, ep: epChat, err: "member n: 0 is not from 1 to 128"},
		{name: "array", body: `[]`, ep: epChat, err: "not a JSON object"},
		{name: "empty", body: " \n", ep: epChat, err: "the body is empty"},
		{name: "truncated", body: `{"model":"m"`, ep: epChat, err: "not valid JSON"},
		{name: "two values", body: `{"model":"m"}{}`, ep: epChat, err: "invalid character '{' after top-level value"},
		{name: "escaped key", body: `{"mo\u0064el":"m","x":{"model":"y"}}`, ep: epChat, want: `{"mo\u0064el":"B","x":{"model":"y"}}`, choices: 1},
		{name: "escaped duplicate", body: `{"model":"m","\u006dodel":"n"}`, ep: epChat, err: "is given twice"},
		{name: "spaces", body: " {\n \"model\" : \"m\" ,\t\"n\" : 2 , \"s\":[ 1 , \"]\" ] } ", ep: epChat, want: `{"model":"B","n":2,"s":[ 1 , "]" ]}`, choices: 2},
		{name: "bad utf8", body: "{\"model\":\"m\xff\"}", ep: epChat, err: "not valid UTF-8"},
		{name: "deep", body: `{"model":"m","x":[[[[[[[[[]]]]]]]]]}`, ep: epChat, err: "nested deeper than 8"},
		{name: "deep in string is fine", body: `{"model":"m","x":"[[[[[[[[[[[[\"{{{{{{{{{{"}`, ep: epChat,
			want: `{"model":"B","x":"[[[[[[[[[[[[\"{{{{{{{{{{"}`, choices: 1},
		{name: "long model", body: `{"model":"` + strings.Repeat("m", 257) + `"}`, ep: epChat, err: "longer than 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := parseRequest([]byte(tc.body), 8, tc.ep)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(req.body("B")); got != tc.want {
				t.Fatalf("body %s, want %s", got, tc.want)
			}
			if req.stream != tc.stream || req.maxTokens != tc.maxTokens || req.choices != tc.choices {
				t.Fatalf("stream %v max %d n %d", req.stream, req.maxTokens, req.choices)
			}
		})
	}
}

func TestEstimate(t *testing.T) {
	m := &Model{Estimate: 100}
	req, _ := parseRequest([]byte(`{"model":"m","n":2,"padding":"`+strings.Repeat("x", 80)+`"}`), 8, epChat)
	if p, c := req.estimate(m, epChat); p != 28 || c != 200 {
		t.Fatalf("estimate %d, %d; want 28 (112 bytes / 4, rounded up) and 200 (2 x 100)", p, c)
	}
	req, _ = parseRequest([]byte(`{"model":"m","max_tokens":7}`), 8, epChat)
	if _, c := req.estimate(m, epChat); c != 7 {
		t.Fatalf("completion estimate %d, want max_tokens 7", c)
	}
	if _, c := req.estimate(m, epEmbeddings); c != 0 {
		t.Fatalf("embeddings completion estimate %d", c)
	}
}

// FuzzParseRequest: any body is refused or yields a request whose
// forwarded body is one JSON object, with the backend's model and every
// member name of the original exactly once.
func FuzzParseRequest(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/requests/*.json")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, true)
	}
	for _, s := range []string{`{"model":"m"}`, `{"model":"m","stream":true,"stream_options":{"a":[1,{"b":null}]}}`,
		`{"model":"m","model":"n"}`, `{"model":"\u0000","n":128}`, `[{"model":"m"}]`, `{"model":"m",}`, `{"a":"\\"}`} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, embed bool) {
		ep := epChat
		if embed {
			ep = epEmbeddings
		}
		req, err := parseRequest(data, 16, ep)
		if err != nil {
			return
		}
		out := req.body("backend/model")
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("forwarded body %q is not a JSON object: %v", out, err)
		}
		var model string
		if json.Unmarshal(m["model"], &model); model != "backend/model" {
			t.Fatalf("forwarded model %s", m["model"])
		}
		want := len(req.members)
		if req.stream && !slices.ContainsFunc(req.members, func(x member) bool { return x.key == "stream_options" }) {
			want++ // the gateway adds it
		}
		if len(m) != want {
			t.Fatalf("forwarded %d members, want %d: %s", len(m), want, out)
		}
		if req.stream {
			var opts struct {
				IncludeUsage bool `json:"include_usage"`
			}
			if json.Unmarshal(m["stream_options"], &opts); !opts.IncludeUsage {
				t.Fatalf("a stream without include_usage: %s", out)
			}
		}
		if p, c := req.estimate(&Model{Estimate: 10}, ep); p < 0 || c < 0 {
			t.Fatalf("negative estimate %d %d", p, c)
		}
	})
}
