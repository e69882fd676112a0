package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// echoAuth is a hostile backend: it sends the credential it got back in
// its headers and body, whole or split over two writes.
func echoAuth(status int, stream bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		w.Header().Set("X-Echo", auth)
		w.Header().Set("Set-Cookie", "k="+auth)
		if stream {
			w.Header().Set("Content-Type", "text/event-stream")
			half := len(auth) / 2
			fmt.Fprintf(w, "data: {\"echo\":\"%s", auth[:half])
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
			fmt.Fprintf(w, "%s\"}\n\ndata: [DONE]\n\n", auth[half:])
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"echo":%q,"error":{"message":%q}}`, auth, "bad key "+auth)
	}
}

// TestSecretNeverLeaks runs every path a credential could take out of the
// gateway (answers echoing it, failures, unusable secrets, streams split
// mid-secret) and then looks for it in every answer the agents got, every
// log line at debug level, the metrics, the usage rows and the audit log.
func TestSecretNeverLeaks(t *testing.T) {
	ok := newBackend(t, echoAuth(http.StatusOK, false))
	refusing := newBackend(t, echoAuth(http.StatusUnauthorized, false))
	failing := newBackend(t, echoAuth(http.StatusInternalServerError, false))
	streaming := newBackend(t, echoAuth(http.StatusOK, true))
	reg := fmt.Sprintf(`backends:
  - {name: ok, url: %q, kind: local, credential: test-key}
  - {name: refusing, url: %q, kind: local, credential: test-key}
  - {name: failing, url: %q, kind: local, credential: test-key}
  - {name: streaming, url: %q, kind: local, credential: test-key}
  - {name: nokey, url: %q, kind: local, credential: missing-key}
models:
  - {name: ok, route: [{backend: ok}]}
  - {name: refusing, route: [{backend: refusing}]}
  - {name: failover, route: [{backend: failing}, {backend: ok}]}
  - {name: streaming, route: [{backend: streaming}]}
  - {name: nokey, route: [{backend: nokey}, {backend: failing}]}
`, ok.URL+"/v1", refusing.URL+"/v1", failing.URL+"/v1", streaming.URL+"/v1", ok.URL+"/v1")
	e := newEnv(t, envOpt{registry: reg})
	allowAll(e.policy, false)
	for _, model := range []string{"ok", "refusing", "failover", "nokey", "missing"} {
		e.chat("127.0.0.1", model)
	}
	e.do("127.0.0.1", http.MethodPost, "/v1/chat/completions", nil, `{"model":"streaming","stream":true,"messages":[]}`)
	e.do("127.0.0.9", http.MethodGet, "/v1/models", nil, "")

	// The secret did reach the backends, and they did send it back.
	if req, _ := ok.lastRequest(); req.Header.Get("Authorization") != "Bearer "+testSecret {
		t.Fatal("the test backend never got the credential: the test proves nothing")
	}
	answers := e.answers.String()
	if strings.Count(answers, "[redacted]") < 3 {
		t.Fatalf("expected the echoed credential to be redacted in the answers:\n%s", answers)
	}
	if !strings.Contains(answers, "-> 401") || !strings.Contains(answers, "-> 502") {
		t.Fatalf("scenarios did not run as planned:\n%s", answers)
	}

	e.flush()
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(e.gw.Collectors()...)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg2, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	usage, _ := e.gw.RecentUsage(context.Background(), "", 100)
	usageJSON, _ := json.Marshal(usage)
	audit, _ := e.st.AuditLog(context.Background(), 0, 1000)
	auditJSON, _ := json.Marshal(audit)

	logs := e.logs.String()
	if !strings.Contains(logs, "gateway credential unusable") {
		t.Fatalf("the unusable credential was not logged:\n%s", logs)
	}
	for name, text := range map[string]string{
		"answers": answers, "logs": logs, "metrics": rec.Body.String(), "usage": string(usageJSON), "audit": string(auditJSON),
	} {
		for _, needle := range []string{testSecret, testSecret[:16], testSecret[len(testSecret)-16:]} {
			if strings.Contains(text, needle) {
				t.Errorf("the credential (%q) appears in the %s:\n%s", needle, name, text)
			}
		}
	}
}
