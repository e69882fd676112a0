package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/terminal"
)

// Request bounds (see Bounds for the defaults).
const (
	maxModelBytes = 256
	maxChoices    = 128
	maxTopLevel   = 256 // members of the request object
)

// endpoint is one of the forwarded APIs.
type endpoint struct {
	name   string // as recorded: chat, completions, embeddings
	path   string // after the base URL: "/chat/completions"
	stream bool   // may stream
	embed  bool   // no completion tokens
}

var (
	epChat        = &endpoint{name: "chat", path: "/chat/completions", stream: true}
	epCompletions = &endpoint{name: "completions", path: "/completions", stream: true}
	epEmbeddings  = &endpoint{name: "embeddings", path: "/embeddings", embed: true}
)

// member is one top-level member of the request object, as sent.
type member struct {
	key    string
	rawKey []byte // as sent, quotes included
	value  json.RawMessage
}

// request is a parsed request body: what the gateway decides on, and the
// members to forward.
type request struct {
	members   []member
	model     string
	stream    bool
	maxTokens int64 // 0: not given
	choices   int64 // n; 1 when not given
	size      int   // bytes of the body
}

// readBody reads at most limit bytes of the request's body.
func readBody(r *http.Request, limit int64) ([]byte, *Error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		if !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
			return nil, refuse(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "Content-Type %s: the API takes application/json", quote(ct))
		}
	}
	if r.ContentLength > limit {
		return nil, refuse(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "the body is %d bytes, at most %d", r.ContentLength, limit)
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, CodeInvalidRequest, "reading the body: %s", terminal.Escape(err.Error()))
	}
	if int64(len(data)) > limit {
		return nil, refuse(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "the body is larger than %d bytes", limit)
	}
	return data, nil
}

// checkDepth refuses JSON nested deeper than max, before any decoder
// recurses into it: a scan that counts brackets outside strings.
func checkDepth(data []byte, max int) error {
	depth := 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if depth > max {
				return fmt.Errorf("nested deeper than %d levels", max)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// parseRequest checks a body and reads what the gateway needs from it.
// The top-level members are kept as sent, in order, so that what is
// forwarded is exactly what the agent asked with the model (and the
// stream's usage option) rewritten. A member name given twice, even in
// another case, is refused: a backend might read the other "model" than
// the one the policy allowed.
func parseRequest(data []byte, maxDepth int, ep *endpoint) (*request, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("the body is not valid UTF-8")
	}
	if err := checkDepth(data, maxDepth); err != nil {
		return nil, err
	}
	req := &request{choices: 1, size: len(data)}
	if err := req.decodeMembers(data); err != nil {
		return nil, err
	}
	if err := req.readFields(ep); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeMembers splits a valid JSON object into its members without
// decoding the values: json.Valid has checked the whole body, so a scan
// that tracks strings and brackets finds each member's end.
func (req *request) decodeMembers(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("the body is empty")
	}
	if !json.Valid(data) {
		var v json.RawMessage
		err := json.Unmarshal(data, &v) // for the reason
		return fmt.Errorf("the body is not valid JSON: %s", terminal.Escape(err.Error()))
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return errors.New("the body is not a JSON object")
	}
	seen := map[string]bool{}
	for i = skipSpace(data, i+1); data[i] != '}'; {
		end := stringEnd(data, i)
		rawKey := data[i:end]
		key := string(rawKey[1 : len(rawKey)-1])
		if bytes.IndexByte(rawKey, '\\') >= 0 {
			json.Unmarshal(rawKey, &key) // valid, so it decodes
		}
		fold := strings.ToLower(key)
		if seen[fold] {
			return fmt.Errorf("member %s is given twice", quote(key))
		}
		if seen[fold] = true; len(seen) > maxTopLevel {
			return fmt.Errorf("more than %d members", maxTopLevel)
		}
		i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		vend := valueEnd(data, i)
		req.members = append(req.members, member{key: key, rawKey: rawKey, value: data[i:vend]})
		if i = skipSpace(data, vend); data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the index just past the string that starts at data[i].
func stringEnd(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// valueEnd is the index just past the value that starts at data[i].
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = stringEnd(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	}
	for j := i; j < len(data); j++ {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j
		}
	}
	return len(data)
}

func (req *request) readFields(ep *endpoint) error {
	for _, m := range req.members {
		var err error
		switch m.key {
		case "model":
			err = json.Unmarshal(m.value, &req.model)
		case "stream":
			if ep.stream {
				err = json.Unmarshal(m.value, &req.stream)
			}
		case "stream_options":
			if !bytes.HasPrefix(m.value, []byte("{")) && string(m.value) != "null" {
				err = errors.New("not an object")
			}
		case "max_tokens", "max_completion_tokens":
			var n int64
			if err = json.Unmarshal(m.value, &n); err == nil && n > 0 && (req.maxTokens == 0 || n < req.maxTokens) {
				req.maxTokens = n
			}
		case "n":
			if err = json.Unmarshal(m.value, &req.choices); err == nil && (req.choices < 1 || req.choices > maxChoices) {
				err = fmt.Errorf("%d is not from 1 to %d", req.choices, maxChoices)
			}
		}
		if string(m.value) == "null" && m.key != "stream_options" {
			err = nil // absent, as OpenAI's SDKs send it
		}
		if err != nil {
			return fmt.Errorf("member %s: %v", m.key, errText(err))
		}
	}
	switch {
	case req.model == "":
		return errors.New("member model: is required")
	case len(req.model) > maxModelBytes:
		return fmt.Errorf("member model: longer than %d bytes", maxModelBytes)
	}
	return nil
}

// errText is a json error without the Go type names it may carry.
func errText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "a " + te.Value + " where " + jsonKind(te.Type.Kind().String()) + " was expected"
	}
	return terminal.Escape(err.Error())
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int64":
		return "an integer"
	}
	return "another type"
}

// body is the request to send to target: the members as sent, the model
// renamed to the backend's, and for a stream, usage asked for, so that
// budgets are charged what the backend counted.
func (req *request) body(backendModel string) []byte {
	var b bytes.Buffer
	b.Grow(req.size + len(backendModel) + 48)
	b.WriteByte('{')
	sawOptions := false
	for i, m := range req.members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(m.rawKey)
		b.WriteByte(':')
		switch {
		case m.key == "model":
			v, _ := json.Marshal(backendModel)
			b.Write(v)
		case m.key == "stream_options" && req.stream:
			sawOptions = true
			b.Write(withIncludeUsage(m.value))
		default:
			b.Write(m.value)
		}
	}
	if req.stream && !sawOptions {
		b.WriteString(`,"stream_options":{"include_usage":true}`)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// withIncludeUsage returns the stream_options object with include_usage
// set to true and every other member kept.
func withIncludeUsage(v json.RawMessage) []byte {
	var opts map[string]json.RawMessage
	if json.Unmarshal(v, &opts) != nil || opts == nil {
		opts = map[string]json.RawMessage{}
	}
	opts["include_usage"] = json.RawMessage("true")
	out, _ := json.Marshal(opts)
	return out
}

// estimate is what a request may cost in tokens before the backend says:
// the prompt at one token per 4 bytes of body (every tokenizer in use
// gives fewer), and the completion at max_tokens, or the model's
// estimate, per choice.
func (req *request) estimate(m *Model, ep *endpoint) (prompt, completion int64) {
	prompt = int64(req.size+3) / 4
	if ep.embed {
		return prompt, 0
	}
	completion = m.Estimate
	if req.maxTokens > 0 {
		completion = min(req.maxTokens, maxEstimate)
	}
	return prompt, completion * req.choices
}
