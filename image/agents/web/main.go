// Command web is the OMERTAOS sample HTTP agent: a status page on its port
// (PORT, default 8080) with its name (AGENT_NAME), uptime and request count,
// a form that runs the tool agent's text extraction, and /healthz.
//
//	/agent serve         serve until SIGTERM, then stop gracefully
//	/agent healthcheck   GET /healthz on the local port; exit 0 when healthy
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
	"strconv"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// version is stamped by scripts/agentimage (-X main.version=...).
var version = "dev"

const (
	defaultPort  = 8080
	maxNameRunes = 63
	stopTimeout  = 10 * time.Second
)

var errUsage = errors.New("usage: /agent serve | /agent healthcheck")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "web agent: %v\n", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type config struct {
	name string
	port int
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
		return serve(ctx, ln, cfg, time.Now, stderr)
	case "healthcheck":
		return healthcheck(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", cfg.port))
	}
	return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
}

// loadConfig reads the environment; a bad value names its variable.
func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{name: "web", port: defaultPort}
	if p := getenv("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return cfg, fmt.Errorf("PORT: %q is not a port number (1 to 65535)", p)
		}
		cfg.port = n
	}
	if name := getenv("AGENT_NAME"); name != "" {
		if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameRunes || hasControl(name) {
			return cfg, fmt.Errorf("AGENT_NAME: %q must be at most %d printable characters", name, maxNameRunes)
		}
		cfg.name = name
	}
	return cfg, nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// serve answers on ln until ctx ends, then gives requests in flight up to
// stopTimeout to finish.
func serve(ctx context.Context, ln net.Listener, cfg config, now func() time.Time, stderr io.Writer) error {
	s := newServer(cfg.name, version, now(), now)
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(stderr, "web agent: http: ", 0),
	}
	fmt.Fprintf(stderr, "web agent: %q serving on %s\n", cfg.name, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "web agent: stopping")
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	fmt.Fprintf(stderr, "web agent: stopped after %d requests\n", s.requests.Load())
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
