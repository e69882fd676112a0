package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/store"
)

const (
	testImage  = "omerta.test/tool:1"
	testDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testSecret = "s3cr3t-V4LUE-never-shown"
)

// toolEntry is a shipped catalog entry with a secret and tasks.
const toolEntry = `apiVersion: omertaos.dev/v1
kind: Agent
metadata: {id: tool, name: Tool}
spec:
  image: {ref: omerta.test/tool:1}
  command: ["/agent"]
  configSchema:
    type: object
    properties:
      mode: {type: string, enum: [fast, slow]}
      api_key: {type: string, format: secret}
  resources: {cpu: 500m, memory: 64Mi, pids: 64}
  restart: {policy: on-failure}
  isolation: container
  tasks: {command: ["/agent", "task"], timeout: 30s, maxOutput: 1Ki}
`

// noImageEntry cannot be deployed.
const noImageEntry = `apiVersion: omertaos.dev/v1
kind: Agent
metadata: {id: idea, name: Just an idea}
spec: {}
`

// fakeImages is the runtime's image side: a real import is tested against
// a real containerd (cmd/omerta's end-to-end test).
type fakeImages struct {
	*agents.FakeRuntime
	mu     sync.Mutex
	paths  []string
	want   []string // the digest each import required ("" for none)
	result []runtime.Image
	err    error
}

func (f *fakeImages) ImportArchive(_ context.Context, path string, opts ...runtime.ImportOption) ([]runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths = append(f.paths, path)
	f.want = append(f.want, runtime.ExpectedDigest(opts...))
	return f.result, f.err
}

type agentsEnv struct {
	served
	svc    *agents.Service
	rt     *agents.FakeRuntime
	images *fakeImages
	srv    *Server
}

func newAgentsEnv(t testing.TB, opts ...func(*AgentsDeps)) *agentsEnv {
	t.Helper()
	return newAgentsEnvEvery(t, 20*time.Millisecond, opts...)
}

// newAgentsEnvEvery is newAgentsEnv with the reconciler and telemetry
// running every interval.
func newAgentsEnvEvery(t testing.TB, interval time.Duration, opts ...func(*AgentsDeps)) *agentsEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(agents.Schema, catalog.Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := agents.NewFakeRuntime(filepath.Join(dir, "logs"), nil)
	rt.AddImage(runtime.Image{Name: testImage, Digest: testDigest, Manifest: testDigest})
	svc, err := agents.New(st, rt, agents.WithStateDir(filepath.Join(dir, "agents")), agents.WithStopGrace(0),
		agents.WithInterval(interval), agents.WithTelemetryInterval(interval),
		agents.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	catDir := filepath.Join(dir, "catalog")
	os.Mkdir(catDir, 0o755)
	os.WriteFile(filepath.Join(catDir, "tool.yaml"), []byte(toolEntry), 0o644)
	os.WriteFile(filepath.Join(catDir, "idea.yaml"), []byte(noImageEntry), 0o644)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	reg.MustRegister(svc.Collectors()...)
	images := &fakeImages{FakeRuntime: rt}
	d := AgentsDeps{
		Catalog: catalog.NewService(st, catDir), Service: svc, Images: images, Events: svc.Bus(), Logs: svc,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Heartbeat: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&d)
	}
	e := &agentsEnv{svc: svc, rt: rt, images: images}
	e.served, e.srv = serveWithServer(t, Deps{Store: st, Agents: d})
	return e
}

// serveWithServer is serve, also returning the Server (for Shutdown).
func serveWithServer(t testing.TB, d Deps) (served, *Server) {
	t.Helper()
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(d)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	c := apiclient.New(sock, apiclient.WithTimeout(10*time.Second))
	t.Cleanup(c.Close)
	return served{c: c, st: d.Store, sock: sock}, srv
}

