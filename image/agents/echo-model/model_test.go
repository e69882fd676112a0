package main

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

var fixed = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func testModel(t *testing.T, delay time.Duration) *httptest.Server {
	t.Helper()
	m := newModel([]string{"local-echo", "echo-2"}, delay, func() time.Time { return fixed })
	ts := httptest.NewServer(m.handler())
	t.Cleanup(ts.Close)
	return ts
}

func post(t *testing.T, ts *httptest.Server, path, body string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := ts.Client().Post(ts.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s answered %s with non-JSON %q", path, resp.Status, data)
	}
	return resp, out
}

func TestTokenize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   ", nil},
		{"Hello, world!", []string{"Hello", ",", " world", "!"}},
		{"  two  words  ", []string{"  two", "  words  "}},
		{"héllo 世界 42", []string{"héllo", " 世界", " 42"}},
		{"a\x00b", []string{"a", "\x00", "b"}},
	} {
		got := tokenize(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("tokenize(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if len(got) > 0 && strings.Join(got, "") != tc.in {
			t.Errorf("tokens of %q do not rebuild it: %q", tc.in, strings.Join(got, ""))
		}
	}
}

func TestChat(t *testing.T) {
	ts := testModel(t, 0)
	resp, out := post(t, ts, "/v1/chat/completions", `{"model":"local-echo","messages":[
		{"role":"system","content":"Be brief."},
		{"role":"user","content":[{"type":"text","text":"Hello, "},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"world!"}]}]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s: %v", resp.Status, resp.Header.Get("Content-Type"), out)
	}
	choice := out["choices"].([]any)[0].(map[string]any)
	if got := choice["message"].(map[string]any)["content"]; got != "Hello, world!" || choice["finish_reason"] != "stop" {
		t.Fatalf("choice = %v", choice)
	}
	// "Be brief." is 3 tokens and "Hello, world!" 4.
	wantUsage := map[string]any{"prompt_tokens": 7.0, "completion_tokens": 4.0, "total_tokens": 11.0}
	if !reflect.DeepEqual(out["usage"], wantUsage) || out["object"] != "chat.completion" || out["created"] != float64(fixed.Unix()) {
		t.Fatalf("answer = %v", out)
	}
	_, out = post(t, ts, "/v1/chat/completions", `{"model":"echo-2","max_tokens":2,"messages":[{"role":"user","content":"one two three"}]}`)
	choice = out["choices"].([]any)[0].(map[string]any)
	if choice["message"].(map[string]any)["content"] != "one two" || choice["finish_reason"] != "length" {
		t.Fatalf("max_tokens: %v", out)
	}
}

func TestRefusals(t *testing.T) {
	ts := testModel(t, 0)
	for _, tc := range []struct {
		path, body string
		status     int
		code       string
		param      any
	}{
		{"/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, 404, "model_not_found", "model"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, 400, "invalid_value", "model"},
		{"/v1/chat/completions", `{"model":"local-echo","messages":[]}`, 400, "invalid_value", "messages"},
		{"/v1/chat/completions", `{"model":"local-echo","messages":[{"role":"root","content":"x"}]}`, 400, "invalid_value", "messages[0].role"},
		{"/v1/chat/completions", `{"model":"local-echo","messages":[{"role":"user","content":7}]}`, 400, "invalid_value", "messages[0].content"},
		{"/v1/chat/completions", `{"model":"local-echo","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, 400, "invalid_value", "max_tokens"},
		{"/v1/chat/completions", `{"model":`, 400, "invalid_json", nil},
		{"/v1/chat/completions", `{} {}`, 400, "invalid_json", nil},
		{"/v1/chat/completions", `{"model":"local-echo","messages":[{"role":"user","content":"` + strings.Repeat("a", maxBody) + `"}]}`, 413, "request_too_large", nil},
		{"/v1/completions", `{"model":"local-echo","prompt":[]}`, 400, "invalid_value", "prompt"},
		{"/v1/embeddings", `{"model":"local-echo","input":"x","dimensions":5000}`, 400, "invalid_value", "dimensions"},
		{"/v1/embeddings", `{"model":"local-echo","input":"x","encoding_format":"int8"}`, 400, "invalid_value", "encoding_format"},
		{"/v1/nothing", `{}`, 404, "not_found", nil},
	} {
		resp, out := post(t, ts, tc.path, tc.body)
		e, _ := out["error"].(map[string]any)
		if resp.StatusCode != tc.status || e == nil || e["code"] != tc.code || e["param"] != tc.param || e["message"] == "" {
			t.Errorf("%s %.60s: %s %v, want %d code %s param %v", tc.path, tc.body, resp.Status, out, tc.status, tc.code, tc.param)
		}
	}
	resp, err := ts.Client().Post(ts.URL+"/v1/chat/completions", "text/plain", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %s", resp.Status)
	}
}

// event is one server-sent event read from a stream, and when it came.
type event struct {
	data string
	at   time.Duration
}

func readEvents(t *testing.T, body io.Reader, start time.Time) []event {
	t.Helper()
	var evs []event
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not a data line", line)
		}
		evs = append(evs, event{data: data, at: time.Since(start)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestChatStream checks the events and that they are sent one by one: with
// a token delay, the first event arrives well before the last.
func TestChatStream(t *testing.T) {
	const delay = 40 * time.Millisecond
	ts := testModel(t, delay)
	start := time.Now()
	resp, err := ts.Client().Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"model":"local-echo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b c"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	evs := readEvents(t, resp.Body, start)
	// role, 3 tokens, finish, usage, [DONE]
	if len(evs) != 7 || evs[6].data != "[DONE]" {
		t.Fatalf("events %v", evs)
	}
	if evs[len(evs)-1].at-evs[0].at < 4*delay {
		t.Fatalf("first event at %s, last at %s: not streamed", evs[0].at, evs[len(evs)-1].at)
	}
	var text strings.Builder
	for _, ev := range evs[1:4] {
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ev.data), &c); err != nil || c.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %q: %v", ev.data, err)
		}
		text.WriteString(c.Choices[0].Delta.Content)
	}
	if text.String() != "a b c" {
		t.Fatalf("streamed text %q", text.String())
	}
	var last struct {
		Choices []any `json:"choices"`
		Usage   usage `json:"usage"`
	}
	if err := json.Unmarshal([]byte(evs[5].data), &last); err != nil || len(last.Choices) != 0 || last.Usage != newUsage(3, 3) {
		t.Fatalf("usage chunk %q: %v", evs[5].data, err)
	}
}

