package agents

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/config"
)

func TestDeployRunsTheAgent(t *testing.T) {
	e := newEnv(t)
	a := e.deploy(t, "")
	if a.ID != "tool" || a.Status.State != StateRunning || a.Generation != 1 || a.Desired != DesiredEnabled {
		t.Fatalf("deployed %+v", a)
	}
	if a.Manifest.Spec.Image.Digest != testDigest {
		t.Errorf("digest %q: the tag was not pinned at deploy", a.Manifest.Spec.Image.Digest)
	}
	if got := e.rt.Calls(); !slices.Equal(got, []string{"create tool-g1", "start tool-g1"}) {
		t.Errorf("calls %v", got)
	}
	sp, _ := e.rt.Spec("tool-g1")
	if !slices.Equal(sp.Command, []string{"/agent"}) || !slices.Equal(sp.Args, []string{"--serve"}) || sp.CPUMillis != 500 || sp.MemoryBytes != 64<<20 || sp.Pids != 64 {
		t.Errorf("runtime spec %+v", sp)
	}
	if sp.StateDir != filepath.Join(e.dir, "agents", "tool") || len(sp.Volumes) != 2 || sp.Volumes[1].Path != ConfigMountPath || !sp.Volumes[1].ReadOnly {
		t.Errorf("volumes %+v in %s", sp.Volumes, sp.StateDir)
	}
	cfg, err := os.ReadFile(filepath.Join(sp.StateDir, "_config-g1", ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(cfg, &got); err != nil || got["api_key"] != testSecret || got["mode"] != "fast" {
		t.Errorf("the agent's configuration file holds %s (%v)", cfg, err)
	}
	st, err := e.s.DeployStats(context.Background(), e.clock.Now().AddDate(0, 0, -7))
	if err != nil || st.Total != 1 || st.Succeeded != 1 {
		t.Errorf("deploy stats %+v, %v", st, err)
	}
}

func TestDeployRefusals(t *testing.T) {
	good := func() DeployRequest {
		return DeployRequest{Manifest: parseManifestT(toolYAML), Actor: testActor, Secrets: map[string]any{"api_key": "k"}}
	}
	for _, c := range []struct {
		name   string
		change func(*DeployRequest)
		is     error
		path   string
	}{
		{"no actor", func(r *DeployRequest) { r.Actor = "" }, ErrInvalid, "actor"},
		{"no manifest", func(r *DeployRequest) { r.Manifest = nil }, ErrInvalid, "manifest"},
		{"bad id", func(r *DeployRequest) { r.ID = "Bad_ID" }, ErrInvalid, "id"},
		{"no image", func(r *DeployRequest) { r.Manifest.Spec.Image = nil }, ErrInvalid, "spec.image"},
		{"image not imported", func(r *DeployRequest) { r.Manifest.Spec.Image.Ref = "omerta.test/other:1" }, ErrInvalid, "spec.image.ref"},
		{"digest mismatch", func(r *DeployRequest) {
			r.Manifest.Spec.Image.Digest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
		}, ErrInvalid, "spec.image.digest"},
		{"gpus", func(r *DeployRequest) { r.Manifest.Spec.Resources.GPUs = 1 }, ErrInvalid, "spec.resources.gpus"},
		{"config off schema", func(r *DeployRequest) { r.Config = map[string]any{"mode": "warp"} }, ErrInvalid, "spec.config.mode"},
		{"unknown config key is fine but secret key must be marked", func(r *DeployRequest) {
			r.Secrets = map[string]any{"mode": "fast"}
		}, ErrInvalid, "secrets.mode"},
		{"bad cpu in patch-like resources", func(r *DeployRequest) { r.Manifest.Spec.Resources.CPU = "lots" }, ErrInvalid, "spec.resources.cpu"},
		{"volume on the config mount", func(r *DeployRequest) {
			r.Manifest.Spec.Volumes = []manifest.Volume{{Name: "x", MountPath: ConfigMountPath}}
		}, ErrInvalid, "spec.volumes[0].mountPath"},
		{"deep config", func(r *DeployRequest) { r.Config = deepMap(40) }, ErrInvalid, "config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			req := good()
			c.change(&req)
			_, err := e.s.Deploy(context.Background(), req)
			if !errors.Is(err, c.is) {
				t.Fatalf("error %v, want %v", err, c.is)
			}
			var ie *InvalidError
			if !errors.As(err, &ie) || !hasPath(ie.Problems, c.path) {
				t.Errorf("problems %v do not name %s", err, c.path)
			}
			if as, _ := e.s.List(context.Background()); len(as) != 0 {
				t.Errorf("a refused deploy recorded %v", as)
			}
		})
	}
}

func TestDeployTwiceIsExists(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	_, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, toolYAML), Actor: testActor})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second deploy: %v, want ErrExists", err)
	}
}