func (e *agentsEnv) deploy(t testing.TB, id string) apitype.Agent {
	t.Helper()
	a, err := e.c.DeployAgent(context.Background(), apitype.AgentDeploy{Entry: "tool", ID: id,
		Config: map[string]any{"mode": "fast"}, Secrets: map[string]any{"api_key": testSecret}})
	if err != nil {
		t.Fatalf("deploy %s: %v", id, err)
	}
	return a
}

func (e *agentsEnv) waitState(t *testing.T, id, state string) apitype.Agent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := e.c.Agent(context.Background(), id)
		if err == nil && a.Status.State == state {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s never reached %s: %+v, %v", id, state, a.Status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func auditActions(t *testing.T, st *store.Store) []string {
	t.Helper()
	recs, err := st.AuditLog(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Actor+" "+r.Action+" "+r.Target)
	}
	return out
}

func TestAgentLifecycleRoutes(t *testing.T) {
	ctx := context.Background()
	e := newAgentsEnv(t)
	a := e.deploy(t, "tool-1")
	if a.ID != "tool-1" || a.Name != "Tool" || a.Image == nil || a.Image.Digest != testDigest || a.Desired != "enabled" {
		t.Fatalf("deployed = %+v", a)
	}
	if a.Config["api_key"] != "(secret)" || len(a.SecretKeys) != 1 || a.SecretKeys[0] != "/api_key" {
		t.Errorf("config %v, secret keys %v: want the secret redacted and named", a.Config, a.SecretKeys)
	}
	a = e.waitState(t, "tool-1", "running")
	// The secret is in no answer, not even in the raw bytes; the agent
	// marks it, the list (a summary) carries no configuration at all.
	for _, tc := range []struct {
		path         string
		config, mark bool
	}{{"/api/v1/agents", false, false}, {"/api/v1/agents/tool-1", true, true}} {
		code, body := raw(t, e.sock, "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if code != 200 || strings.Contains(body, testSecret) || strings.Contains(body, `"(secret)"`) != tc.mark ||
			strings.Contains(body, `"config"`) != tc.config || strings.Contains(body, `"manifest"`) != tc.config {
			t.Errorf("GET %s = %d, secret shown, or config, manifest or mark (want %v) wrong: %s", tc.path, code, tc.config, body)
		}
	}
	list, err := e.c.Agents(ctx)
	if err != nil || len(list.Agents) != 1 || list.Agents[0].ID != "tool-1" {
		t.Fatalf("Agents = %+v, %v", list, err)
	}
	// A task with its input echoed back (the fake runtime's exec).
	task, err := e.c.RunTask(ctx, "tool-1", apitype.TaskCreate{Input: json.RawMessage(`{"text":"hello"}`), IdempotencyKey: "k1"}, 10*time.Second)
	if err != nil || task.State != apitype.TaskSucceeded || string(task.Output) != `{"text":"hello"}` || task.Actor != rootActor {
		t.Fatalf("RunTask = %+v, %v", task, err)
	}
	again, err := e.c.RunTask(ctx, "tool-1", apitype.TaskCreate{Input: json.RawMessage(`{"text":"hello"}`), IdempotencyKey: "k1"}, 0)
	if err != nil || again.ID != task.ID {
		t.Errorf("repeat with the same key = %+v, %v; want task %s", again, err, task.ID)
	}
	if got, err := e.c.Task(ctx, task.ID); err != nil || got.ID != task.ID || got.State != apitype.TaskSucceeded {
		t.Errorf("Task = %+v, %v", got, err)
	}
	if ts, err := e.c.Tasks(ctx, "tool-1", 10); err != nil || len(ts.Tasks) != 1 {
		t.Errorf("Tasks = %+v, %v", ts, err)
	}
	if _, err := e.c.CancelTask(ctx, task.ID); statusOf(err) != http.StatusConflict {
		t.Errorf("cancelling a finished task = %v, want 409", err)
	}
	// Logs, as the shim writes them.
	if err := e.rt.AppendLog(a.Status.Container, "line one\nline two\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := e.c.AgentLogs(ctx, "tool-1", 1); err != nil || string(b) != "line two\n" {
		t.Errorf("AgentLogs(tail 1) = %q, %v", b, err)
	}
	// Patch, disable, enable, restart.
	p, err := e.c.PatchAgent(ctx, "tool-1", apitype.AgentPatch{Config: map[string]any{"mode": "slow"}, Resources: &apitype.Resources{Memory: "128Mi"}})
	if err != nil || p.Generation != 2 || p.Config["mode"] != "slow" {
		t.Fatalf("PatchAgent = %+v, %v", p, err)
	}
	if d, err := e.c.AgentAction(ctx, "tool-1", apiclient.ActionDisable); err != nil || d.Desired != "disabled" {
		t.Errorf("disable = %+v, %v", d, err)
	}
	e.waitState(t, "tool-1", "stopped")
	if d, err := e.c.AgentAction(ctx, "tool-1", apiclient.ActionEnable); err != nil || d.Desired != "enabled" {
		t.Errorf("enable = %+v, %v", d, err)
	}
	e.waitState(t, "tool-1", "running")
	if _, err := e.c.AgentAction(ctx, "tool-1", apiclient.ActionRestart); err != nil {
		t.Errorf("restart = %v", err)
	}
	if err := e.c.DeleteAgent(ctx, "tool-1", true); err != nil {
		t.Fatalf("DeleteAgent = %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, err := e.c.Agent(ctx, "tool-1"); statusOf(err) != http.StatusNotFound; _, err = e.c.Agent(ctx, "tool-1") {
		if time.Now().After(deadline) {
			t.Fatalf("agent still there after delete: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []string{rootActor + " agents.deploy tool-1", rootActor + " agents.task.run tool-1", rootActor + " agents.patch tool-1", rootActor + " agents.disable tool-1",
		rootActor + " agents.enable tool-1", rootActor + " agents.restart tool-1", rootActor + " agents.delete tool-1"}
	got := strings.Join(auditActions(t, e.st), "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("audit log lacks %q:\n%s", w, got)
		}
	}
}

// post is a raw POST request with a JSON body.
func post(path, body string) string {
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
}

func TestAgentRefusals(t *testing.T) {
	ctx := context.Background()
	e := newAgentsEnv(t)
	var ae *apiclient.Error
	var inv *apiclient.InvalidError
	if _, err := e.c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "nope"}); statusOf(err) != 404 {
		t.Errorf("unknown entry = %v, want 404", err)
	}
	if _, err := e.c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "idea"}); !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, "no image") {
		t.Errorf("entry without an image = %v, want 409 naming it", err)
	}
	if _, err := e.c.DeployAgent(ctx, apitype.AgentDeploy{}); !errors.As(err, &inv) || inv.Problems[0].Path != "entry" {
		t.Errorf("no entry = %v, want 400 naming entry", err)
	}
	_, err := e.c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "tool", Config: map[string]any{"mode": "warp"}})
	if !errors.As(err, &inv) || inv.Err.Status != 400 || len(inv.Problems) == 0 || !strings.HasPrefix(inv.Problems[0].Path, "spec.config") && !strings.HasPrefix(inv.Problems[0].Path, "config") {
		t.Errorf("bad config = %v %+v, want 400 with the field", err, inv)
	}
	e.deploy(t, "tool")
	if _, err := e.c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "tool", Secrets: map[string]any{"api_key": "x"}}); statusOf(err) != 409 {
		t.Errorf("second deploy of one id = %v, want 409", err)
	}
	for _, tt := range []struct{ req, want string }{
		{post("/api/v1/agents", "{"), "request body"},
		{post("/api/v1/agents", `{"entry":"t","evil":true}`), `unknown field \"evil\"`},
		{post("/api/v1/agents", `{"entry":"tool"}{"entry":"x"}`), "more than one JSON value"},
		{post("/api/v1/agents", ``), "request body: empty"},
		{"GET /api/v1/agents/tool/logs?tail=0 HTTP/1.1\r\nHost: x\r\n\r\n", "tail: must be between"},
		{"GET /api/v1/agents/tool/logs?follow=maybe HTTP/1.1\r\nHost: x\r\n\r\n", "follow"},
		{"DELETE /api/v1/agents/tool?purge=yes HTTP/1.1\r\nHost: x\r\n\r\n", "purge"},
		{post("/api/v1/agents/tool/tasks?wait=1y", "{}"), "wait"},
		{post("/api/v1/agents/tool/tasks", `{"timeout":"-1s"}`), "timeout"},
		{"GET /api/v1/events?types=gossip HTTP/1.1\r\nHost: x\r\n\r\n", "gossip"},
	} {
		if code, body := raw(t, e.sock, tt.req); code != 400 || !strings.Contains(body, tt.want) {
			t.Errorf("%q = %d %s, want 400 with %q", tt.req, code, body, tt.want)
		}
	}
	if _, err := e.c.Agent(ctx, "ghost"); statusOf(err) != 404 {
		t.Errorf("unknown agent = %v, want 404", err)
	}
	if _, err := e.c.Task(ctx, "t-0"); statusOf(err) != 404 {
		t.Errorf("unknown task = %v, want 404", err)
	}
	// containerd down: a change that needs it is refused as unavailable.
	e.rt.SetUnavailable(true)
	if _, err := e.c.DeployAgent(ctx, apitype.AgentDeploy{Entry: "tool", ID: "tool-2", Secrets: map[string]any{"api_key": "x"}}); statusOf(err) != 503 {
		t.Errorf("deploy with containerd down = %v, want 503", err)
	}
}

