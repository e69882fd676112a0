package gateway

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestBreakerStates(t *testing.T) {
	b := newBreaker(3, 10*time.Second)
	now := t0
	step := func(want BreakerState, allowed bool) {
		t.Helper()
		ok, _ := b.allow(now)
		if ok != allowed || b.State() != want {
			t.Fatalf("allow = %v in %s, want %v in %s", ok, b.State(), allowed, want)
		}
	}
	for range 2 {
		step(BreakerClosed, true)
		b.failure(now)
	}
	step(BreakerClosed, true)
	b.success() // a success clears the count
	for range 3 {
		step(BreakerClosed, true)
		b.failure(now)
	}
	step(BreakerOpen, false)
	now = now.Add(9 * time.Second)
	if ok, wait := b.allow(now); ok || wait != time.Second {
		t.Fatalf("open: allow = %v, wait %s", ok, wait)
	}
	now = now.Add(time.Second)
	step(BreakerHalfOpen, true) // the probe
	step(BreakerHalfOpen, false)
	b.abandon() // the probe's agent went away: another may probe
	step(BreakerHalfOpen, true)
	if from, changed := b.failure(now); !changed || from != BreakerHalfOpen || b.State() != BreakerOpen {
		t.Fatalf("failed probe: from %s changed %v, now %s", from, changed, b.State())
	}
	now = now.Add(10 * time.Second)
	step(BreakerHalfOpen, true)
	if from, changed := b.success(); !changed || from != BreakerHalfOpen || b.State() != BreakerClosed {
		t.Fatalf("good probe: from %s changed %v, now %s", from, changed, b.State())
	}
}

func TestCostOf(t *testing.T) {
	for _, tc := range []struct{ tokens, nano1K, want int64 }{
		{1000, 1_000_000_000, 1_000_000_000}, // 1000 tokens at 1 USD per 1000
		{1, 150_000, 150},                    // gpt-4o-mini prompt: 0.00015 USD per 1000
		{1, 1, 1},                            // rounded up: never free on a paid backend
		{0, 5, 0},
		{5, 0, 0},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64},
		{1 << 40, 1_000_000_000_000, math.MaxInt64},
	} {
		if got := costOf(tc.tokens, tc.nano1K); got != tc.want {
			t.Errorf("costOf(%d, %d) = %d, want %d", tc.tokens, tc.nano1K, got, tc.want)
		}
	}
	if usdToNano(0.00015) != 150_000 || usdToNano(1e12) != math.MaxInt64 || usdToNano(math.NaN()) != 0 {
		t.Fatal("usdToNano")
	}
}

// TestBudgetCountsInFlight: requests in flight hold their estimate, so
// that many at once cannot all pass a check that each would pass alone.
func TestBudgetCountsInFlight(t *testing.T) {
	b := newBudgets(nil)
	scopes := []scope{{what: "agent", id: "a", limits: Limits{MonthlyTokens: 1000}}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []*reservation
	refused := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, e := b.reserve(t0, scopes, spend{tokens: 100})
			mu.Lock()
			defer mu.Unlock()
			if e != nil {
				refused++
				return
			}
			held = append(held, r)
		}()
	}
	wg.Wait()
	if len(held) != 10 || refused != 40 {
		t.Fatalf("%d held, %d refused; want 10 and 40", len(held), refused)
	}
	for _, r := range held {
		r.settle(t0, spend{tokens: 10})
		r.settle(t0, spend{tokens: 10}) // twice is once
	}
	if got := b.used("a/a", t0); got.tokens != 100 {
		t.Fatalf("used %d, want 100", got.tokens)
	}
	if _, e := b.reserve(t0, scopes, spend{tokens: 900}); e != nil {
		t.Fatalf("after settling: %v", e)
	}
}

func TestBudgetExhaustionNotedOnce(t *testing.T) {
	var noted []string
	b := newBudgets(func(scope, id, budget, month string) { noted = append(noted, scope+"/"+id+"/"+budget+"/"+month) })
	scopes := []scope{{what: "tenant", id: "x", limits: Limits{MonthlyCostUSD: 1}}}
	for range 3 {
		if _, e := b.reserve(t0, scopes, spend{tokens: 1, cost: 2e9}); e == nil || e.Code != CodeBudgetExceeded {
			t.Fatalf("over the cost budget: %v", e)
		}
	}
	// A free target is not held to the cost budget.
	if _, e := b.reserve(t0, scopes, spend{tokens: 1}); e != nil {
		t.Fatalf("free target: %v", e)
	}
	b.reserve(t0.AddDate(0, 1, 0), scopes, spend{tokens: 1, cost: 2e9})
	if strings.Join(noted, " ") != "tenant/x/cost/2026-05 tenant/x/cost/2026-06" {
		t.Fatalf("noted %q", noted)
	}
}

func TestMetrics(t *testing.T) {
	b := newBackend(t, okChat(5, 6))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	e.policy.set("agent-a", Rules{Models: []string{AnyModel}, Agent: Limits{MonthlyTokens: 1000}})
	e.chat("127.0.0.1", "chat")
	e.chat("127.0.0.1", "chat")
	e.chat("127.0.0.1", "made-up-model-name")
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.gw.Collectors()...)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		`omerta_gateway_requests_total{agent="agent-a",code="ok",model="chat"} 2`,
		`omerta_gateway_requests_total{agent="agent-a",code="model_not_found",model="unknown"} 1`,
		`omerta_gateway_tokens_total{agent="agent-a",kind="prompt"} 10`,
		`omerta_gateway_tokens_total{agent="agent-a",kind="completion"} 12`,
		`omerta_gateway_backend_attempts_total{backend="b1",outcome="ok"} 2`,
		`omerta_gateway_breaker_state{backend="b1"} 0`,
		`omerta_gateway_budget_used{id="agent-a",scope="agent",unit="tokens"} 22`,
		`omerta_gateway_budget_used{id="acme",scope="tenant",unit="tokens"} 22`,
		`omerta_gateway_usage_pending 3`,
		`omerta_gateway_request_seconds_count{endpoint="chat"} 3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}
