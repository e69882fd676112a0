package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/store"
)

const (
	cliImage  = "omerta.test/tool:1"
	cliDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	cliSecret = "hunter2-but-longer-and-secret"
)

const cliToolEntry = `apiVersion: omertaos.dev/v1
kind: Agent
metadata: {id: tool, name: Tool, category: Tools}
spec:
  image: {ref: omerta.test/tool:1}
  command: ["/agent"]
  configSchema:
    type: object
    properties:
      mode: {type: string, enum: [fast, slow]}
      replicas: {type: integer}
      api_key: {type: string, format: secret}
  resources: {cpu: 500m, memory: 64Mi, pids: 64}
  restart: {policy: on-failure}
  isolation: container
  tasks: {command: ["/agent", "task"], timeout: 30s, maxOutput: 1Ki}
`

type importRecorder struct {
	*agents.FakeRuntime
	mu    sync.Mutex
	paths []string
}

func (r *importRecorder) ImportArchive(_ context.Context, path string, _ ...runtime.ImportOption) ([]runtime.Image, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paths = append(r.paths, path)
	return []runtime.Image{{Name: "omerta.test/web:1", Digest: cliDigest, Manifest: cliDigest}}, nil
}

type cliEnv struct {
	sock   string
	st     *store.Store
	rt     *agents.FakeRuntime
	images *importRecorder
}

// newCLIEnv serves the API, with the agents domain on a fake runtime, on
// a socket the commands reach with --socket.
func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "omerta-cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(agentSchemas...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := agents.NewFakeRuntime(filepath.Join(dir, "logs"), nil)
	rt.AddImage(runtime.Image{Name: cliImage, Digest: cliDigest, Manifest: cliDigest})
	svc, err := agents.New(st, rt, agents.WithStateDir(filepath.Join(dir, "agents")), agents.WithStopGrace(0),
		agents.WithInterval(20*time.Millisecond), agents.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	catDir := filepath.Join(dir, "catalog")
	os.Mkdir(catDir, 0o755)
	os.WriteFile(filepath.Join(catDir, "tool.yaml"), []byte(cliToolEntry), 0o644)
	images := &importRecorder{FakeRuntime: rt}
	sock := serveAPI(t, dir, api.Deps{Store: st, Agents: api.AgentsDeps{Catalog: catalog.NewService(st, catDir), Service: svc, Images: images,
		Events: svc.Bus(), Logs: svc}})
	return &cliEnv{sock: sock, st: st, rt: rt, images: images}
}

// run runs `omerta args... --socket SOCK` in process with stdin, and
// returns standard output and standard error apart.
func (e *cliEnv) run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errs bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errs)
	root.SetIn(strings.NewReader(stdin))
	if !slices.Contains(args, "--socket") {
		args = append(args, "--socket", e.sock)
	}
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errs.String(), err
}

func (e *cliEnv) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, err := e.run(t, "", args...)
	if err != nil {
		t.Fatalf("omerta %s: %v\n%s%s", strings.Join(args, " "), err, out, errs)
	}
	return out
}

