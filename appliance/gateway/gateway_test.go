package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCredentialInjection(t *testing.T) {
	b := newBackend(t, okChat(5, 7))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	a := e.do("127.0.0.1", http.MethodPost, "/v1/chat/completions", http.Header{
		"Authorization":   {"Bearer agent-made-up-key"},
		"Cookie":          {"session=abc"},
		"X-Forwarded-For": {"10.0.0.1"},
	}, `{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`)
	if a.status != http.StatusOK || !strings.Contains(string(a.body), `"content":"hi"`) {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
	if got := a.header.Get(headerBackend); got != "b1" {
		t.Fatalf("%s = %q", headerBackend, got)
	}
	req, body := b.lastRequest()
	if got := req.Header.Get("Authorization"); got != "Bearer "+testSecret {
		t.Fatalf("backend got Authorization %q", got)
	}
	for _, h := range []string{"Cookie", "X-Forwarded-For"} {
		if req.Header.Get(h) != "" {
			t.Errorf("the agent's %s reached the backend", h)
		}
	}
	if req.URL.Path != "/v1/chat/completions" || body["model"] != "backend-chat" || body["temperature"] != 0.5 {
		t.Fatalf("backend got %s %v", req.URL.Path, body)
	}
}

func TestUnknownAgent(t *testing.T) {
	b := newBackend(t, okChat(1, 1))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	for _, path := range []string{"/v1/chat/completions", "/v1/models", "/v1/nothing"} {
		a := e.do("127.0.0.9", http.MethodPost, path, nil, `{"model":"chat","messages":[]}`)
		wantRefusal(t, a, http.StatusForbidden, CodeUnknownAgent)
	}
	if b.calls.Load() != 0 {
		t.Fatal("an unknown agent's request reached the backend")
	}
}

func TestModelPolicy(t *testing.T) {
	b := newBackend(t, okChat(1, 1))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}, "big": {b.URL}})})
	e.policy.set("agent-a", Rules{Models: []string{"chat", "ghost"}})
	wantRefusal(t, e.chat("127.0.0.1", "big"), http.StatusForbidden, CodeModelNotAllowed)
	wantRefusal(t, e.chat("127.0.0.1", "ghost"), http.StatusNotFound, CodeModelNotFound)
	wantRefusal(t, e.chat("127.0.0.2", "chat"), http.StatusForbidden, CodeModelNotAllowed) // agent-b: no rules, nothing allowed
	if b.calls.Load() != 0 {
		t.Fatal("a denied request reached the backend")
	}
	if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK {
		t.Fatalf("allowed model: %d %s", a.status, a.body)
	}
	a := e.do("127.0.0.1", http.MethodGet, "/v1/models", nil, "")
	if a.status != http.StatusOK || string(a.body) != `{"object":"list","data":[{"id":"chat","object":"model","created":0,"owned_by":"omertaos"}]}`+"\n" {
		t.Fatalf("models: %d %s", a.status, a.body)
	}
	wantRefusal(t, e.do("127.0.0.1", http.MethodGet, "/v1/models/big", nil, ""), http.StatusForbidden, CodeModelNotAllowed)
	if a := e.do("127.0.0.1", http.MethodGet, "/v1/models/chat", nil, ""); a.status != http.StatusOK {
		t.Fatalf("models/chat: %d", a.status)
	}
	us := e.recent("agent-a")
	if len(us) != 3 || us[2].Code != string(CodeModelNotAllowed) || us[1].Code != string(CodeModelNotFound) || us[0].Code != "" {
		t.Fatalf("recorded %+v", us)
	}
}

