package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    config
		wantErr string // the variable the error must name
	}{
		{"defaults", nil, config{port: 8080, models: []string{"local-echo"}}, ""},
		{"all set", map[string]string{"PORT": "9000", "MODELS": "a, b/c:1", "TOKEN_DELAY": "20ms"},
			config{port: 9000, models: []string{"a", "b/c:1"}, delay: 20 * time.Millisecond}, ""},
		{"port not a number", map[string]string{"PORT": "x"}, config{}, "PORT"},
		{"port out of range", map[string]string{"PORT": "70000"}, config{}, "PORT"},
		{"model bad", map[string]string{"MODELS": "ok,\x1b[31m"}, config{}, "MODELS"},
		{"model empty", map[string]string{"MODELS": "a,,b"}, config{}, "MODELS"},
		{"model twice", map[string]string{"MODELS": "a,a"}, config{}, "MODELS"},
		{"too many models", map[string]string{"MODELS": strings.Repeat("m,", 16) + "z"}, config{}, "MODELS"},
		{"delay negative", map[string]string{"TOKEN_DELAY": "-1s"}, config{}, "TOKEN_DELAY"},
		{"delay too long", map[string]string{"TOKEN_DELAY": "2s"}, config{}, "TOKEN_DELAY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadConfig(env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr+":") {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				if strings.ContainsRune(err.Error(), 0x1b) {
					t.Fatalf("err %q carries a raw escape", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("loadConfig = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"serve", "x"}, {"bogus"}} {
		if err := run(context.Background(), args, env(nil), &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want the usage error", args, err)
		}
	}
}

// lockedBuffer is written by the server's goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeHealthcheckStop runs serve on a loopback listener, checks it
// with the healthcheck command's function, and stops it with its context.
func TestServeHealthcheckStop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs lockedBuffer
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, config{models: []string{"local-echo"}}, &logs) }()
	url := "http://" + ln.Addr().String()
	if err := healthcheck(context.Background(), url+"/healthz"); err != nil {
		t.Fatalf("healthcheck: %v", err)
	}
	if err := healthcheck(context.Background(), url+"/nothing"); err == nil {
		t.Fatal("healthcheck of a 404 passed")
	}
	resp, err := http.Post(url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"local-echo","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(logs.String(), "stopped after 3 requests") {
		t.Fatalf("logs %q do not count 3 requests", logs.String())
	}
}
