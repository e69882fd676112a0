package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type chatRequest struct {
	Model               string         `json:"model"`
	Messages            []chatMessage  `json:"messages"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
}

// contentText is a message's text: a string, null, or an array of parts
// of which the "text" ones count (images and audio are not read).
func contentText(raw json.RawMessage, i int) (string, error) {
	param := fmt.Sprintf("messages[%d].content", i)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", badParam(param, "is not a string")
		}
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badParam(param, "is neither a string nor an array of content parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}

// chatReply is what the model answers: the last user message, echoed, and
// the prompt's token count over every message.
func chatReply(msgs []chatMessage) (reply string, prompt int, err error) {
	if len(msgs) == 0 {
		return "", 0, badParam("messages", "must hold at least one message")
	}
	if len(msgs) > maxMessages {
		return "", 0, badParam("messages", "%d messages, at most %d", len(msgs), maxMessages)
	}
	for i, msg := range msgs {
		switch msg.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return "", 0, badParam(fmt.Sprintf("messages[%d].role", i), "%q is not system, developer, user, assistant or tool", msg.Role)
		}
		text, err := contentText(msg.Content, i)
		if err != nil {
			return "", 0, err
		}
		prompt += countTokens(text)
		if msg.Role == "user" {
			reply = text
		}
	}
	return reply, prompt, nil
}

func (m *model) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if err := decode(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if err := m.checkModel(req.Model); err != nil {
		fail(w, err)
		return
	}
	reply, prompt, err := chatReply(req.Messages)
	if err != nil {
		fail(w, err)
		return
	}
	toks, finish, err := limitTokens(tokenize(reply), req.MaxTokens, req.MaxCompletionTokens)
	if err != nil {
		fail(w, err)
		return
	}
	id, created := m.nextID("chatcmpl"), m.now().Unix()
	u := newUsage(prompt, len(toks))
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": finish,
				"message": map[string]any{"role": "assistant", "content": strings.Join(toks, "")}}},
			"usage": u,
		})
		return
	}
	chunk := func(choices []any) map[string]any {
		return map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model, "choices": choices}
	}
	events := []any{chunk([]any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "finish_reason": nil}})}
	for _, t := range toks {
		events = append(events, chunk([]any{map[string]any{"index": 0, "delta": map[string]any{"content": t}, "finish_reason": nil}}))
	}
	events = append(events, chunk([]any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": finish}}))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		last := chunk([]any{})
		last["usage"] = u
		events = append(events, last)
	}
	m.stream(w, r, events)
}

type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	MaxTokens     *int            `json:"max_tokens"`
}

// inputs reads a prompt or an embeddings input: a string or an array of
// strings.
func inputs(raw json.RawMessage, param string) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badParam(param, "is required")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badParam(param, "is neither a string nor an array of strings")
	}
	if len(many) == 0 || len(many) > maxInputs {
		return nil, badParam(param, "holds %d strings, from 1 to %d allowed", len(many), maxInputs)
	}
	return many, nil
}

func (m *model) completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := decode(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if err := m.checkModel(req.Model); err != nil {
		fail(w, err)
		return
	}
	prompts, err := inputs(req.Prompt, "prompt")
	if err != nil {
		fail(w, err)
		return
	}
	id, created := m.nextID("cmpl"), m.now().Unix()
	var choices, events []any
	var u usage
	for i, p := range prompts {
		toks, finish, err := limitTokens(tokenize(p), req.MaxTokens, nil)
		if err != nil {
			fail(w, err)
			return
		}
		u = newUsage(u.PromptTokens+countTokens(p), u.CompletionTokens+len(toks))
		choices = append(choices, map[string]any{"index": i, "text": strings.Join(toks, ""), "finish_reason": finish, "logprobs": nil})
		for _, t := range toks {
			events = append(events, map[string]any{"id": id, "object": "text_completion", "created": created, "model": req.Model,
				"choices": []any{map[string]any{"index": i, "text": t, "finish_reason": nil, "logprobs": nil}}})
		}
		events = append(events, map[string]any{"id": id, "object": "text_completion", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": i, "text": "", "finish_reason": finish, "logprobs": nil}}})
	}
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "text_completion", "created": created,
			"model": req.Model, "choices": choices, "usage": u})
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		events = append(events, map[string]any{"id": id, "object": "text_completion", "created": created,
			"model": req.Model, "choices": []any{}, "usage": u})
	}
	m.stream(w, r, events)
}

// stream sends events as server-sent events, one flush each, waiting the
// token delay between them, and ends with [DONE]. A client that goes away
// ends it.
func (m *model) stream(w http.ResponseWriter, r *http.Request, events []any) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", eventStream)
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for i, ev := range events {
		if i > 0 && m.delay > 0 {
			t := time.NewTimer(m.delay)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	rc.Flush()
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

func (m *model) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if err := decode(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if err := m.checkModel(req.Model); err != nil {
		fail(w, err)
		return
	}
	texts, err := inputs(req.Input, "input")
	if err != nil {
		fail(w, err)
		return
	}
	dims := defaultDims
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > maxDims {
			fail(w, badParam("dimensions", "%d is not from 1 to %d", *req.Dimensions, maxDims))
			return
		}
		dims = *req.Dimensions
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		fail(w, badParam("encoding_format", "%q is not float or base64", req.EncodingFormat))
		return
	}
	data := make([]any, len(texts))
	prompt := 0
	for i, t := range texts {
		prompt += countTokens(t)
		vec := embed(t, dims)
		var value any = vec
		if req.EncodingFormat == "base64" {
			value = base64Floats(vec)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": value}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "model": req.Model, "data": data,
		"usage": map[string]int{"prompt_tokens": prompt, "total_tokens": prompt}})
}
