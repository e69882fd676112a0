// Command echo-model is the OMERTAOS local model backend: an
// OpenAI-compatible HTTP server whose "model" echoes the prompt, like
// upstream's local-echo, so that the demo and the tests have a backend for
// the model gateway without a GPU or a network.
//
//	/agent serve         serve until SIGTERM, then stop gracefully
//	/agent healthcheck   GET /healthz on the local port; exit 0 when healthy
//	/agent ask           post the chat completion request on stdin to the
//	                     model gateway (OPENAI_BASE_URL, default
//	                     http://10.88.0.1:8080/v1) and print the answer:
//	                     the image as a gateway-mode client (a task)
//
// Endpoints: POST /v1/chat/completions (with "stream": true as server-sent
// events), POST /v1/completions (likewise), POST /v1/embeddings
// (deterministic unit vectors), GET /v1/models, GET /healthz. Every answer
// reports usage: tokens are counted by one fixed rule (see tokens.go), so
// that tests can predict them.
//
// Environment: PORT (default 8080), MODELS (comma-separated model ids,
// default "local-echo"), TOKEN_DELAY (a Go duration such as "20ms" between
// streamed tokens, default 0, at most 1s).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// version is stamped by scripts/agentimage (-X main.version=...).
var version = "dev"

const (
	defaultPort  = 8080
	defaultModel = "local-echo"
	maxModels    = 16
	maxDelay     = time.Second
	stopTimeout  = 10 * time.Second
)

var (
	errUsage = errors.New("usage: /agent serve | /agent healthcheck | /agent ask < request.json")
	modelRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo-model: %v\n", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type config struct {
	port   int
	models []string
	delay  time.Duration
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) != 1 {
		return errUsage
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	switch args[0] {
	case "serve":
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.port))
		if err != nil {
			return fmt.Errorf("listening on port %d: %w", cfg.port, err)
		}
		return serve(ctx, ln, cfg, stderr)
	case "healthcheck":
		return healthcheck(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", cfg.port))
	case "ask":
		endpoint, err := askURL(getenv)
		if err != nil {
			return err
		}
		return ask(ctx, endpoint, os.Stdin, os.Stdout)
	}
	return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
}

// loadConfig reads the environment; a bad value names its variable.
func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{port: defaultPort, models: []string{defaultModel}}
	if p := getenv("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return cfg, fmt.Errorf("PORT: %q is not a port number (1 to 65535)", p)
		}
		cfg.port = n
	}
	if m := getenv("MODELS"); m != "" {
		models, err := parseModels(m)
		if err != nil {
			return cfg, fmt.Errorf("MODELS: %w", err)
		}
		cfg.models = models
	}
	if d := getenv("TOKEN_DELAY"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil || v < 0 || v > maxDelay {
			return cfg, fmt.Errorf("TOKEN_DELAY: %q is not a duration from 0 to %s", d, maxDelay)
		}
		cfg.delay = v
	}
	return cfg, nil
}

func parseModels(s string) ([]string, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxModels {
		return nil, fmt.Errorf("%d models, at most %d", len(parts), maxModels)
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if !modelRe.MatchString(p) {
			return nil, fmt.Errorf("%q is not a model id (letters, digits and ._:/- , at most 128)", p)
		}
		if seen[p] {
			return nil, fmt.Errorf("%q is listed twice", p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// serve answers on ln until ctx ends, then gives requests in flight up to
// stopTimeout to finish. There is no WriteTimeout: a stream lasts as long
// as its tokens; ReadTimeout bounds the request itself.
func serve(ctx context.Context, ln net.Listener, cfg config, stderr io.Writer) error {
	m := newModel(cfg.models, cfg.delay, time.Now)
	srv := &http.Server{
		Handler:           m.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(stderr, "echo-model: http: ", 0),
	}
	fmt.Fprintf(stderr, "echo-model %s: serving %s on %s\n", version, strings.Join(cfg.models, ","), ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "echo-model: stopping")
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	fmt.Fprintf(stderr, "echo-model: stopped after %d requests\n", m.requests.Load())
	return nil
}

func healthcheck(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check: %s answered %s", url, resp.Status)
	}
	return nil
}