// TestDisabledModel: a model the registry holds disabled is refused with
// the reason it was not enabled, never reaches its backend, and is left out
// of /v1/models; enabling it again (a new registry) lets it through.
func TestDisabledModel(t *testing.T) {
	b := newBackend(t, okChat(1, 1))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}, "big": {b.URL}})})
	allowAll(e.policy, false)
	base := e.gw.reg.Load()
	reason := "model \"big\" refused: needs 80 GB of GPU memory; no GPU was found\x1b[2J"
	e.gw.SetRegistry(base.WithDisabled(map[string]string{"big": reason, "ghost": "x"}))
	a := e.chat("127.0.0.1", "big")
	wantRefusal(t, a, http.StatusForbidden, CodeModelNotEnabled)
	if !strings.Contains(a.err.Message, "needs 80 GB") || strings.Contains(a.err.Message, "\x1b") {
		t.Fatalf("refusal does not give the reason, escaped: %q", a.err.Message)
	}
	wantRefusal(t, e.do("127.0.0.1", http.MethodGet, "/v1/models/big", nil, ""), http.StatusForbidden, CodeModelNotEnabled)
	if b.calls.Load() != 0 {
		t.Fatal("a disabled model's request reached the backend")
	}
	a = e.do("127.0.0.1", http.MethodGet, "/v1/models", nil, "")
	if a.status != http.StatusOK || strings.Contains(string(a.body), `"big"`) || !strings.Contains(string(a.body), `"chat"`) {
		t.Fatalf("models: %d %s", a.status, a.body)
	}
	if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK {
		t.Fatalf("enabled model: %d %s", a.status, a.body)
	}
	if base.Model("big").Disabled != "" {
		t.Fatal("WithDisabled changed the registry it copied")
	}
	e.gw.SetRegistry(base.WithDisabled(nil))
	if a := e.chat("127.0.0.1", "big"); a.status != http.StatusOK {
		t.Fatalf("model enabled again: %d %s", a.status, a.body)
	}
}

func TestCloudPolicy(t *testing.T) {
	cloud := newTLSBackend(t, okChat(1, 1))
	local := newBackend(t, status(http.StatusInternalServerError))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{
		"gpt": {"cloud:" + cloud.URL}, "mixed": {local.URL, "cloud:" + cloud.URL}})})
	allowAll(e.policy, false)
	wantRefusal(t, e.chat("127.0.0.1", "gpt"), http.StatusForbidden, CodeCloudNotAllowed)
	// The cloud fallback is skipped too: the local failure is the answer.
	wantRefusal(t, e.chat("127.0.0.1", "mixed"), http.StatusBadGateway, CodeBackendError)
	if cloud.calls.Load() != 0 {
		t.Fatal("a cloud backend was called against the policy")
	}
	a := e.do("127.0.0.1", http.MethodGet, "/v1/models", nil, "")
	if !strings.Contains(string(a.body), `"mixed"`) || strings.Contains(string(a.body), `"gpt"`) {
		t.Fatalf("models without cloud: %s", a.body)
	}
	allowAll(e.policy, true)
	if a := e.chat("127.0.0.1", "gpt"); a.status != http.StatusOK {
		t.Fatalf("cloud allowed: %d %s", a.status, a.body)
	}
	if a := e.chat("127.0.0.1", "mixed"); a.status != http.StatusOK || a.header.Get(headerBackend) != "b3" {
		t.Fatalf("cloud fallback: %d %s %v", a.status, a.body, a.header)
	}
}

func TestRequestRateLimit(t *testing.T) {
	b := newBackend(t, okChat(1, 1))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	for _, id := range []string{"agent-a", "agent-b"} {
		e.policy.set(id, Rules{Models: []string{AnyModel},
			Agent:  Limits{RequestsPerMinute: 2},
			Tenant: Limits{RequestsPerMinute: 3}})
	}
	for i := range 2 {
		if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, a.status, a.body)
		}
	}
	a := e.chat("127.0.0.1", "chat")
	wantRefusal(t, a, http.StatusTooManyRequests, CodeRateLimited)
	if ra, _ := strconv.Atoi(a.header.Get("Retry-After")); ra < 1 || ra > 30 {
		t.Fatalf("Retry-After %q", a.header.Get("Retry-After"))
	}
	// agent-b has its own rate, but the tenant's third request is its last.
	if a := e.chat("127.0.0.2", "chat"); a.status != http.StatusOK {
		t.Fatalf("agent-b: %d %s", a.status, a.body)
	}
	a = e.chat("127.0.0.2", "chat")
	wantRefusal(t, a, http.StatusTooManyRequests, CodeRateLimited)
	if !strings.Contains(a.err.Message, `tenant "acme"`) {
		t.Fatalf("refusal %q does not name the tenant", a.err.Message)
	}
	if b.calls.Load() != 3 {
		t.Fatalf("backend called %d times, want 3", b.calls.Load())
	}
	e.clock.advance(time.Minute)
	if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK {
		t.Fatalf("after a minute: %d %s", a.status, a.body)
	}
}

