package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// testSecret is the credential of the test backends; no log line or
// answer may ever hold it.
const testSecret = "sk-test-9f8e7d6c5b4a-DO-NOT-LEAK"

var t0 = time.Date(2026, 5, 20, 12, 0, 0, 0, time.UTC)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// lockedBuffer collects log output from many goroutines.
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

// policyFake holds each agent's rules.
type policyFake struct {
	mu    sync.Mutex
	rules map[string]Rules
	err   error
}

func (p *policyFake) Rules(_ context.Context, a AgentRef) (Rules, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return Rules{}, p.err
	}
	return p.rules[a.ID], nil
}

func (p *policyFake) set(agent string, r Rules) {
	p.mu.Lock()
	p.rules[agent] = r
	p.mu.Unlock()
}

// Agents of the tests, by loopback source address.
var testAgents = map[netip.Addr]AgentRef{
	netip.MustParseAddr("127.0.0.1"): {ID: "agent-a", Tenant: "acme"},
	netip.MustParseAddr("127.0.0.2"): {ID: "agent-b", Tenant: "acme"},
	netip.MustParseAddr("127.0.0.3"): {ID: "agent-c", Tenant: "other"},
}

// backend is a fake OpenAI-compatible server that records what it got.
type backend struct {
	*httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	last  *http.Request
	body  []byte
	fn    http.HandlerFunc
}

func newBackend(t testing.TB, fn http.HandlerFunc) *backend { return startBackend(t, fn, false) }

// newTLSBackend is a backend on https, as a cloud one must be.
func newTLSBackend(t testing.TB, fn http.HandlerFunc) *backend { return startBackend(t, fn, true) }

func startBackend(t testing.TB, fn http.HandlerFunc, tls bool) *backend {
	b := &backend{fn: fn}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.last, b.body = r.Clone(context.Background()), body
		fn := b.fn
		b.mu.Unlock()
		b.calls.Add(1)
		fn(w, r)
	}))
	if tls {
		b.StartTLS()
	} else {
		b.Start()
	}
	t.Cleanup(b.Close)
	return b
}

var (
	testRootsOnce sync.Once
	testRoots     *x509.CertPool
)

// testTransport is the gateway's own transport, trusting httptest's
// certificate (every httptest TLS server has the same one).
func testTransport() *http.Transport {
	testRootsOnce.Do(func() {
		s := httptest.NewTLSServer(http.NotFoundHandler())
		testRoots = x509.NewCertPool()
		testRoots.AddCert(s.Certificate())
		s.Close()
	})
	rt := newTransport()
	rt.TLSClientConfig = &tls.Config{RootCAs: testRoots}
	return rt
}

func (b *backend) setHandler(fn http.HandlerFunc) {
	b.mu.Lock()
	b.fn = fn
	b.mu.Unlock()
}

func (b *backend) lastRequest() (*http.Request, map[string]any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var m map[string]any
	json.Unmarshal(b.body, &m)
	return b.last, m
}

// okChat answers a chat completion with the given usage.
func okChat(prompt, completion int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
			prompt, completion, prompt+completion)
	}
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

// env is a gateway on a loopback listener with its fakes.
type env struct {
	t      testing.TB
	gw     *Gateway
	st     *store.Store
	srv    *httptest.Server
	clock  *clock
	policy *policyFake
	logs   *lockedBuffer
	// answers collects every answer the agents got, headers and body, for
	// the test that looks for the secret in them.
	answers *lockedBuffer
}

type envOpt struct {
	registry string // YAML
	opts     []Option
	st       *store.Store
}

