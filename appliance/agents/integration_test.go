package agents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/store"
)

// The tests in this file run the Service against a private containerd
// (ctrtest), the real runtime, runc and runsc. Without root or containerd
// they skip; under CI=true they fail instead.

// realEnv is a Service on the real runtime in a namespace of its own.
type realEnv struct {
	d     *ctrtest.Daemon
	ns    string
	dir   string
	rt    *runtime.Runtime
	st    *store.Store
	s     *Service
	image string
}

// realSuite is the private containerd and the busybox archive the
// subtests of one test share.
type realSuite struct {
	d       *ctrtest.Daemon
	archive ctrtest.Archive
}

func newRealSuite(t testing.TB) *realSuite {
	t.Helper()
	d := ctrtest.Start(t)
	return &realSuite{d: d, archive: ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{})}
}

// newRuntime is a Runtime on the suite's daemon for namespace ns, its
// directories under dir.
func (s *realSuite) newRuntime(t testing.TB, ns, dir string) *runtime.Runtime {
	t.Helper()
	rt, err := runtime.New(s.d.Client(t), runtime.WithNamespace(ns), runtime.WithLogDir(filepath.Join(dir, "logs")),
		runtime.WithRunDir(filepath.Join(dir, "run")), runtime.WithRuntimeRoot(s.d.RuntimeRoot))
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func (s *realSuite) newEnv(t testing.TB) *realEnv {
	t.Helper()
	return s.newEnvWith(t, nil, nil)
}

// newEnvWith is newEnv on a store with more schemas, and with options
// built from the store (wire: the policy service needs it).
func (s *realSuite) newEnvWith(t testing.TB, schemas []store.Schema, wire func(*store.Store) []Option) *realEnv {
	t.Helper()
	// The directory before the namespace: cleanups run last-in first-out,
	// and the namespace's purge may need the gVisor wrapper in it.
	dir := t.TempDir()
	ns := s.d.Namespace(t)
	rt := s.newRuntime(t, ns, dir)
	imgs, err := rt.ImportArchive(context.Background(), s.archive.Path)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("importing busybox: %v %v", imgs, err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(append([]store.Schema{Schema}, schemas...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts := []Option{WithStateDir(filepath.Join(dir, "agents")), WithStopGrace(time.Second),
		WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil)))}
	if wire != nil {
		opts = append(opts, wire(st)...)
	}
	svc, err := New(st, rt, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return &realEnv{d: s.d, ns: ns, dir: dir, rt: rt, st: st, s: svc, image: imgs[0].Name}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// busyboxManifest is an agent that sleeps, with a secret, a volume and a
// task that echoes its input.
func busyboxManifest(t testing.TB, image string, iso runtime.Isolation, command string) *manifest.Manifest {
	t.Helper()
	return parseManifest(t, fmt.Sprintf(`apiVersion: omertaos.dev/v1
kind: Agent
metadata: {id: bb, name: Busybox}
spec:
  image: {ref: %q}
  command: ["/bin/sh", "-c", %q]
  configSchema:
    type: object
    properties:
      greeting: {type: string}
      token: {type: string, format: secret}
  resources: {cpu: 500m, memory: 64Mi, pids: 64}
  volumes: [{name: data, mountPath: /data}]
  restart:
    policy: on-failure
    backoff: {initial: 200ms, max: 1s}
  isolation: %s
  tasks: {command: ["/bin/cat"], timeout: 20s, maxOutput: 64Ki}
`, image, command, iso))
}

func (e *realEnv) sh(t testing.TB, id, script string) string {
	t.Helper()
	a, err := e.s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.rt.Exec(context.Background(), a.Status.Container, runtime.ExecSpec{Args: []string{"/bin/sh", "-c", script}, Timeout: 20 * time.Second})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec %q in %s: %v, exit %d, stderr %q", script, id, err, res.ExitCode, res.Stderr)
	}
	return strings.TrimSpace(string(res.Stdout))
}

func (e *realEnv) ctrState(t testing.TB, cid string) runtime.State {
	t.Helper()
	st, err := e.rt.Status(context.Background(), cid)
	if errors.Is(err, runtime.ErrNotFound) {
		return "absent"
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.State
}

func (e *realEnv) requireNoOrphans(t testing.TB) {
	t.Helper()
	known, err := e.s.knownContainers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.rt.Orphans(context.Background(), func(id string) bool { return known[id] })
	if err != nil {
		t.Fatal(err)
	}
	if !o.Empty() {
		t.Errorf("orphans: %+v", o)
	}
}

func realIsolations(t testing.TB) []runtime.Isolation {
	if _, err := os.Stat(runtime.DefaultRunsc); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s is missing: the sandbox tests must run", runtime.DefaultRunsc)
		}
		t.Logf("%s is missing: sandbox isolation not tested", runtime.DefaultRunsc)
		return []runtime.Isolation{runtime.Container}
	}
	return []runtime.Isolation{runtime.Container, runtime.Sandbox}
}

// TestRealLifecycle runs every verb against containerd in both isolation
// levels: deploy, a task, patch (data kept across the recreation), disable,
// enable, restart, delete.
func TestRealLifecycle(t *testing.T) {
	suite := newRealSuite(t)
	for _, iso := range realIsolations(t) {
		t.Run(string(iso), func(t *testing.T) {
			e := suite.newEnv(t)
			realLifecycle(t, e, iso)
		})
	}
}

func realLifecycle(t *testing.T, e *realEnv, iso runtime.Isolation) {
	ctx := context.Background()
	a, err := e.s.Deploy(ctx, DeployRequest{Manifest: busyboxManifest(t, e.image, iso, "echo hello from the agent; exec sleep 3600"), Actor: testActor,
		Config: map[string]any{"greeting": "hi"}, Secrets: map[string]any{"token": testSecret}})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if a.Status.State != StateRunning || e.ctrState(t, "bb-g1") != runtime.Running {
		t.Fatalf("after deploy %+v", a.Status)
	}
	if got := e.sh(t, "bb", "cat "+ConfigMountPath+"/"+ConfigFile); !strings.Contains(got, testSecret) || !strings.Contains(got, `"greeting":"hi"`) {
		t.Errorf("the agent's configuration file: %s", got)
	}
	if env := e.sh(t, "bb", "env"); strings.Contains(env, testSecret) {
		t.Error("the secret is in the agent's environment")
	}
	e.sh(t, "bb", "echo kept > /data/file")
	waitFor(t, "the agent's output in its log", func() bool {
		out, err := e.s.Logs(ctx, "bb", 10)
		return err == nil && strings.Contains(string(out), "hello from the agent")
	})
	tk, err := e.s.RunTask(ctx, TaskRequest{Agent: "bb", Actor: testActor, Input: json.RawMessage(`{"q": "ping"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if tk, err = e.s.WaitTask(ctx, tk.ID); err != nil || tk.State != TaskSucceeded || string(tk.Output) != `{"q": "ping"}` {
		t.Fatalf("task %+v %v", tk, err)
	}
	if a, err = e.s.Patch(ctx, "bb", PatchRequest{Config: map[string]any{"greeting": "hello"}, Actor: testActor}); err != nil {
		t.Fatalf("patch: %v", err)
	}
	if a.Generation != 2 || e.ctrState(t, "bb-g2") != runtime.Running || e.ctrState(t, "bb-g1") != "absent" {
		t.Fatalf("after patch: %+v", a)
	}
	if got := e.sh(t, "bb", "cat /data/file"); got != "kept" {
		t.Errorf("the volume across the patch holds %q", got)
	}
	if a, err = e.s.Disable(ctx, "bb", testActor); err != nil || e.ctrState(t, "bb-g2") != runtime.Stopped {
		t.Fatalf("disable: %v, %s", err, e.ctrState(t, "bb-g2"))
	}
	if err := e.s.Reconcile(ctx); err != nil || e.ctrState(t, "bb-g2") != runtime.Stopped {
		t.Fatalf("reconcile of a disabled agent: %v", err)
	}
	if a, err = e.s.Enable(ctx, "bb", testActor); err != nil || a.Status.State != StateRunning {
		t.Fatalf("enable: %+v %v", a.Status, err)
	}
	pid1, _ := e.rt.Status(ctx, "bb-g2")
	if a, err = e.s.Restart(ctx, "bb", testActor); err != nil || a.Status.State != StateRunning {
		t.Fatalf("restart: %+v %v", a.Status, err)
	}
	if pid2, _ := e.rt.Status(ctx, "bb-g2"); pid2.Pid == pid1.Pid || pid2.State != runtime.Running {
		t.Errorf("restart kept pid %d (%s)", pid1.Pid, pid2.State)
	}
	e.requireNoOrphans(t)
	if err := e.s.Delete(ctx, "bb", false, testActor); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if e.ctrState(t, "bb-g2") != "absent" {
		t.Error("the container outlived its agent")
	}
	if b, err := os.ReadFile(filepath.Join(e.dir, "agents", "bb", "data", "file")); err != nil || string(b) != "kept\n" {
		t.Errorf("delete without purge lost the data: %q %v", b, err)
	}
	e.requireNoOrphans(t)
}

// TestRealCrashIsRestarted: an agent whose process exits with an error is
// restarted by the policy, its restarts counted.
func TestRealCrashIsRestarted(t *testing.T) {
	e := newRealSuite(t).newEnv(t)
	ctx := context.Background()
	m := busyboxManifest(t, e.image, runtime.Container, "sleep 0.3; exit 3")
	if _, err := e.s.Deploy(ctx, DeployRequest{Manifest: m, Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := e.s.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		a, _ := e.s.Get(ctx, "bb")
		if a.Status.Restarts >= 2 {
			if a.Status.LastExitCode == nil || *a.Status.LastExitCode != 3 {
				t.Errorf("last exit %v", a.Status.LastExitCode)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted twice within 20s: %+v", a.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.s.Delete(ctx, "bb", true, testActor); err != nil {
		t.Fatal(err)
	}
	e.requireNoOrphans(t)
}

// TestRealOrphansAreRemoved: a container no agent owns goes at the next
// pass; the agents' stay.
func TestRealOrphansAreRemoved(t *testing.T) {
	e := newRealSuite(t).newEnv(t)
	ctx := context.Background()
	if _, err := e.s.Deploy(ctx, DeployRequest{Manifest: busyboxManifest(t, e.image, runtime.Container, "exec sleep 3600"), Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	stray := runtime.Spec{ID: "stray", Image: e.image, Args: []string{"/bin/sleep", "3600"}}
	if err := e.rt.Create(ctx, stray); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Start(ctx, "stray"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if e.ctrState(t, "stray") != "absent" || e.ctrState(t, "bb-g1") != runtime.Running {
		t.Errorf("stray %s, agent %s", e.ctrState(t, "stray"), e.ctrState(t, "bb-g1"))
	}
	e.requireNoOrphans(t)
	if err := e.s.Delete(ctx, "bb", true, testActor); err != nil {
		t.Fatal(err)
	}
}

// TestRealContainerdRestart: containerd killed while an agent runs; the
// agent's process lives on (its shim outlives containerd), the reconciler
// marks it unknown, then adopts it again without restarting it.
func TestRealContainerdRestart(t *testing.T) {
	suite := newRealSuite(t)
	e := suite.newEnv(t)
	ctx := context.Background()
	if _, err := e.s.Deploy(ctx, DeployRequest{Manifest: busyboxManifest(t, e.image, runtime.Container, "exec sleep 3600"), Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	before, _ := e.rt.Status(ctx, "bb-g1")
	suite.d.Restart(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := e.s.Reconcile(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("reconcile after containerd's restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after, err := e.rt.Status(ctx, "bb-g1")
	if err != nil || after.State != runtime.Running || after.Pid != before.Pid {
		t.Fatalf("after containerd's restart: %+v (before pid %d) %v", after, before.Pid, err)
	}
	if a, _ := e.s.Get(ctx, "bb"); a.Status.State != StateRunning || a.Status.Restarts != 0 {
		t.Errorf("status %+v", a.Status)
	}
	if err := e.s.Delete(ctx, "bb", true, testActor); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
