package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/ctrtest"
	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/daemon"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/store"
)

const e2eEntry = `apiVersion: omertaos.dev/v1
kind: Agent
metadata: {id: echo, name: Echo agent}
spec:
  image: {ref: %s}
  command: ["/bin/sh", "-c", "echo agent-started; exec /bin/sleep 3600"]
  resources: {cpu: 250m, memory: 64Mi, pids: 32}
  restart: {policy: on-failure}
  isolation: container
  tasks: {command: ["/bin/cat"], timeout: 20s, maxOutput: 64Ki}
`

// TestDaemonRunsAgents is the end-to-end test of the agents domain: a real
// omertad (this binary) against a private containerd imports the bundled
// archive at start, then deploys its catalog entry, runs a task and reads
// the agent's log through the CLI, and /metrics shows the agent.
func TestDaemonRunsAgents(t *testing.T) {
	d := ctrtest.Start(t)
	ns := d.Namespace(t)
	arch := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/echo:1"})
	dir, err := os.MkdirTemp("", "omerta-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bundled, catDir := filepath.Join(dir, "bundled"), filepath.Join(dir, "catalog")
	os.Mkdir(bundled, 0o755)
	os.Mkdir(catDir, 0o755)
	data, err := os.ReadFile(arch.Path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bundled, "echo.oci.tar"), data, 0o644)
	index, _ := json.Marshal(map[string]bundledEntry{"echo": {Ref: arch.Name, Digest: arch.Manifest, Size: int64(len(data)), Archive: "echo.oci.tar"}})
	os.WriteFile(filepath.Join(bundled, "index.json"), index, 0o644)
	os.WriteFile(filepath.Join(catDir, "echo.yaml"), []byte(fmt.Sprintf(e2eEntry, arch.Name)), 0o644)
	sock := filepath.Join(dir, "omertad.sock")
	// omertad starts before containerd's socket is there: it comes up
	// later, as a link to the private daemon's.
	link := filepath.Join(dir, "containerd.sock")
	cfg := filepath.Join(dir, "omerta.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`daemon:
  socket: %s
  state_dir: %s
  shutdown_timeout: 10s
agents:
  containerd: %s
  namespace: %s
  catalog_dir: %s
  bundled_dir: %s
  log_dir: %s
  run_dir: %s
  runtime_root: %s
  telemetry_interval: 1s
`, sock, filepath.Join(dir, "state"), link, ns, catDir, bundled, filepath.Join(dir, "logs"), filepath.Join(dir, "run"), d.RuntimeRoot)), 0o644)

	cmd := omertaCmd("daemon", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("omertad:\n%s", stderr.String())
		}
	})
	waitHealthy(t, sock)
	e := &cliEnv{sock: sock}
	if _, _, err := e.run(t, "", "image", "list"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("image list before containerd: %v, want 503", err)
	}
	if err := os.Symlink(d.Address, link); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bundled image", func() bool {
		out, _, err := e.run(t, "", "image", "list")
		return err == nil && strings.Contains(out, arch.Name)
	})

	start := time.Now()
	e.ok(t, "agents", "deploy", "echo")
	e.waitRunning(t, "echo")
	t.Logf("deploy to running through the CLI: %v", time.Since(start))
	out, errs, err := e.run(t, "", "agents", "task", "echo", "--input", `{"hello":"world"}`, "--wait", "30s")
	if err != nil || out != "{\n  \"hello\": \"world\"\n}\n" {
		t.Fatalf("task = %q, %q, %v", out, errs, err)
	}
	eventually(t, "the agent's log", func() bool { return strings.Contains(e.ok(t, "agents", "logs", "echo"), "agent-started") })

	// containerd crashes and comes back: the agent kept running (its shim
	// outlives containerd) and omertad serves it again.
	d.Restart(t)
	eventually(t, "a task after containerd's restart", func() bool {
		out, _, err := e.run(t, "", "agents", "task", "echo", "--input", `{"again":true}`, "--wait", "20s")
		return err == nil && strings.Contains(out, `"again": true`)
	})
	var a apitype.Agent
	if err := json.Unmarshal([]byte(e.ok(t, "agents", "get", "echo", "--json")), &a); err != nil || a.Status.Restarts != 0 || a.Status.State != "running" {
		t.Errorf("after containerd's restart: %+v, %v; want the same container running", a.Status, err)
	}

	c := apiclient.New(sock, apiclient.WithTimeout(10*time.Second))
	defer c.Close()
	eventually(t, "the agent's metrics", func() bool {
		m, err := c.Metrics(context.Background())
		return err == nil && strings.Contains(m, `omerta_agent_memory_bytes{agent="echo"}`) && strings.Contains(m, "process_resident_memory_bytes")
	})
	e.ok(t, "agents", "delete", "echo", "--purge")
	eventually(t, "the agent's removal", func() bool {
		_, err := c.Agent(context.Background(), "echo")
		var ae *apiclient.Error
		return asAPIError(err, &ae) && ae.Status == 404
	})

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("omertad after SIGTERM: %v", err)
	}
	stopped = true
	st, err := store.Open(context.Background(), filepath.Join(dir, "state", "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, _ := st.AuditLog(context.Background(), 0, 1000)
	var acts []string
	for _, r := range recs {
		acts = append(acts, r.Actor+" "+r.Action)
	}
	got := strings.Join(acts, "\n")
	for _, want := range []string{"omertad image.import", "system:root (admin) from local:uid=0 agents.deploy", "system:root (admin) from local:uid=0 agents.task.run", "system:root (admin) from local:uid=0 agents.delete"} {
		if !strings.Contains(got, want) {
			t.Errorf("audit log lacks %q:\n%s", want, got)
		}
	}
}

// TestDaemonServesWithoutContainerd: omertad starts and serves while
// containerd is not there; agents answer unavailable, reads still work.
func TestDaemonServesWithoutContainerd(t *testing.T) {
	dir, err := os.MkdirTemp("", "omerta-noctr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	catDir := filepath.Join(dir, "catalog")
	os.Mkdir(catDir, 0o755)
	os.WriteFile(filepath.Join(catDir, "echo.yaml"), []byte(fmt.Sprintf(e2eEntry, "omerta.test/echo:1")), 0o644)
	sock := filepath.Join(dir, "omertad.sock")
	cfg := filepath.Join(dir, "omerta.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("daemon:\n  socket: %s\n  state_dir: %s\nagents:\n  containerd: %s\n  catalog_dir: %s\n  bundled_dir: %s\n  log_dir: %s\n  run_dir: %s\n",
		sock, filepath.Join(dir, "state"), filepath.Join(dir, "no-containerd.sock"), catDir, filepath.Join(dir, "none"),
		filepath.Join(dir, "logs"), filepath.Join(dir, "run"))), 0o644)
	cmd := omertaCmd("daemon", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	start0 := time.Now()
	waitHealthy(t, sock)
	t.Logf("healthy after %v", time.Since(start0))
	e := &cliEnv{sock: sock}
	if out := e.ok(t, "catalog", "list"); !strings.Contains(out, "echo") {
		t.Errorf("catalog list without containerd:\n%s", out)
	}
	if out := e.ok(t, "agents", "list"); !strings.HasPrefix(out, "ID") {
		t.Errorf("agents list without containerd:\n%s", out)
	}
	start := time.Now()
	_, _, err = e.run(t, "", "agents", "deploy", "echo")
	t.Logf("deploy refused after %v", time.Since(start))
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("deploy without containerd: %v, want 503\n%s", err, stderr.String())
	}
	if _, _, err := e.run(t, "", "image", "list"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("image list without containerd: %v, want 503", err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func asAPIError(err error, target **apiclient.Error) bool {
	ae, ok := err.(*apiclient.Error)
	if ok {
		*target = ae
	}
	return ok
}

// TestWireAgentsAdmitsThroughPolicy: the agents service wireAgents builds
// is admitted by its policy service, which sees the deployed agents: a
// tenant with room for one agent takes the first deploy and refuses the
// second, and the coverage counts the one deployed.
func TestWireAgentsAdmitsThroughPolicy(t *testing.T) {
	d := ctrtest.Start(t)
	dir := t.TempDir()
	ns := d.Namespace(t)
	arch := ctrtest.BusyboxArchive(t, ctrtest.ImageOptions{Name: "omerta.test/echo:1"})
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"), store.WithSchemas(daemonSchemas...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := config.Default()
	cfg.Daemon.StateDir = filepath.Join(dir, "state")
	cfg.Agents.Containerd, cfg.Agents.Namespace, cfg.Agents.RuntimeRoot = d.Address, ns, d.RuntimeRoot
	cfg.Agents.CatalogDir, cfg.Agents.BundledDir = filepath.Join(dir, "catalog"), filepath.Join(dir, "bundled")
	cfg.Agents.LogDir, cfg.Agents.RunDir = filepath.Join(dir, "logs"), filepath.Join(dir, "run")
	ag, err := wireAgents(daemon.Deps{Store: st, Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ag.api.Images.ImportArchive(ctx, arch.Path); err != nil {
		t.Fatal(err)
	}
	tenant, err := policy.ParseTenant([]byte("apiVersion: omertaos.dev/v1\nkind: Tenant\nname: acme\nquotas: {agents: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ag.policy.PutTenant(ctx, "test", tenant); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(fmt.Appendf(nil, e2eEntry, arch.Name))
	if err != nil {
		t.Fatal(err)
	}
	svc := ag.api.Service
	if _, err := svc.Deploy(ctx, agents.DeployRequest{Manifest: m, Tenant: "acme", Actor: "test"}); err != nil {
		t.Fatalf("the first deploy: %v", err)
	}
	t.Cleanup(func() { svc.Delete(context.Background(), "echo", true, "test") })
	_, err = svc.Deploy(ctx, agents.DeployRequest{Manifest: m, ID: "echo2", Tenant: "acme", Actor: "test"})
	var de *policy.DeniedError
	if !errors.Is(err, agents.ErrDenied) || !errors.As(err, &de) || de.Decision.Rule != "quota:tenant/acme agents" {
		t.Fatalf("the second deploy: %v", err)
	}
	if _, err := svc.Get(ctx, "echo2"); !errors.Is(err, agents.ErrNotFound) {
		t.Errorf("the refused agent was recorded: %v", err)
	}
	cov, err := ag.policy.Coverage(ctx)
	if err != nil || cov.Deployed != 1 || cov.Agents[0].Agent != "echo" || cov.Agents[0].Tenant != "acme" {
		t.Errorf("coverage %+v %v", cov, err)
	}
}

// TestWireAgentsWithoutNVIDIA: on a machine without NVIDIA's driver (this
// one, the QEMU image, CI) omertad's agents domain wires and runs as
// before: the GPU service, listed before the agents service, records why
// and is ready at once, /metrics says there is no driver, the agents'
// reconciler runs, and a manifest asking for a GPU is refused with the
// reason while one without deploys as before.
func TestWireAgentsWithoutNVIDIA(t *testing.T) {
	if _, err := gpu.ReadInventory(nvml.New()); !errors.Is(err, gpu.ErrNoDriver) {
		t.Skipf("this machine has an NVIDIA driver (NVML: %v); the test is for one without", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(dir, "state.db"), store.WithSchemas(daemonSchemas...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := config.Default()
	cfg.Daemon.StateDir = filepath.Join(dir, "state")
	cfg.Agents.Containerd = filepath.Join(dir, "no-containerd.sock")
	cfg.Agents.CatalogDir, cfg.Agents.BundledDir = filepath.Join(dir, "catalog"), filepath.Join(dir, "bundled")
	cfg.Agents.LogDir, cfg.Agents.RunDir = filepath.Join(dir, "logs"), filepath.Join(dir, "run")
	ag, err := wireAgents(daemon.Deps{Store: st, Config: cfg, Logger: slog.New(slog.DiscardHandler), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range ag.services {
		names = append(names, s.Name())
	}
	if strings.Join(names, " ") != bundledServiceID+" gpu agents" {
		t.Fatalf("services %v; want the GPU service before the agents service", names)
	}
	done := make(chan error, len(ag.services))
	for _, s := range ag.services[1:] {
		go func() { done <- s.Run(ctx) }()
	}
	select {
	case <-ag.gpu.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the GPU service is not ready after 10 s")
	}
	if gs := ag.gpu.Status(); gs.Available || !strings.Contains(gs.Reason, "NVIDIA management library unavailable") {
		t.Errorf("GPU status %+v; want no driver, with the reason", gs)
	}
	rec := httptest.NewRecorder()
	ag.api.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, `omerta_gpu_driver_info{kernel_modules="",version=""} 0`) {
		t.Errorf("/metrics lacks the GPU driver gauge at 0:\n%s", body)
	}
	m, err := manifest.Parse(fmt.Appendf(nil, strings.Replace(e2eEntry, "pids: 32}", "pids: 32, gpus: 1}", 1), "omerta.test/echo:1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ag.api.Service.Deploy(ctx, agents.DeployRequest{Manifest: m, Actor: "test"})
	var ie *agents.InvalidError
	if !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Path != "spec.resources.gpus" ||
		!strings.Contains(ie.Problems[0].Reason, "no GPU can be given: NVIDIA management library unavailable") {
		t.Errorf("a GPU deploy without a driver: %v", err)
	}
	m.Spec.Resources.GPUs = 0
	if _, err := ag.api.Service.Deploy(ctx, agents.DeployRequest{Manifest: m, Actor: "test"}); !errors.Is(err, agents.ErrUnavailable) {
		t.Errorf("a deploy without GPUs nor containerd: %v; want ErrUnavailable, as before", err)
	}
	cancel()
	for range ag.services[1:] {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("a service returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a service did not stop in 20 s")
		}
	}
}