func TestTokenRateLimit(t *testing.T) {
	b := newBackend(t, okChat(10, 15))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	e.policy.set("agent-a", Rules{Models: []string{AnyModel}, Agent: Limits{TokensPerMinute: 10}})
	if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK {
		t.Fatalf("first: %d %s", a.status, a.body)
	}
	a := e.chat("127.0.0.1", "chat")
	wantRefusal(t, a, http.StatusTooManyRequests, CodeTokenRateLimited)
	// 25 tokens taken from a bucket of 10 filling at 10 a minute: 16
	// tokens to wait for before the next one.
	if ra := a.header.Get("Retry-After"); ra != "96" {
		t.Fatalf("Retry-After %q, want 96", ra)
	}
	e.clock.advance(96 * time.Second)
	if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK {
		t.Fatalf("after waiting: %d %s", a.status, a.body)
	}
}

func TestMonthlyTokenBudget(t *testing.T) {
	b := newBackend(t, okChat(20, 30))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	// Each request is estimated at 70 tokens (20 for its 79-byte body, 50
	// for max_tokens) and charged the 50 reported: the third would fit
	// the 160 as charged (150), but not as it might be (170).
	e.policy.set("agent-a", Rules{Models: []string{AnyModel}, Tenant: Limits{MonthlyTokens: 160}})
	served := 0
	var last answer
	for range 10 {
		last = e.chat("127.0.0.1", "chat")
		if last.status != http.StatusOK {
			break
		}
		served++
	}
	wantRefusal(t, last, http.StatusTooManyRequests, CodeBudgetExceeded)
	if served != 2 || b.calls.Load() != 2 {
		t.Fatalf("served %d, backend called %d times; want 2", served, b.calls.Load())
	}
	wantRetry := strconv.Itoa(int(untilNextMonth(t0) / time.Second))
	if last.header.Get("Retry-After") != wantRetry || !strings.Contains(last.err.Message, `tenant "acme": monthly tokens budget`) {
		t.Fatalf("refusal %q Retry-After %q, want %s", last.err.Message, last.header.Get("Retry-After"), wantRetry)
	}
	e.clock.advance(untilNextMonth(t0))
	if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK {
		t.Fatalf("next month: %d %s", a.status, a.body)
	}
}

// TestFallbackOverBudget: the local backend fails, and the paid fallback
// could cost more than what is left of the agent's budget, so it is not
// called: 429, not a quiet overspend.
func TestFallbackOverBudget(t *testing.T) {
	local := newBackend(t, status(http.StatusServiceUnavailable))
	paid := newTLSBackend(t, okChat(10, 10))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {local.URL, "paid:" + paid.URL}})})
	// At 1 USD per 1000 tokens both ways, the estimate (about 20 prompt
	// tokens for the body, 50 completion) is about 0.07 USD.
	e.policy.set("agent-a", Rules{Models: []string{AnyModel}, AllowCloud: true, Agent: Limits{MonthlyCostUSD: 0.05}})
	a := e.chat("127.0.0.1", "chat")
	wantRefusal(t, a, http.StatusTooManyRequests, CodeBudgetExceeded)
	if !strings.Contains(a.err.Message, "fallback to backend b2 refused") || !strings.Contains(a.err.Message, "backend b1 answered 503") {
		t.Fatalf("message %q", a.err.Message)
	}
	if local.calls.Load() != 1 || paid.calls.Load() != 0 {
		t.Fatalf("local called %d, paid %d; want 1 and 0", local.calls.Load(), paid.calls.Load())
	}
	// With room in the budget the same fallback serves, and its cost is
	// charged: 20 tokens at 1 USD per 1000.
	e.policy.set("agent-a", Rules{Models: []string{AnyModel}, AllowCloud: true, Agent: Limits{MonthlyCostUSD: 1}})
	if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK || a.header.Get(headerBackend) != "b2" {
		t.Fatalf("fallback with budget: %d %s", a.status, a.body)
	}
	if got := e.gw.budgets.used("a/agent-a", e.clock.now()); got != (spend{tokens: 20, cost: 20_000_000}) {
		t.Fatalf("charged %+v", got)
	}
	us := e.recent("agent-a")
	if us[0].Backend != "b2" || us[0].Attempts != 2 || us[0].CostNanoUSD != 20_000_000 || us[1].Code != string(CodeBudgetExceeded) {
		t.Fatalf("usage %+v", us)
	}
}