func (e *cliEnv) waitRunning(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.ok(t, "agents", "get", id), "running") {
		if time.Now().After(deadline) {
			t.Fatalf("%s never ran", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentsCLI(t *testing.T) {
	e := newCLIEnv(t)
	secretFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(secretFile, []byte(cliSecret+"\n"), 0o600)
	out := e.ok(t, "agents", "deploy", "tool", "--id", "tool-1", "--config", "mode=fast", "--config", "replicas=2", "--secret", "api_key=@"+secretFile)
	if !strings.HasPrefix(out, "deployed tool-1 (generation 1)") {
		t.Errorf("deploy printed %q", out)
	}
	e.waitRunning(t, "tool-1")
	list := e.ok(t, "agents", "list")
	if !strings.Contains(list, "tool-1") || !strings.Contains(list, "running") || !strings.HasPrefix(list, "ID ") {
		t.Errorf("list:\n%s", list)
	}
	get := e.ok(t, "agents", "get", "tool-1")
	if strings.Contains(get, cliSecret) || !strings.Contains(get, `config.api_key`) || !strings.Contains(get, `"(secret)"`) ||
		!strings.Contains(get, "config.replicas  2") {
		t.Errorf("get shows a secret or misses a setting:\n%s", get)
	}
	var a apitype.Agent
	if err := json.Unmarshal([]byte(e.ok(t, "agents", "get", "tool-1", "--json")), &a); err != nil || a.ID != "tool-1" {
		t.Errorf("get --json = %+v, %v", a, err)
	}
	// A task from standard input, its JSON output indented.
	out, errs, err := e.run(t, `{"text": "hi"}`, "agents", "task", "tool-1", "--input", "-", "--wait", "10s")
	if err != nil || out != "{\n  \"text\": \"hi\"\n}\n" {
		t.Errorf("task = %q, %q, %v", out, errs, err)
	}
	if tasks := e.ok(t, "agents", "tasks", "tool-1"); !strings.Contains(tasks, "SUCCEEDED") {
		t.Errorf("tasks:\n%s", tasks)
	}
	// Logs are the agent's bytes: a terminal sequence in them is shown,
	// not obeyed.
	var st apitype.Agent
	json.Unmarshal([]byte(e.ok(t, "agents", "get", "tool-1", "--json")), &st)
	e.rt.AppendLog(st.Status.Container, "hello\n\x1b[2Jgone\n")
	if logs := e.ok(t, "agents", "logs", "tool-1", "--tail", "2"); logs != "hello\n\\x1b[2Jgone\n" {
		t.Errorf("logs = %q", logs)
	}
	if out := e.ok(t, "agents", "patch", "tool-1", "--config", "mode=slow", "--memory", "128Mi", "--unset", "replicas"); !strings.Contains(out, "generation 2") {
		t.Errorf("patch printed %q", out)
	}
	for _, verb := range []string{"disable", "enable", "restart"} {
		if out := e.ok(t, "agents", verb, "tool-1"); !strings.HasPrefix(out, "tool-1: desired ") {
			t.Errorf("%s printed %q", verb, out)
		}
	}
	if out := e.ok(t, "agents", "delete", "tool-1", "--purge"); !strings.Contains(out, "data and logs are removed") {
		t.Errorf("delete printed %q", out)
	}
}

func TestAgentsCLIErrors(t *testing.T) {
	e := newCLIEnv(t)
	if _, _, err := e.run(t, "", "agents", "deploy", "ghost"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown entry: %v", err)
	}
	_, _, err := e.run(t, "", "agents", "deploy", "tool", "--config", "mode=warp")
	if err == nil || !strings.Contains(err.Error(), "refused:\n  ") || !strings.Contains(err.Error(), "config") {
		t.Errorf("bad setting: %v, want the problems one per line", err)
	}
	if _, _, err := e.run(t, "", "agents", "deploy", "tool", "--secret", "api_key"); err == nil || strings.Contains(err.Error(), "api_key") {
		t.Errorf("--secret without a value: %v (must not echo it)", err)
	}
	if _, _, err := e.run(t, "", "agents", "task", "tool", "--input", "{not json"); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("bad input: %v", err)
	}
	if _, _, err := e.run(t, strings.Repeat(" ", maxTaskInput+1), "agents", "task", "tool", "--input", "-"); err == nil {
		t.Error("an input over the API's body limit was sent")
	}
	_, _, err = e.run(t, "", "agents", "list", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "is omertad running?") {
		t.Errorf("no daemon: %v", err)
	}
}

// TestAgentsTaskExit: a failed task exits 1 with its error, one still
// running when --wait runs out exits 2.
func TestAgentsTaskExit(t *testing.T) {
	e := newCLIEnv(t)
	e.ok(t, "agents", "deploy", "tool", "--secret", "api_key=x")
	e.waitRunning(t, "tool")
	release := make(chan struct{})
	e.rt.ExecHook = func(ctx context.Context, id string, es runtime.ExecSpec) (runtime.ExecResult, error) {
		if strings.Contains(string(mustRead(es.Stdin)), "slow") {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return runtime.ExecResult{ExitCode: 0, Stdout: []byte("{}")}, nil
		}
		return runtime.ExecResult{ExitCode: 3, Stderr: []byte("boom")}, nil
	}
	defer close(release)
	_, errs, err := e.run(t, "", "agents", "task", "tool", "--input", `{"x":1}`, "--wait", "10s")
	if ec, ok := err.(exitCode); !ok || ec != exitTaskFailed || !strings.Contains(errs, "ended FAILED") {
		t.Errorf("failed task: %v, %q", err, errs)
	}
	_, errs, err = e.run(t, "", "agents", "task", "tool", "--input", `{"slow":1}`, "--wait", "200ms")
	if ec, ok := err.(exitCode); !ok || ec != exitTaskRunning || !strings.Contains(errs, "still") {
		t.Errorf("running task: %v, %q", err, errs)
	}
}

func mustRead(r io.Reader) []byte {
	if r == nil {
		return nil
	}
	b, _ := io.ReadAll(r)
	return b
}

func TestImageAndCatalogCLI(t *testing.T) {
	e := newCLIEnv(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "web.oci.tar")
	os.WriteFile(archive, []byte("x"), 0o644)
	// A relative path reaches omertad as the absolute path of the same file.
	wd, _ := os.Getwd()
	os.Chdir(dir)
	out, _, err := e.run(t, "", "image", "import", "web.oci.tar", "--digest", cliDigest)
	os.Chdir(wd)
	if err != nil || !strings.Contains(out, "omerta.test/web:1") || len(e.images.paths) != 1 || e.images.paths[0] != archive {
		t.Errorf("image import: %q, %v, paths %q", out, err, e.images.paths)
	}
	if out := e.ok(t, "image", "list"); !strings.Contains(out, cliImage) {
		t.Errorf("image list:\n%s", out)
	}
	// An agents.yaml imports with the recipe beside it.
	os.MkdirAll(filepath.Join(dir, "recipes"), 0o755)
	os.WriteFile(filepath.Join(dir, "agents.yaml"), []byte("agents:\n  - id: up\n    name: Up\n    recipe: recipes/up.yaml\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "recipes", "up.yaml"), []byte("kind: AgentRecipe\nversion: v1\nagent:\n  id: up\n  name: Up\n  tools: [x]\n"), 0o644)
	out = e.ok(t, "catalog", "import", filepath.Join(dir, "agents.yaml"))
	if !strings.Contains(out, "imported up from") || !strings.Contains(out, "not deployable: no image") {
		t.Errorf("catalog import printed %q", out)
	}
	if _, _, err := e.run(t, "", "catalog", "import", filepath.Join(dir, "agents.yaml")); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("second import: %v, want 409", err)
	}
	e.ok(t, "catalog", "import", "--replace", filepath.Join(dir, "agents.yaml"))
	list := e.ok(t, "catalog", "list")
	if !strings.Contains(list, "tool") || !strings.Contains(list, "up") || !strings.Contains(list, "no: no image") {
		t.Errorf("catalog list:\n%s", list)
	}
	show := e.ok(t, "catalog", "show", "up")
	if !strings.Contains(show, "note") || !strings.Contains(show, "recipe") || !strings.Contains(show, `"apiVersion": "omertaos.dev/v1"`) {
		t.Errorf("catalog show:\n%s", show)
	}
	recs, _ := e.st.AuditLog(context.Background(), 0, 100)
	var acts []string
	for _, r := range recs {
		acts = append(acts, r.Action)
	}
	if got := strings.Join(acts, ","); got != "image.import,catalog.import,catalog.import" {
		t.Errorf("audit = %s", got)
	}
}

func TestJSONSafe(t *testing.T) {
	v := map[string]string{"a": "x\u202ey", "b": "del\x7f", "c": "c1\u0085", "d": "tag\U000e0041", "e": "ok é\n"}
	var buf bytes.Buffer
	if err := printJSON(&buf, v); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	for _, want := range []string{`x\u202ey`, `del\u007f`, `c1\u0085`, `tag\udb40\udc41`, `ok é\n`} {
		if !strings.Contains(s, want) {
			t.Errorf("output %s lacks %s", s, want)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back["d"] != v["d"] || back["a"] != v["a"] {
		t.Errorf("output does not read back as the input: %v %q", err, back)
	}
}