func TestCatalogRoutes(t *testing.T) {
	ctx := context.Background()
	e := newAgentsEnv(t)
	list, err := e.c.Catalog(ctx)
	if err != nil || len(list.Entries) != 2 || list.Entries[0].ID != "idea" || list.Entries[0].Deployable ||
		list.Entries[0].NotDeployable != "not deployable: no image" || !list.Entries[1].Deployable || list.Entries[1].Origin != "shipped" {
		t.Fatalf("Catalog = %+v, %v", list, err)
	}
	doc := strings.Replace(toolEntry, "id: tool, name: Tool", "id: tool-b, name: Tool B", 1) +
		"  config: {mode: fast, api_key: " + testSecret + "}\n"
	imp, err := e.c.ImportCatalog(ctx, apitype.CatalogImport{Name: "tool-b.yaml", Document: doc})
	if err != nil || len(imp.Entries) != 1 || imp.Entries[0].ID != "tool-b" || imp.Entries[0].ImportedBy != rootActor {
		t.Fatalf("ImportCatalog = %+v, %v", imp, err)
	}
	v, err := e.c.CatalogEntry(ctx, "tool-b")
	if err != nil || v.Origin != "imported" || strings.Contains(string(v.Manifest), testSecret) || !strings.Contains(string(v.Manifest), `"api_key":"(secret)"`) {
		t.Fatalf("CatalogEntry = %+v %s, %v; want the secret redacted", v, v.Manifest, err)
	}
	if _, err := e.c.ImportCatalog(ctx, apitype.CatalogImport{Name: "again.yaml", Document: doc}); statusOf(err) != 409 {
		t.Errorf("duplicate import = %v, want 409", err)
	}
	if _, err := e.c.ImportCatalog(ctx, apitype.CatalogImport{Name: "again.yaml", Document: doc, Replace: true}); err != nil {
		t.Errorf("import with replace = %v", err)
	}
	var inv *apiclient.InvalidError
	bad := strings.Replace(toolEntry, "id: tool,", "id: Bad_Id,", 1)
	if _, err := e.c.ImportCatalog(ctx, apitype.CatalogImport{Name: "bad.yaml", Document: bad}); !errors.As(err, &inv) || inv.Problems[0].Path != "metadata.id" {
		t.Errorf("bad import = %v, want 400 naming metadata.id", err)
	}
	// An agents.yaml with the recipe it names sent along.
	up := "agents:\n  - id: up\n    name: Up\n    recipe: recipes/up.yaml\n"
	recipe := "kind: AgentRecipe\nversion: v1\nagent:\n  id: up\n  name: Up\n  tools: [x]\n"
	imp, err = e.c.ImportCatalog(ctx, apitype.CatalogImport{Name: "agents.yaml", Document: up, Files: map[string]string{"recipes/up.yaml": recipe}})
	if err != nil || len(imp.Entries) != 1 || len(imp.Entries[0].Notes) == 0 {
		t.Fatalf("agents.yaml import = %+v, %v", imp, err)
	}
	if _, err := e.c.CatalogEntry(ctx, "ghost"); statusOf(err) != 404 {
		t.Errorf("unknown entry = %v, want 404", err)
	}
	got := strings.Join(auditActions(t, e.st), "\n")
	if strings.Count(got, rootActor+" catalog.import") != 3 {
		t.Errorf("audit log:\n%s\nwant 3 imports by uid:0", got)
	}
}