func newEnv(t testing.TB, o envOpt) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: t0}, logs: &lockedBuffer{}, answers: &lockedBuffer{},
		policy: &policyFake{rules: map[string]Rules{}}}
	e.st = o.st
	if e.st == nil {
		e.st = openStore(t, t.TempDir())
	}
	reg, err := ParseRegistry([]byte(o.registry), "test")
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	secrets := SecretsFunc(func(_ context.Context, name string) ([]byte, error) {
		if name == "test-key" {
			return []byte(testSecret), nil
		}
		return nil, fmt.Errorf("no secret %q", name)
	})
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := append([]Option{WithClock(e.clock.now), WithLogger(log), WithUsageFlush(time.Hour, 1000, 10000),
		WithTransport(testTransport())}, o.opts...)
	e.gw, err = New(context.Background(), e.st, Deps{
		Identifier: IdentifierFunc(func(a netip.Addr) (AgentRef, bool) { r, ok := testAgents[a]; return r, ok }),
		Policy:     e.policy, Secrets: secrets, Registry: reg,
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.gw)
	t.Cleanup(e.srv.Close)
	return e
}

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// client returns an HTTP client whose connections come from addr.
func clientFrom(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableCompression: true}, Timeout: 30 * time.Second}
}

// answer is what an agent got.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	}
}

func (e *env) do(from, method, path string, header http.Header, body string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := clientFrom(from).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: data}
	var eb struct {
		Error *json.RawMessage `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
		json.Unmarshal(*eb.Error, &a.err)
	}
	fmt.Fprintf(e.answers, "%s %s -> %d\n%v\n%s\n", method, path, resp.StatusCode, resp.Header, data)
	return a
}

// chat posts a chat completion for model from an agent's address.
func (e *env) chat(from, model string) answer {
	e.t.Helper()
	return e.do(from, http.MethodPost, "/v1/chat/completions", nil,
		`{"model":"`+model+`","messages":[{"role":"user","content":"hello"}],"max_tokens":50}`)
}

func (e *env) flush() {
	e.t.Helper()
	if err := e.gw.Flush(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) recent(agent string) []Usage {
	e.t.Helper()
	e.flush()
	us, err := e.gw.RecentUsage(context.Background(), agent, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	return us
}

func wantRefusal(t testing.TB, a answer, status int, code Code) {
	t.Helper()
	if a.status != status || a.err.Code != string(code) || a.err.Message == "" || a.err.Type == "" {
		t.Fatalf("answer %d %s, want %d with code %s", a.status, a.body, status, code)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("refusal Content-Type %q", ct)
	}
}

// allowAll is a policy with no limits for every test agent.
func allowAll(p *policyFake, cloud bool) {
	for _, a := range testAgents {
		p.set(a.ID, Rules{Models: []string{AnyModel}, AllowCloud: cloud})
	}
}

// registryYAML builds a registry with one model per route given, each
// target a backend URL ("cloud:" prefix for a cloud one, "paid:" for a
// cloud one priced at 1 USD per 1000 tokens both ways).
func registryYAML(timeout string, models map[string][]string) string {
	var b strings.Builder
	b.WriteString("backends:\n")
	type tgt struct{ name, price string }
	routes := map[string][]tgt{}
	n := 0
	for _, model := range sortedKeys(models) {
		for _, u := range models[model] {
			n++
			name := fmt.Sprintf("b%d", n)
			kind, price := "local", ""
			if rest, ok := strings.CutPrefix(u, "cloud:"); ok {
				kind, u = "cloud", rest
			} else if rest, ok := strings.CutPrefix(u, "paid:"); ok {
				kind, u, price = "cloud", rest, ", prompt_per_1k_usd: 1, completion_per_1k_usd: 1"
			}
			fmt.Fprintf(&b, "  - {name: %s, url: %q, kind: %s, credential: test-key, timeout: %s}\n", name, u+"/v1", kind, timeout)
			routes[model] = append(routes[model], tgt{name, price})
		}
	}
	b.WriteString("models:\n")
	for _, model := range sortedKeys(models) {
		fmt.Fprintf(&b, "  - name: %s\n    estimate_completion_tokens: 100\n    route:\n", model)
		for _, t := range routes[model] {
			fmt.Fprintf(&b, "      - {backend: %s, model: backend-%s%s}\n", t.name, model, t.price)
		}
	}
	return b.String()
}

func sortedKeys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