func TestCompletions(t *testing.T) {
	ts := testModel(t, 0)
	_, out := post(t, ts, "/v1/completions", `{"model":"local-echo","prompt":["one two","three"]}`)
	choices := out["choices"].([]any)
	if len(choices) != 2 || choices[1].(map[string]any)["text"] != "three" || choices[1].(map[string]any)["index"] != 1.0 {
		t.Fatalf("choices %v", choices)
	}
	if u := out["usage"].(map[string]any); u["prompt_tokens"] != 3.0 || u["completion_tokens"] != 3.0 {
		t.Fatalf("usage %v", u)
	}
	resp, err := ts.Client().Post(ts.URL+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"local-echo","prompt":"x y","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	evs := readEvents(t, resp.Body, time.Now())
	if len(evs) != 4 || evs[3].data != "[DONE]" || strings.Contains(evs[2].data, "usage") {
		t.Fatalf("events %v", evs)
	}
}

func TestEmbeddings(t *testing.T) {
	ts := testModel(t, 0)
	get := func(body string) ([][]float64, map[string]any) {
		_, out := post(t, ts, "/v1/embeddings", body)
		var vecs [][]float64
		for _, d := range out["data"].([]any) {
			var v []float64
			for _, x := range d.(map[string]any)["embedding"].([]any) {
				v = append(v, x.(float64))
			}
			vecs = append(vecs, v)
		}
		return vecs, out
	}
	vecs, out := get(`{"model":"local-echo","input":["the cat sat","the cat sat","stock prices fell"," "]}`)
	if len(vecs) != 4 || len(vecs[0]) != defaultDims {
		t.Fatalf("vectors %v", out)
	}
	if !reflect.DeepEqual(vecs[0], vecs[1]) {
		t.Fatal("equal texts gave different vectors")
	}
	var norm, dot float64
	for i := range vecs[0] {
		norm += vecs[0][i] * vecs[0][i]
		dot += vecs[0][i] * vecs[2][i]
	}
	if math.Abs(norm-1) > 1e-5 || dot > 0.99 {
		t.Fatalf("norm %v, dot with an unrelated text %v", norm, dot)
	}
	for _, x := range vecs[3] {
		if x != 0 {
			t.Fatalf("white space gave %v", vecs[3])
		}
	}
	if u := out["usage"].(map[string]any); u["prompt_tokens"] != 9.0 {
		t.Fatalf("usage %v", u)
	}
	vecs, _ = get(`{"model":"local-echo","input":"the cat sat","dimensions":8}`)
	if len(vecs[0]) != 8 {
		t.Fatalf("dimensions 8 gave %d", len(vecs[0]))
	}
	_, out = post(t, ts, "/v1/embeddings", `{"model":"local-echo","input":"the cat sat","dimensions":8,"encoding_format":"base64"}`)
	raw, err := base64.StdEncoding.DecodeString(out["data"].([]any)[0].(map[string]any)["embedding"].(string))
	if err != nil || len(raw) != 32 {
		t.Fatalf("base64 embedding: %v, %d bytes", err, len(raw))
	}
	for i := range 8 {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); float64(got) != float64(float32(vecs[0][i])) {
			t.Fatalf("base64 value %d = %v, float value %v", i, got, vecs[0][i])
		}
	}
}

func TestModels(t *testing.T) {
	ts := testModel(t, 0)
	resp, err := ts.Client().Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if list.Object != "list" || len(list.Data) != 2 || list.Data[1].ID != "echo-2" || list.Data[0].Object != "model" {
		t.Fatalf("models %+v", list)
	}
	for path, want := range map[string]int{"/v1/models/echo-2": 200, "/v1/models/nope": 404} {
		resp, err := ts.Client().Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %s, want %d", path, resp.Status, want)
		}
	}
}
