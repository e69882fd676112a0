package agents

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/store"
)

const (
	testImage  = "omerta.test/tool:1"
	testDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testSecret = "s3cr3t-V4LUE-never-shown"
	testActor  = "uid:1000"
)

// clock is a settable clock for backoff tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is one test's Service on a fake runtime and a fresh store.
type env struct {
	s     *Service
	rt    *FakeRuntime
	st    *store.Store
	clock *clock
	dir   string
	logs  *syncBuffer
}

func newEnv(t testing.TB, opts ...Option) *env {
	t.Helper()
	return newEnvWith(t, nil, nil, opts...)
}

// newEnvWith is newEnv on a store with more schemas, and with options
// built from the store (wire: the policy service needs it).
func newEnvWith(t testing.TB, schemas []store.Schema, wire func(*store.Store, *clock) []Option, opts ...Option) *env {
	t.Helper()
	dir := t.TempDir()
	c := newClock()
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(append([]store.Schema{Schema}, schemas...)...),
		store.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if wire != nil {
		opts = append(wire(st, c), opts...)
	}
	rt := NewFakeRuntime(filepath.Join(dir, "logs"), c.Now)
	rt.AddImage(runtime.Image{Name: testImage, Digest: testDigest})
	logs := &syncBuffer{}
	base := []Option{WithClock(c.Now), WithStateDir(filepath.Join(dir, "agents")), WithStopGrace(0),
		WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}
	s, err := New(st, rt, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &env{s: s, rt: rt, st: st, clock: c, dir: dir, logs: logs}
}

// toolYAML is a manifest with a secret, a volume and tasks.
const toolYAML = `apiVersion: omertaos.dev/v1
kind: Agent
metadata: {id: tool, name: Tool}
spec:
  image: {ref: omerta.test/tool:1}
  command: ["/agent"]
  args: ["--serve"]
  env:
    - {name: LOG_LEVEL, value: info}
  configSchema:
    type: object
    properties:
      mode: {type: string, enum: [fast, slow]}
      api_key: {type: string, format: secret, pattern: "^[a-zA-Z0-9-]+$"}
  resources: {cpu: 500m, memory: 64Mi, pids: 64}
  volumes:
    - {name: data, mountPath: /data}
  restart:
    policy: on-failure
    backoff: {initial: 1s, max: 4s}
    crashLoop: {failures: 3, window: 1m}
  isolation: container
  tasks: {command: ["/agent", "task"], timeout: 30s, maxOutput: 1Ki}
`

func parseManifest(t testing.TB, text string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse([]byte(text))
	if err != nil {
		t.Fatalf("parsing the test manifest: %v", err)
	}
	return m
}

// withPolicy replaces the restart block of toolYAML.
func withPolicy(restart string) string {
	i := strings.Index(toolYAML, "  restart:")
	j := strings.Index(toolYAML, "  isolation:")
	return toolYAML[:i] + restart + toolYAML[j:]
}

func (e *env) deploy(t testing.TB, id string) Agent {
	t.Helper()
	a, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, toolYAML), ID: id,
		Config: map[string]any{"mode": "fast"}, Secrets: map[string]any{"api_key": testSecret}, Actor: testActor})
	if err != nil {
		t.Fatalf("deploy %s: %v", id, err)
	}
	return a
}

func (e *env) get(t testing.TB, id string) Agent {
	t.Helper()
	a, err := e.s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return a
}

func (e *env) reconcile(t testing.TB) {
	t.Helper()
	if err := e.s.Reconcile(context.Background()); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
}

// auditActions lists the audit log's actions (with their actors) after
// seq.
func (e *env) audit(t testing.TB) []store.AuditRecord {
	t.Helper()
	recs, err := e.st.AuditLog(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func actions(recs []store.AuditRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Actor+" "+r.Action+" "+r.Target)
	}
	return out
}

func (e *env) state(t testing.TB, id string) State {
	t.Helper()
	return e.get(t, id).Status.State
}

func (e *env) ctrState(t testing.TB, cid string) runtime.State {
	t.Helper()
	st, err := e.rt.Status(context.Background(), cid)
	if err != nil {
		return "absent"
	}
	return st.State
}
