package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/omertaos/omertaos/image/agents/tool/ops"
)

// maxText caps the text a visitor may submit; the form body may be up to
// three times that once URL-encoded, plus the field names.
const (
	maxText = 64 << 10
	maxForm = 3*maxText + 1024
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed style.css
	styleCSS []byte
	page     = template.Must(template.New("page").Parse(pageHTML))
)

// server holds what the status page shows. now is a parameter so that
// tests can fix the uptime.
type server struct {
	name     string
	version  string
	started  time.Time
	now      func() time.Time
	requests atomic.Uint64
}

func newServer(name, version string, started time.Time, now func() time.Time) *server {
	return &server{name: name, version: version, started: started, now: now}
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("POST /extract", s.extract)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /status.json", s.status)
	mux.HandleFunc("GET /style.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(styleCSS)
	})
	return s.count(secure(mux))
}

func (s *server) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		next.ServeHTTP(w, r)
	})
}

// secure sets headers for every response: the page needs nothing but its
// own stylesheet and its own form.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

type pageData struct {
	Name, Version, Uptime, Started string
	Requests                       uint64
	MaxText, MaxMatches            int
	Text                           string
	Error                          string
	Result                         *ops.ExtractResult
}

func (s *server) data() pageData {
	return pageData{
		Name:       s.name,
		Version:    s.version,
		Uptime:     s.uptime().String(),
		Started:    s.started.UTC().Format(time.RFC3339),
		Requests:   s.requests.Load(),
		MaxText:    maxText,
		MaxMatches: ops.MaxMatches,
	}
}

func (s *server) uptime() time.Duration {
	return s.now().Sub(s.started).Truncate(time.Second)
}

func (s *server) index(w http.ResponseWriter, _ *http.Request) {
	render(w, http.StatusOK, s.data())
}

func (s *server) extract(w http.ResponseWriter, r *http.Request) {
	d := s.data()
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			d.Error = fmt.Sprintf("The form is larger than %d bytes.", maxForm)
			render(w, http.StatusRequestEntityTooLarge, d)
			return
		}
		d.Error = "The form could not be read."
		render(w, http.StatusBadRequest, d)
		return
	}
	if !r.PostForm.Has("text") {
		d.Error = "The form has no text field."
		render(w, http.StatusBadRequest, d)
		return
	}
	text := r.PostForm.Get("text")
	if len(text) > maxText {
		d.Error = fmt.Sprintf("The text is %d bytes, more than the limit of %d.", len(text), maxText)
		render(w, http.StatusRequestEntityTooLarge, d)
		return
	}
	res, err := ops.Extract(text, nil)
	if err != nil {
		d.Error = "Extraction failed: " + err.Error()
		render(w, http.StatusInternalServerError, d)
		return
	}
	d.Text, d.Result = text, res
	render(w, http.StatusOK, d)
}

// render executes the template into a buffer first, so that a failure
// becomes a 500 rather than half a page.
func render(w http.ResponseWriter, code int, d pageData) {
	var buf bytes.Buffer
	if err := page.Execute(&buf, d); err != nil {
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]string{"status": "ok"})
}

// statusBody is the status page's figures as JSON.
type statusBody struct {
	Name          string `json:"name"`
	Version       string `json:"version"`
	UptimeSeconds int64  `json:"uptimeSeconds"`
	Requests      uint64 `json:"requests"`
}

func (s *server) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, statusBody{
		Name:          s.name,
		Version:       s.version,
		UptimeSeconds: int64(s.uptime() / time.Second),
		Requests:      s.requests.Load(),
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	// An error here means the client went away; there is no one to tell.
	_ = json.NewEncoder(w).Encode(v)
}
