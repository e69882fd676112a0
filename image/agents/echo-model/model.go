package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Bounds on what one request may ask.
const (
	maxBody      = 1 << 20
	maxMessages  = 1024
	maxInputs    = 256
	defaultDims  = 64
	maxDims      = 1024
	maxTokensCap = 1 << 20
	jsonType     = "application/json"
	eventStream  = "text/event-stream"
	ownedBy      = "omertaos"
)

// model serves the OpenAI-compatible API for its model ids.
type model struct {
	ids      []string
	delay    time.Duration
	now      func() time.Time
	requests atomic.Uint64
	seq      atomic.Uint64
}

func newModel(ids []string, delay time.Duration, now func() time.Time) *model {
	return &model{ids: ids, delay: delay, now: now}
}

func (m *model) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", m.chat)
	mux.HandleFunc("POST /v1/completions", m.completions)
	mux.HandleFunc("POST /v1/embeddings", m.embeddings)
	mux.HandleFunc("GET /v1/models", m.listModels)
	mux.HandleFunc("GET /v1/models/{id...}", m.getModel)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "invalid_request_error", "not_found", "", "no route "+r.Method+" "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.requests.Add(1)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

// usage is OpenAI's usage object.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func newUsage(prompt, completion int) usage {
	return usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

// reqError is a refused request: status, OpenAI error code, parameter.
type reqError struct {
	status int
	code   string
	param  string
	msg    string
}

func (e *reqError) Error() string { return e.msg }

func badParam(param, format string, a ...any) error {
	return &reqError{status: http.StatusBadRequest, code: "invalid_value", param: param, msg: param + ": " + fmt.Sprintf(format, a...)}
}

// decode reads one JSON object of at most maxBody bytes into v.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, jsonType) {
		return &reqError{status: http.StatusUnsupportedMediaType, code: "invalid_content_type", msg: "Content-Type must be " + jsonType}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &reqError{status: http.StatusRequestEntityTooLarge, code: "request_too_large", msg: fmt.Sprintf("the body is larger than %d bytes", maxBody)}
		}
		return &reqError{status: http.StatusBadRequest, code: "invalid_json", msg: "the body is not a valid JSON request: " + err.Error()}
	}
	if dec.More() {
		return &reqError{status: http.StatusBadRequest, code: "invalid_json", msg: "the body holds more than one JSON value"}
	}
	return nil
}

func (m *model) knows(id string) bool {
	for _, x := range m.ids {
		if x == id {
			return true
		}
	}
	return false
}

func (m *model) checkModel(id string) error {
	if id == "" {
		return badParam("model", "is required")
	}
	if !m.knows(id) {
		return &reqError{status: http.StatusNotFound, code: "model_not_found", param: "model",
			msg: fmt.Sprintf("model %q does not exist; this backend serves %s", id, strings.Join(m.ids, ", "))}
	}
	return nil
}

// limitTokens applies max_tokens (or max_completion_tokens) to a reply.
func limitTokens(toks []string, maxTokens, maxCompletion *int) ([]string, string, error) {
	limit := -1
	for _, p := range []struct {
		name string
		v    *int
	}{{"max_tokens", maxTokens}, {"max_completion_tokens", maxCompletion}} {
		if p.v == nil {
			continue
		}
		if *p.v < 1 || *p.v > maxTokensCap {
			return nil, "", badParam(p.name, "%d is not from 1 to %d", *p.v, maxTokensCap)
		}
		if limit < 0 || *p.v < limit {
			limit = *p.v
		}
	}
	if limit >= 0 && len(toks) > limit {
		return toks[:limit], "length", nil
	}
	return toks, "stop", nil
}

func (m *model) nextID(prefix string) string {
	return fmt.Sprintf("%s-echo-%d", prefix, m.seq.Add(1))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		apiError(w, http.StatusInternalServerError, "server_error", "internal_error", "", "encoding the answer failed")
		return
	}
	w.Header().Set("Content-Type", jsonType)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func apiError(w http.ResponseWriter, status int, typ, code, param, msg string) {
	body := map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nilIfEmpty(param), "code": code}}
	data, _ := json.Marshal(body)
	w.Header().Set("Content-Type", jsonType)
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func fail(w http.ResponseWriter, err error) {
	var re *reqError
	if errors.As(err, &re) {
		apiError(w, re.status, "invalid_request_error", re.code, re.param, re.msg)
		return
	}
	apiError(w, http.StatusInternalServerError, "server_error", "internal_error", "", "internal error")
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (m *model) listModels(w http.ResponseWriter, _ *http.Request) {
	data := make([]modelObject, len(m.ids))
	for i, id := range m.ids {
		data[i] = modelObject{ID: id, Object: "model", OwnedBy: ownedBy}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (m *model) getModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := m.checkModel(id); err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, modelObject{ID: id, Object: "model", OwnedBy: ownedBy})
}