func TestFallbacks(t *testing.T) {
	closed := newBackend(t, okChat(1, 1))
	closed.Close() // connection refused
	for _, tc := range []struct {
		name    string
		primary func(t *testing.T) string
		code    Code
		status  int
	}{
		{"connection refused", func(t *testing.T) string { return closed.URL }, CodeBackendError, http.StatusBadGateway},
		{"5xx", func(t *testing.T) string { return newBackend(t, status(http.StatusBadGateway)).URL }, CodeBackendError, http.StatusBadGateway},
		{"timeout", func(t *testing.T) string {
			return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}).URL
		}, CodeBackendTimeout, http.StatusGatewayTimeout},
		{"redirect", func(t *testing.T) string {
			return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://example.com/", http.StatusFound)
			}).URL
		}, CodeBackendError, http.StatusBadGateway},
		{"compressed answer", func(t *testing.T) string {
			return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", "gzip")
				w.Write([]byte{0x1f, 0x8b, 8, 0})
			}).URL
		}, CodeBackendError, http.StatusBadGateway},
		{"answer too large", func(t *testing.T) string {
			return newBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 2048)) }).URL
		}, CodeBackendTooLarge, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			primary := tc.primary(t)
			second := newBackend(t, okChat(3, 4))
			bounds := WithBounds(Bounds{MaxResponseBytes: 1024})
			e := newEnv(t, envOpt{registry: registryYAML("300ms", map[string][]string{"chat": {primary, second.URL}, "solo": {primary}}),
				opts: []Option{bounds}})
			allowAll(e.policy, false)
			start := time.Now()
			a := e.chat("127.0.0.1", "chat")
			if a.status != http.StatusOK || a.header.Get(headerBackend) != "b2" {
				t.Fatalf("fallback: %d %s", a.status, a.body)
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("took %s", time.Since(start))
			}
			wantRefusal(t, e.chat("127.0.0.1", "solo"), tc.status, tc.code)
			us := e.recent("agent-a")
			if us[1].Attempts != 2 || us[1].Backend != "b2" || !us[1].Reported || us[1].PromptTokens != 3 {
				t.Fatalf("usage %+v", us[1])
			}
		})
	}
}

func TestTimeoutIsPrompt(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	e := newEnv(t, envOpt{registry: registryYAML("150ms", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	start := time.Now()
	a := e.chat("127.0.0.1", "chat")
	took := time.Since(start)
	wantRefusal(t, a, http.StatusGatewayTimeout, CodeBackendTimeout)
	if took < 150*time.Millisecond || took > 2*time.Second {
		t.Fatalf("timed out after %s, want about 150ms", took)
	}
}

func TestCircuitBreaker(t *testing.T) {
	primary := newBackend(t, status(http.StatusInternalServerError))
	second := newBackend(t, okChat(1, 1))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {primary.URL, second.URL}}),
		opts: []Option{WithBreaker(2, 10*time.Second)}})
	allowAll(e.policy, false)
	for range 2 {
		if a := e.chat("127.0.0.1", "chat"); a.status != http.StatusOK {
			t.Fatalf("fallback: %d", a.status)
		}
	}
	if st := e.gw.BreakerState("b1"); st != BreakerOpen {
		t.Fatalf("after 2 failures: %s", st)
	}
	e.chat("127.0.0.1", "chat")
	if primary.calls.Load() != 2 {
		t.Fatalf("open circuit: primary called %d times, want 2", primary.calls.Load())
	}
	// Both open: 503 with the time until the first probe.
	second.setHandler(status(http.StatusInternalServerError))
	e.chat("127.0.0.1", "chat")
	e.chat("127.0.0.1", "chat")
	e.clock.advance(4 * time.Second)
	a := e.chat("127.0.0.1", "chat")
	wantRefusal(t, a, http.StatusServiceUnavailable, CodeBackendUnavailable)
	if a.header.Get("Retry-After") != "6" {
		t.Fatalf("Retry-After %q, want 6", a.header.Get("Retry-After"))
	}
	// After the cooldown one probe goes through; it fails, and the circuit
	// opens again.
	second.setHandler(okChat(1, 1))
	e.clock.advance(6 * time.Second)
	e.chat("127.0.0.1", "chat")
	if primary.calls.Load() != 3 || e.gw.BreakerState("b1") != BreakerOpen {
		t.Fatalf("failed probe: primary called %d, state %s", primary.calls.Load(), e.gw.BreakerState("b1"))
	}
	// The next probe succeeds and closes it.
	primary.setHandler(okChat(1, 1))
	e.clock.advance(10 * time.Second)
	if a := e.chat("127.0.0.1", "chat"); a.header.Get(headerBackend) != "b1" {
		t.Fatalf("probe answered by %q", a.header.Get(headerBackend))
	}
	if st := e.gw.BreakerState("b1"); st != BreakerClosed {
		t.Fatalf("after a good probe: %s", st)
	}
	e.flush()
	recs, err := e.st.AuditLog(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range recs {
		if r.Target == "b1" {
			actions = append(actions, r.Action)
		}
	}
	want := "gateway.breaker.open gateway.breaker.open gateway.breaker.closed"
	if strings.Join(actions, " ") != want {
		t.Fatalf("audit %q, want %q", actions, want)
	}
}

