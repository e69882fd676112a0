package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/api"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/store"
)

const cliPolicy = `apiVersion: omertaos.dev/v1
kind: Policy
subject: {kind: category, name: Tools}
description: "tools stay small"
spec:
  max: {memory: 128Mi}
`

const cliTenant = `apiVersion: omertaos.dev/v1
kind: Tenant
name: acme
description: ACME corp
quotas: {agents: 3, memory: 4Gi}
`

// newPolicyCLIEnv serves the API's policy routes on a socket.
func newPolicyCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "omerta-policy-cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(append(agentSchemas, policy.Schema)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.New(t.Context(), policy.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	sock := serveAPI(t, dir, api.Deps{Store: st, Policy: pol})
	return &cliEnv{sock: sock, st: st}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicySetGetHistoryRollback(t *testing.T) {
	e := newPolicyCLIEnv(t)
	file := writeFile(t, "tools.yaml", cliPolicy)
	if out := e.ok(t, "policy", "set", file); !strings.Contains(out, "policy category/tools: create, now version 1") {
		t.Errorf("set = %q", out)
	}
	second := writeFile(t, "tools2.yaml", strings.Replace(cliPolicy, "128Mi", "256Mi", 1))
	e.ok(t, "policy", "set", second, "--if-version", "1")
	// A stale --if-version is refused, saying so.
	if _, _, err := e.run(t, "", "policy", "set", file, "--if-version", "1"); err == nil || !strings.Contains(err.Error(), "version 2, not 1") {
		t.Errorf("stale set = %v", err)
	}
	out := e.ok(t, "policy", "get", "category", "tools")
	if !strings.Contains(out, "# version 2") || !strings.Contains(out, `"256Mi"`) {
		t.Errorf("get = %q", out)
	}
	// What get prints, set takes back: unchanged.
	doc := strings.SplitN(out, "\n", 2)[1]
	if out := e.ok(t, "policy", "set", writeFile(t, "back.json", doc)); !strings.Contains(out, "unchanged at version 2") {
		t.Errorf("set of get's output = %q", out)
	}
	if out := e.ok(t, "policy", "rollback", "category", "tools", "1"); !strings.Contains(out, "rollback, now version 3") {
		t.Errorf("rollback = %q", out)
	}
	out = e.ok(t, "policy", "history", "category", "tools")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[1], "3 ") || !strings.Contains(lines[1], "rollback") {
		t.Errorf("history = %q", out)
	}
	var l apitype.PolicyList
	if err := json.Unmarshal([]byte(e.ok(t, "policy", "list", "--json")), &l); err != nil || len(l.Policies) != 1 || l.Policies[0].Version != 3 {
		t.Errorf("list --json = %+v, %v", l, err)
	}
	if out := e.ok(t, "policy", "list"); !strings.Contains(out, "tools stay small") || !strings.Contains(out, "profile user") {
		t.Errorf("list = %q", out)
	}
}

// TestPolicySetRefusesOffline: a bad document is refused before anything
// is sent, each problem naming its field.
func TestPolicySetRefusesOffline(t *testing.T) {
	e := newPolicyCLIEnv(t)
	bad := writeFile(t, "bad.yaml", strings.Replace(cliPolicy, "memory: 128Mi", "memory: lots, disks: 3", 1))
	_, _, err := e.run(t, "", "policy", "set", bad, "--socket", "/nonexistent/omertad.sock")
	if err == nil || !strings.Contains(err.Error(), "spec.max.memory") || !strings.Contains(err.Error(), "spec.max.disks") {
		t.Fatalf("set of a bad document = %v", err)
	}
	if _, _, err := e.run(t, "", "policy", "set", t.TempDir()); err == nil {
		t.Error("a directory was read as a document")
	}
	if _, _, err := e.run(t, "", "policy", "rollback", "category", "tools", "zero"); err == nil || !strings.Contains(err.Error(), "VERSION") {
		t.Errorf("rollback to zero = %v", err)
	}
}

func TestTenantSetListDecisionsCoverage(t *testing.T) {
	e := newPolicyCLIEnv(t)
	if out, _, err := e.run(t, cliTenant, "tenant", "set", "-"); err != nil || !strings.Contains(out, "tenant acme created") {
		t.Fatalf("tenant set - = %q, %v", out, err)
	}
	out := e.ok(t, "tenant", "list")
	if !strings.Contains(out, "acme") || !strings.Contains(out, "0/3") || !strings.Contains(out, "0/4Gi") || !strings.Contains(out, "ACME corp") {
		t.Errorf("tenant list = %q", out)
	}
	if out := e.ok(t, "policy", "decisions", "--denied"); strings.Count(out, "\n") != 1 {
		t.Errorf("decisions with none = %q", out)
	}
	if out := e.ok(t, "policy", "coverage"); !strings.Contains(out, "policy coverage: no agents deployed") || !strings.Contains(out, "target >= 90 %") {
		t.Errorf("coverage = %q", out)
	}
	var cov apitype.CoverageView
	if err := json.Unmarshal([]byte(e.ok(t, "policy", "coverage", "--json")), &cov); err != nil || cov.Target != 0.9 {
		t.Errorf("coverage --json = %+v, %v", cov, err)
	}
	if _, _, err := e.run(t, "", "policy", "decisions", "--limit", "1000"); err == nil {
		t.Error("decisions --limit 1000 was not refused")
	}
}

// TestDaemonServesPolicyRoutes: omertad wires its policy service into the
// API (Deps.Policy): the policy commands work against the real daemon,
// without containerd.
func TestDaemonServesPolicyRoutes(t *testing.T) {
	dir, err := os.MkdirTemp("", "omerta-policyd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "omertad.sock")
	cfg := filepath.Join(dir, "omerta.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("daemon:\n  socket: %s\n  state_dir: %s\nagents:\n  containerd: %s\n  catalog_dir: %s\n  bundled_dir: %s\n  log_dir: %s\n  run_dir: %s\n",
		sock, filepath.Join(dir, "state"), filepath.Join(dir, "no-containerd.sock"), filepath.Join(dir, "none"), filepath.Join(dir, "none"),
		filepath.Join(dir, "logs"), filepath.Join(dir, "run"))), 0o644)
	cmd := omertaCmd("daemon", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitHealthy(t, sock)
	e := &cliEnv{sock: sock}
	if out, errs, err := e.run(t, "", "policy", "set", writeFile(t, "tools.yaml", cliPolicy)); err != nil || !strings.Contains(out, "now version 1") {
		t.Fatalf("policy set on omertad = %q, %v\n%s%s", out, err, errs, stderr.String())
	}
	if out := e.ok(t, "policy", "list"); !strings.Contains(out, "tools stay small") {
		t.Errorf("policy list on omertad = %q", out)
	}
	if out := e.ok(t, "tenant", "list"); !strings.Contains(out, "default") {
		t.Errorf("tenant list on omertad = %q", out)
	}
	if out := e.ok(t, "policy", "coverage"); !strings.Contains(out, "policy coverage: no agents deployed") || !strings.Contains(out, "manifests validated") {
		t.Errorf("policy coverage on omertad = %q", out)
	}
}