func TestDeployStartFailureIsRecorded(t *testing.T) {
	e := newEnv(t)
	e.rt.StartHook = func(string) error { return errors.New("exec format error") }
	_, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, toolYAML), Actor: testActor})
	if !errors.Is(err, ErrStartFailed) {
		t.Fatalf("deploy: %v, want ErrStartFailed", err)
	}
	a := e.get(t, "tool")
	if a.Status.State != StateBackoff || !strings.Contains(a.Status.Reason, "exec format error") {
		t.Errorf("status %+v", a.Status)
	}
	st, _ := e.s.DeployStats(context.Background(), e.clock.Now().AddDate(0, 0, -7))
	if st.Total != 1 || st.Succeeded != 0 || st.Rate != 0 {
		t.Errorf("deploy stats %+v", st)
	}
}

func TestPatchRecreatesBeforeRemovingTheOld(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.rt.Calls()
	a, err := e.s.Patch(context.Background(), "tool", PatchRequest{Config: map[string]any{"mode": "slow"},
		Resources: &manifest.Resources{Memory: "128Mi"}, Actor: testActor})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"create tool-g2", "start tool-g2", "stop tool-g1", "delete tool-g1"}
	if got := e.rt.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
	if a.Generation != 2 || a.Status.State != StateRunning || a.Config["mode"] != "slow" || a.Manifest.Spec.Resources.Memory != "128Mi" {
		t.Errorf("patched %+v", a)
	}
	if a.Config["api_key"] != manifest.Redacted {
		t.Errorf("the secret was not carried over: config %v", a.Config)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "agents", "tool", "_config-g1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old generation's configuration is still there: %v", err)
	}
	var n int
	e.st.Read().QueryRow("SELECT count(*) FROM agent_specs WHERE agent_id = 'tool'").Scan(&n)
	if n != 1 {
		t.Errorf("%d generations stored, want 1", n)
	}
	// The same values again change nothing.
	a2, err := e.s.Patch(context.Background(), "tool", PatchRequest{Config: map[string]any{"mode": "slow"}, Actor: testActor})
	if err != nil || a2.Generation != 2 || len(e.rt.Calls()) != 0 {
		t.Errorf("a patch without changes made generation %d (%v)", a2.Generation, err)
	}
}

func TestPatchThatFailsKeepsTheOldRunning(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.rt.Calls()
	e.rt.StartHook = func(id string) error {
		if id == "tool-g2" {
			return errors.New("bad config")
		}
		return nil
	}
	a, err := e.s.Patch(context.Background(), "tool", PatchRequest{Config: map[string]any{"mode": "slow"}, Actor: testActor})
	if !errors.Is(err, ErrStartFailed) {
		t.Fatalf("patch: %v, want ErrStartFailed", err)
	}
	if got := e.rt.Calls(); slices.Contains(got, "stop tool-g1") || slices.Contains(got, "delete tool-g1") {
		t.Errorf("the old container was touched: %v", got)
	}
	if e.ctrState(t, "tool-g1") != runtime.Running || e.ctrState(t, "tool-g2") != "absent" {
		t.Errorf("containers %v", e.rt.Containers())
	}
	if a.Generation != 1 || a.Config["mode"] != "fast" || a.PatchPending || a.Status.State != StateRunning {
		t.Errorf("after the failed patch %+v", a)
	}
	if !strings.Contains(a.Status.Reason, "generation 1 kept") {
		t.Errorf("reason %q", a.Status.Reason)
	}
	if acts := actions(e.audit(t)); !slices.Contains(acts, "omertad agents.patch.rolled-back tool") {
		t.Errorf("audit %v", acts)
	}
	// The next patch gets a new generation number, never the failed one's.
	e.rt.StartHook = nil
	a, err = e.s.Patch(context.Background(), "tool", PatchRequest{Config: map[string]any{"mode": "slow"}, Actor: testActor})
	if err != nil || a.Generation != 3 {
		t.Fatalf("second patch: generation %d, %v", a.Generation, err)
	}
	st, _ := e.s.DeployStats(context.Background(), e.clock.Now().AddDate(0, 0, -7))
	if st.Total != 3 || st.Succeeded != 2 {
		t.Errorf("deploy stats %+v", st)
	}
}