func TestPolicyUnavailable(t *testing.T) {
	b := newBackend(t, okChat(1, 1))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	e.policy.err = errors.New("policy store down")
	wantRefusal(t, e.chat("127.0.0.1", "chat"), http.StatusServiceUnavailable, CodePolicyUnavailable)
	wantRefusal(t, e.do("127.0.0.1", http.MethodGet, "/v1/models", nil, ""), http.StatusServiceUnavailable, CodePolicyUnavailable)
	if b.calls.Load() != 0 {
		t.Fatal("forwarded without a policy")
	}
}

func TestRequestBounds(t *testing.T) {
	b := newBackend(t, okChat(1, 1))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}}),
		opts: []Option{WithBounds(Bounds{MaxBodyBytes: 4096, MaxJSONDepth: 8, MaxHeaderBytes: 2048})}})
	allowAll(e.policy, false)
	for _, tc := range []struct {
		name   string
		method string
		header http.Header
		body   string
		status int
		code   Code
	}{
		{"body too large", "POST", nil, `{"model":"chat","x":"` + strings.Repeat("a", 5000) + `"}`, 413, CodeRequestTooLarge},
		{"too deep", "POST", nil, `{"model":"chat","x":` + strings.Repeat("[", 9) + strings.Repeat("]", 9) + `}`, 400, CodeInvalidRequest},
		{"model twice", "POST", nil, `{"model":"chat","Model":"other"}`, 400, CodeInvalidRequest},
		{"not an object", "POST", nil, `["chat"]`, 400, CodeInvalidRequest},
		{"no model", "POST", nil, `{"messages":[]}`, 400, CodeInvalidRequest},
		{"model not a string", "POST", nil, `{"model":7}`, 400, CodeInvalidRequest},
		{"trailing data", "POST", nil, `{"model":"chat"} {}`, 400, CodeInvalidRequest},
		{"bad n", "POST", nil, `{"model":"chat","n":1000}`, 400, CodeInvalidRequest},
		{"wrong type", "POST", http.Header{"Content-Type": {"text/plain"}}, `{}`, 415, CodeUnsupportedMedia},
		{"headers too large", "POST", http.Header{"X-Big": {strings.Repeat("b", 3000)}}, `{}`, 431, CodeHeadersTooLarge},
		{"GET on chat", "GET", nil, ``, 405, CodeMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, e.do("127.0.0.1", tc.method, "/v1/chat/completions", tc.header, tc.body), tc.status, tc.code)
		})
	}
	if b.calls.Load() != 0 {
		t.Fatal("a refused request reached the backend")
	}
}

