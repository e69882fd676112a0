package ui

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// benchRequest serves one request through the console's handler, in
// memory (no TLS, no socket between browser and console; the unix socket
// to the fake omertad is real).
func benchRequest(b *testing.B, h fasthttp.RequestHandler, path string, u user) {
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI(path)
	ctx.Request.Header.SetHost("console.test")
	ctx.Request.Header.Set("Cookie", u.cookie)
	ctx.Request.Header.Set("Sec-Fetch-Site", "same-origin")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ctx.Response.Reset()
		ctx.ResetUserValues() // as the server does between requests
		h(&ctx)
		if ctx.Response.StatusCode() != http.StatusOK {
			b.Fatalf("%s: %d %s", path, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkDashboard renders the dashboard for an admin with 200 agents:
// whoami, report, probe, agents, drift and the audit head, all through
// the API client to the fake omertad.
func BenchmarkDashboard(b *testing.B) {
	e := newEnv(b, Limits{})
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(200)
	benchRequest(b, e.s.App().Handler(), "/", admin)
}

// BenchmarkForwardAgents forwards GET /api/v1/agents (200 agents) with
// the client's Forward hidden: the answer decoded and encoded again.
func BenchmarkForwardAgents(b *testing.B) {
	e := newEnvMode(b, Limits{}, false)
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(200)
	benchRequest(b, e.s.App().Handler(), "/api/v1/agents", admin)
}

func TestPageConcurrencyBounded(t *testing.T) {
	e := newEnv(t, Limits{Pages: 2, Queue: 50 * time.Millisecond})
	admin := e.signIn("alice", "admin")
	e.fake.Delay.Store(int64(300 * time.Millisecond))
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.s.App().Test(req("GET", "/api/v1/version", "", &admin), -1)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusOK] != 2 || codes[http.StatusServiceUnavailable] != 4 {
		t.Errorf("answers %v, want 2 served and 4 refused with 503", codes)
	}
}

// BenchmarkForwardAgentsRaw is BenchmarkForwardAgents as the console runs:
// the shared client's Forward, omertad's bytes copied.
func BenchmarkForwardAgentsRaw(b *testing.B) {
	e := newEnvMode(b, Limits{}, true)
	admin := e.signIn("alice", "admin")
	e.fake.AddAgents(200)
	benchRequest(b, e.s.App().Handler(), "/api/v1/agents", admin)
}