func TestPatchInterruptedIsFinishedByTheReconciler(t *testing.T) {
	for _, fail := range []bool{false, true} {
		e := newEnv(t)
		e.deploy(t, "")
		ctx := context.Background()
		row, _ := loadAgent(ctx, e.st.Read(), "tool")
		cs, _, err := e.s.patched(ctx, row, PatchRequest{Config: map[string]any{"mode": "slow"}, Actor: testActor})
		if err != nil {
			t.Fatal(err)
		}
		// As if omertad died right after recording the patch.
		if err := e.s.recordPatch(ctx, row, testActor, cs, nil); err != nil {
			t.Fatal(err)
		}
		if a := e.get(t, "tool"); !a.PatchPending || a.Generation != 2 {
			t.Fatalf("recorded patch %+v", a)
		}
		if fail {
			e.rt.StartHook = func(string) error { return errors.New("no") }
		}
		e.reconcile(t)
		a := e.get(t, "tool")
		want, alive, gone := int64(2), "tool-g2", "tool-g1"
		if fail {
			want, alive, gone = 1, "tool-g1", "tool-g2"
		}
		if a.Generation != want || a.PatchPending || e.ctrState(t, alive) != runtime.Running || e.ctrState(t, gone) != "absent" {
			t.Errorf("fail=%v: generation %d pending %v, containers %v", fail, a.Generation, a.PatchPending, e.rt.Containers())
		}
	}
}

func TestLifecycleVerbsAndAudit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.deploy(t, "")
	a, err := e.s.Disable(ctx, "tool", testActor)
	if err != nil || a.Status.State != StateStopped || e.ctrState(t, "tool-g1") != runtime.Stopped {
		t.Fatalf("disable: %+v %v", a.Status, err)
	}
	e.reconcile(t)
	if e.ctrState(t, "tool-g1") != runtime.Stopped {
		t.Fatal("the reconciler started a disabled agent")
	}
	if _, err := e.s.Restart(ctx, "tool", testActor); !errors.Is(err, ErrConflict) {
		t.Errorf("restart of a disabled agent: %v", err)
	}
	if _, err := e.s.RunTask(ctx, TaskRequest{Agent: "tool", Actor: testActor}); !errors.Is(err, ErrConflict) {
		t.Errorf("task on a disabled agent: %v", err)
	}
	if a, err = e.s.Enable(ctx, "tool", testActor); err != nil || a.Status.State != StateRunning {
		t.Fatalf("enable: %+v %v", a.Status, err)
	}
	e.rt.Calls()
	if a, err = e.s.Restart(ctx, "tool", testActor); err != nil || a.Status.State != StateRunning {
		t.Fatalf("restart: %+v %v", a.Status, err)
	}
	if got := e.rt.Calls(); !slices.Equal(got, []string{"stop tool-g1", "start tool-g1"}) {
		t.Errorf("restart calls %v", got)
	}
	if a.Status.Restarts != 0 {
		t.Errorf("an operator's restart counted as the policy's: %d", a.Status.Restarts)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "agents", "tool", "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Delete(ctx, "tool", false, testActor); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Get(ctx, "tool"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if len(e.rt.Containers()) != 0 {
		t.Errorf("containers left: %v", e.rt.Containers())
	}
	if _, err := os.Stat(filepath.Join(e.dir, "agents", "tool", "keep")); err != nil {
		t.Errorf("delete without purge removed the data: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(e.dir, "agents", "tool", "_config-*")); len(m) != 0 {
		t.Errorf("the configuration (with its secrets) outlived the agent: %v", m)
	}
	want := []string{"uid:1000 agents.deploy tool", "uid:1000 agents.disable tool", "uid:1000 agents.enable tool",
		"uid:1000 agents.restart tool", "uid:1000 agents.delete tool"}
	if got := actions(e.audit(t)); !slices.Equal(got, want) {
		t.Errorf("audit\n got %v\nwant %v", got, want)
	}
}