// TestHostileUsage: a backend that reports no usage, or nonsense, is
// charged the estimate, never nothing.
func TestHostileUsage(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"none", `{"choices":[]}`},
		{"negative", `{"usage":{"prompt_tokens":-100,"completion_tokens":-5}}`},
		{"huge", `{"usage":{"prompt_tokens":99999999999999,"completion_tokens":1}}`},
		{"strings", `{"usage":{"prompt_tokens":"7","completion_tokens":"1"}}`},
		{"not JSON", `<html>ok</html>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.Write([]byte(tc.body))
			})
			e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
			allowAll(e.policy, false)
			a := e.chat("127.0.0.1", "chat")
			if a.status != http.StatusOK || string(a.body) != tc.body || a.header.Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("answer %d %q %q", a.status, a.body, a.header.Get("Content-Type"))
			}
			us := e.recent("agent-a")
			// a 79-byte body: 20 prompt tokens estimated, and 50 (max_tokens).
			if us[0].Reported || us[0].ChargedTokens != 70 {
				t.Fatalf("usage %+v, want 70 tokens charged as an estimate", us[0])
			}
		})
	}
}

func TestUsageRecordedAndReloaded(t *testing.T) {
	b := newBackend(t, okChat(11, 22))
	dir := t.TempDir()
	st := openStore(t, dir)
	reg := registryYAML("2s", map[string][]string{"chat": {b.URL}})
	e := newEnv(t, envOpt{registry: reg, st: st})
	for _, a := range testAgents {
		e.policy.set(a.ID, Rules{Models: []string{AnyModel}, Tenant: Limits{MonthlyTokens: 1000}})
	}
	for range 3 {
		e.chat("127.0.0.1", "chat")
	}
	e.chat("127.0.0.2", "chat")
	e.chat("127.0.0.3", "nope")
	e.flush()
	month, err := e.gw.MonthlyUsage(context.Background(), "2026-05")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]MonthlyUsage{}
	for _, m := range month {
		got[m.Agent.ID] = m
	}
	if a := got["agent-a"]; a.Requests != 3 || a.PromptTokens != 33 || a.CompletionTokens != 66 || a.ChargedTokens != 99 || a.Agent.Tenant != "acme" {
		t.Fatalf("agent-a month %+v", a)
	}
	if c := got["agent-c"]; c.Requests != 1 || c.Refused != 1 || c.ChargedTokens != 0 {
		t.Fatalf("agent-c month %+v", c)
	}
	us := e.recent("agent-a")
	if len(us) != 3 || us[0].Latency <= 0 || us[0].Status != 200 || us[0].Endpoint != "chat" || us[0].Model != "chat" || !us[0].At.Equal(t0) {
		t.Fatalf("recent %+v", us)
	}
	// A new gateway on the same database starts the month where this one
	// stopped: acme has used 132 of its 1000 tokens.
	e2 := newEnv(t, envOpt{registry: reg, st: st})
	if got := e2.gw.budgets.used("t/acme", t0); got.tokens != 132 {
		t.Fatalf("reloaded tenant spend %+v, want 132 tokens", got)
	}
}

func TestRunWritesOnStop(t *testing.T) {
	b := newBackend(t, okChat(1, 2))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.gw.Run(ctx) }()
	e.chat("127.0.0.1", "chat")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	us, err := e.gw.RecentUsage(context.Background(), "", 10)
	if err != nil || len(us) != 1 {
		t.Fatalf("after Run stopped: %v, %d rows", err, len(us))
	}
}

func TestUsageBatchedEarly(t *testing.T) {
	b := newBackend(t, okChat(1, 2))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}}),
		opts: []Option{WithUsageFlush(time.Hour, 3, 100)}})
	allowAll(e.policy, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.gw.Run(ctx)
	for range 3 {
		e.chat("127.0.0.1", "chat")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		us, _ := e.gw.RecentUsage(context.Background(), "", 10)
		if len(us) == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a full batch was not written before the interval: %d rows", len(us))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHTTPService(t *testing.T) {
	b := newBackend(t, okChat(1, 1))
	e := newEnv(t, envOpt{registry: registryYAML("2s", map[string][]string{"chat": {b.URL}})})
	allowAll(e.policy, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := e.gw.HTTPService(func() (net.Listener, error) { return ln, nil }, time.Second)
	if svc.Name() != "gateway-http" || e.gw.Name() != "gateway" {
		t.Fatalf("names %q %q", svc.Name(), e.gw.Name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	resp, err := clientFrom("127.0.0.1").Get("http://" + ln.Addr().String() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("models: %s", resp.Status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	failing := e.gw.HTTPService(func() (net.Listener, error) { return nil, errors.New("no bridge") }, time.Second)
	if err := failing.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "no bridge") {
		t.Fatalf("Run without a listener: %v", err)
	}
}