func TestImageRoutes(t *testing.T) {
	ctx := context.Background()
	e := newAgentsEnv(t)
	if l, err := e.c.Images(ctx); err != nil || len(l.Images) != 1 || l.Images[0].Name != testImage {
		t.Fatalf("Images = %+v, %v", l, err)
	}
	var ae *apiclient.Error
	for _, req := range []apitype.ImageImport{
		{Path: "relative.tar"}, {Path: "/tmp/../etc/shadow"}, {Path: "/x.tar", Digest: "sha256:short"},
	} {
		if _, err := e.c.ImportImage(ctx, req); !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("ImportImage(%+v) = %v, want 400", req, err)
		}
	}
	e.images.result = []runtime.Image{{Name: "omerta.test/web:1", Digest: testDigest}}
	out, err := e.c.ImportImage(ctx, apitype.ImageImport{Path: "/srv/web.oci.tar", Digest: testDigest})
	if err != nil || len(out.Images) != 1 || out.Images[0].Name != "omerta.test/web:1" {
		t.Fatalf("ImportImage = %+v, %v", out, err)
	}
	e.images.result, e.images.err = nil, fmt.Errorf("importing: %w: expected ..., the archive holds ...", runtime.ErrDigestMismatch)
	if _, err := e.c.ImportImage(ctx, apitype.ImageImport{Path: "/srv/evil.oci.tar", Digest: testDigest}); statusOf(err) != 400 {
		t.Errorf("digest mismatch = %v, want 400", err)
	}
	e.images.err = fmt.Errorf("connecting: %w", runtime.ErrUnavailable)
	if _, err := e.c.ImportImage(ctx, apitype.ImageImport{Path: "/srv/later.oci.tar"}); statusOf(err) != 503 {
		t.Errorf("containerd down = %v, want 503", err)
	}
	got := auditActions(t, e.st)
	want := []string{rootActor + " image.import /srv/web.oci.tar", rootActor + " image.import.refused /srv/evil.oci.tar"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("audit = %q, want %q", got, want)
	}
}

func TestMetricsRoute(t *testing.T) {
	e := newAgentsEnv(t)
	e.deploy(t, "tool")
	e.waitState(t, "tool", "running")
	deadline := time.Now().Add(10 * time.Second)
	for {
		text, err := e.c.Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(text, `omerta_agents{state="running"} 1`) && strings.Contains(text, "go_goroutines") &&
			strings.Contains(text, `omerta_agent_restarts_total{agent="tool"}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks the agents' series:\n%s", text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func taskCreate(input string) apitype.TaskCreate {
	return apitype.TaskCreate{Input: json.RawMessage(input)}
}

// rootActor is how the audit log names root on the socket: the caller, its
// role and where it came from.
const rootActor = "system:root (admin) from local:uid=0"