func TestDeletePurge(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.rt.AppendLog("tool-g1", "hello\n")
	if err := os.WriteFile(filepath.Join(e.dir, "logs", "tool-g1.log.1"), []byte("older\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Delete(context.Background(), "tool", true, testActor); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "agents", "tool")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("purge left the data directory: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(e.dir, "logs", "tool-g1.log*")); len(m) != 0 {
		t.Errorf("purge left logs: %v", m)
	}
	// Deployed again under the same id, it starts from generation 1.
	if a := e.deploy(t, ""); a.Generation != 1 || a.Status.State != StateRunning {
		t.Errorf("redeploy %+v", a)
	}
}

func TestDeleteWhileContainerdIsDownCompletesLater(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.rt.SetUnavailable(true)
	err := e.s.Delete(context.Background(), "tool", false, testActor)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("delete: %v, want ErrUnavailable", err)
	}
	if a := e.get(t, "tool"); a.Desired != DesiredDeleted {
		t.Errorf("the intent was not recorded: %+v", a)
	}
	if _, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, toolYAML), Actor: testActor}); !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrConflict) {
		t.Errorf("deploy over a deletion: %v", err)
	}
	e.rt.SetUnavailable(false)
	e.reconcile(t)
	if _, err := e.s.Get(context.Background(), "tool"); !errors.Is(err, ErrNotFound) || len(e.rt.Containers()) != 0 {
		t.Errorf("after reconcile: %v, containers %v", err, e.rt.Containers())
	}
}

func TestVerbsOnMissingAgent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for name, err := range map[string]error{
		"get":     func() error { _, err := e.s.Get(ctx, "nope"); return err }(),
		"disable": func() error { _, err := e.s.Disable(ctx, "nope", testActor); return err }(),
		"patch": func() error {
			_, err := e.s.Patch(ctx, "nope", PatchRequest{Config: map[string]any{}, Actor: testActor})
			return err
		}(),
		"delete": e.s.Delete(ctx, "nope", false, testActor),
		"logs":   func() error { _, err := e.s.Logs(ctx, "nope", 10); return err }(),
		"task":   func() error { _, err := e.s.GetTask(ctx, "t-nope"); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
}

func parseManifestT(text string) *manifest.Manifest {
	m, err := manifest.Parse([]byte(text))
	if err != nil {
		panic(err)
	}
	return m
}

func hasPath(ps manifest.Problems, path string) bool {
	for _, p := range ps {
		if p.Path == path {
			return true
		}
	}
	return false
}

func deepMap(n int) map[string]any {
	m := map[string]any{}
	cur := m
	for range n {
		next := map[string]any{}
		cur["x"] = next
		cur = next
	}
	return m
}

func TestProfileChoosesTheDefaultIsolation(t *testing.T) {
	for _, c := range []struct {
		profile config.Profile
		want    runtime.Isolation
	}{{config.ProfileUser, runtime.Container}, {config.ProfileEnterprise, runtime.Sandbox}} {
		e := newEnv(t, WithProfile(c.profile))
		m := parseManifest(t, strings.Replace(toolYAML, "  isolation: container\n", "", 1))
		a, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: m, Actor: testActor})
		if err != nil {
			t.Fatal(err)
		}
		sp, _ := e.rt.Spec("tool-g1")
		if sp.Isolation != c.want || a.Manifest.Spec.Isolation != manifest.Isolation(c.want) {
			t.Errorf("profile %s: isolation %s (manifest %s), want %s", c.profile, sp.Isolation, a.Manifest.Spec.Isolation, c.want)
		}
	}
}

func TestAnswersDoNotAliasTheCache(t *testing.T) {
	e := newEnv(t)
	a := e.deploy(t, "")
	a.Manifest.Spec.Image.Ref = "changed"
	a.Manifest.Spec.Tasks.Command[0] = "changed"
	a.Manifest.Spec.ConfigSchema["type"] = "changed"
	b := e.get(t, "tool")
	if b.Manifest.Spec.Image.Ref != testImage || b.Manifest.Spec.Tasks.Command[0] != "/agent" || b.Manifest.Spec.ConfigSchema["type"] != "object" {
		t.Errorf("changing an answer changed the stored agent: %+v", b.Manifest.Spec)
	}
}
