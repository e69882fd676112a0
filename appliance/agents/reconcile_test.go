package agents

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
)

func TestRestartBackoffAndCrashLoop(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	ctx := context.Background()
	crash := func() {
		t.Helper()
		if err := e.rt.Exit("tool-g1", 2, false); err != nil {
			t.Fatal(err)
		}
		e.reconcile(t)
	}
	// initial 1s, max 4s; crash loop after 3 failures within 1m.
	for i, delay := range []time.Duration{time.Second, 2 * time.Second} {
		crash()
		a := e.get(t, "tool")
		if a.Status.State != StateBackoff || a.Status.NextStartAt == nil || !a.Status.NextStartAt.Equal(e.clock.Now().Add(delay)) {
			t.Fatalf("failure %d: status %+v, want backoff of %v", i+1, a.Status, delay)
		}
		if *a.Status.LastExitCode != 2 || a.Status.Reason != "exited with status 2" {
			t.Errorf("failure %d: exit %v %q", i+1, *a.Status.LastExitCode, a.Status.Reason)
		}
		e.clock.Advance(delay - time.Millisecond)
		e.reconcile(t)
		if e.ctrState(t, "tool-g1") != runtime.Stopped {
			t.Fatalf("failure %d: restarted before the backoff ended", i+1)
		}
		e.clock.Advance(time.Millisecond)
		e.reconcile(t)
		a = e.get(t, "tool")
		if e.ctrState(t, "tool-g1") != runtime.Running || a.Status.State != StateRunning || a.Status.Restarts != int64(i+1) {
			t.Fatalf("failure %d: after the backoff %+v", i+1, a.Status)
		}
	}
	crash()
	a := e.get(t, "tool")
	if a.Status.State != StateCrashLoop || a.Status.CrashLoopSince == nil {
		t.Fatalf("after 3 failures: %+v", a.Status)
	}
	e.clock.Advance(time.Hour)
	e.reconcile(t)
	if e.ctrState(t, "tool-g1") != runtime.Stopped || e.state(t, "tool") != StateCrashLoop {
		t.Fatal("a crash-looping agent was restarted without an operator")
	}
	if acts := actions(e.audit(t)); !slices.Contains(acts, "omertad agents.crash-loop tool") {
		t.Errorf("audit %v", acts)
	}
	if a, err := e.s.Restart(ctx, "tool", testActor); err != nil || a.Status.State != StateRunning || a.Status.CrashLoopSince != nil {
		t.Fatalf("operator restart: %+v %v", a.Status, err)
	}
	// The slate is clean: one failure is a short backoff again.
	crash()
	if a := e.get(t, "tool"); a.Status.State != StateBackoff || !a.Status.NextStartAt.Equal(e.clock.Now().Add(time.Second)) {
		t.Errorf("after the operator's restart: %+v", a.Status)
	}
}

func TestFailuresOutsideTheWindowAreForgotten(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	for i := range 6 {
		if err := e.rt.Exit("tool-g1", 1, false); err != nil {
			t.Fatal(err)
		}
		e.reconcile(t)
		if st := e.state(t, "tool"); st != StateBackoff {
			t.Fatalf("failure %d, each more than a window apart: %s", i+1, st)
		}
		e.clock.Advance(61 * time.Second)
		e.reconcile(t)
	}
}

func TestRestartPolicies(t *testing.T) {
	for _, c := range []struct {
		policy string
		code   uint32
		want   State
	}{
		{"never", 1, StateExited},
		{"never", 0, StateExited},
		{"on-failure", 0, StateExited},
		{"on-failure", 1, StateBackoff},
		{"always", 0, StateBackoff},
		{"always", 3, StateBackoff},
	} {
		t.Run(c.policy+"/"+string(rune('0'+c.code)), func(t *testing.T) {
			e := newEnv(t)
			m := parseManifest(t, withPolicy("  restart: {policy: "+c.policy+"}\n"))
			if _, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: m, Actor: testActor}); err != nil {
				t.Fatal(err)
			}
			e.rt.Exit("tool-g1", c.code, false)
			e.reconcile(t)
			if st := e.state(t, "tool"); st != c.want {
				t.Fatalf("state %s, want %s", st, c.want)
			}
			e.clock.Advance(time.Hour)
			e.reconcile(t)
			running := e.ctrState(t, "tool-g1") == runtime.Running
			if running != (c.want == StateBackoff) {
				t.Errorf("running after the backoff: %v", running)
			}
		})
	}
}

func TestNeverPolicyStartFailureIsFailed(t *testing.T) {
	e := newEnv(t)
	e.rt.StartHook = func(string) error { return errors.New("boom") }
	m := parseManifest(t, withPolicy("  restart: {policy: never}\n"))
	if _, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: m, Actor: testActor}); !errors.Is(err, ErrStartFailed) {
		t.Fatal(err)
	}
	e.rt.StartHook = nil
	e.clock.Advance(time.Hour)
	e.reconcile(t)
	if st := e.state(t, "tool"); st != StateFailed || len(e.rt.Containers()) != 0 {
		t.Errorf("state %s, containers %v", st, e.rt.Containers())
	}
}

func TestOOMKillsAreCounted(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	ctx := context.Background()
	// Two processes killed for memory while the agent kept running.
	e.rt.SetMetrics("tool-g1", runtime.Metrics{OOMKills: 2, MemoryBytes: 1 << 20})
	if err := e.s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	e.reconcile(t)
	if n := e.get(t, "tool").Status.OOMKills; n != 2 {
		t.Fatalf("oom kills %d, want 2", n)
	}
	e.reconcile(t)
	if n := e.get(t, "tool").Status.OOMKills; n != 2 {
		t.Fatalf("oom kills counted twice: %d", n)
	}
	// Then the main process: a third.
	e.rt.Exit("tool-g1", 137, true)
	e.reconcile(t)
	a := e.get(t, "tool")
	if a.Status.OOMKills != 3 || !strings.Contains(a.Status.Reason, "out of memory") {
		t.Fatalf("after the OOM exit: %+v", a.Status)
	}
	// The restarted task starts counting from zero; the stale sample
	// of the old task must not count again.
	e.clock.Advance(time.Minute)
	e.reconcile(t)
	e.reconcile(t)
	if a := e.get(t, "tool"); a.Status.OOMKills != 3 || a.Status.State != StateRunning {
		t.Fatalf("after the restart: %+v", a.Status)
	}
}

func TestOrphansAreRemoved(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.rt.AddOrphan("stray")
	e.rt.AddOrphan("tool-g7")
	e.reconcile(t)
	if got := e.rt.Containers(); !slices.Equal(got, []string{"tool-g1"}) {
		t.Errorf("containers %v, want only the agent's", got)
	}
	if e.rt.HasSnapshot("snap-stray") {
		t.Error("the orphan snapshot stayed")
	}
	if acts := actions(e.audit(t)); !slices.Contains(acts, "omertad agents.orphans.removed ") {
		t.Errorf("audit %v", acts)
	}
	if e.ctrState(t, "tool-g1") != runtime.Running {
		t.Error("the agent's container was touched")
	}
}

func TestSweepWaitsForVerbsInFlight(t *testing.T) {
	e := newEnv(t)
	e.rt.AddOrphan("stray")
	e.s.ops.RLock() // a verb between its container's create and its commit
	e.reconcile(t)
	e.s.ops.RUnlock()
	if !slices.Contains(e.rt.Containers(), "stray") {
		t.Fatal("the sweep ran while a verb held ops")
	}
	e.reconcile(t)
	if slices.Contains(e.rt.Containers(), "stray") {
		t.Fatal("the sweep did not run once the verb was done")
	}
}

func TestContainerdDownThenBack(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.rt.SetUnavailable(true)
	if err := e.s.Reconcile(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("reconcile: %v, want ErrUnavailable", err)
	}
	if st := e.state(t, "tool"); st != StateUnknown || e.s.Available() {
		t.Errorf("state %s (available %v) while containerd is down", st, e.s.Available())
	}
	_, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, toolYAML), ID: "other", Actor: testActor})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("deploy while down: %v", err)
	}
	if _, err := e.s.Get(context.Background(), "other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deploy refused for containerd being down was recorded: %v", err)
	}
	e.rt.Calls()
	e.rt.SetUnavailable(false)
	e.reconcile(t)
	if st := e.state(t, "tool"); st != StateRunning || !e.s.Available() {
		t.Errorf("state %s (available %v) once containerd is back", st, e.s.Available())
	}
	if got := e.rt.Calls(); len(got) != 0 {
		t.Errorf("the running agent was touched: %v", got)
	}
}

func TestCreatedButNeverStartedIsRecreated(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	ctx := context.Background()
	// As if omertad died between create and start of a restart.
	e.rt.Exit("tool-g1", 1, false)
	e.rt.Delete(ctx, "tool-g1")
	sp := e.s.runtimeSpec("tool", 1, parseManifest(t, toolYAML))
	e.rt.Create(ctx, sp)
	e.rt.AddSnapshot("tool-g1") // and a create before it left its snapshot
	e.rt.Calls()
	e.clock.Advance(time.Minute)
	e.reconcile(t)
	if e.ctrState(t, "tool-g1") != runtime.Running {
		t.Fatalf("containers %v, calls %v", e.rt.Containers(), e.rt.Calls())
	}
}

func TestLeftoverSnapshotIsCleared(t *testing.T) {
	e := newEnv(t)
	e.rt.AddSnapshot("tool-g1") // a create of a previous omertad died half-way
	if a := e.deploy(t, ""); a.Status.State != StateRunning {
		t.Fatalf("deploy over a leftover snapshot: %+v", a.Status)
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	e := newEnv(t, WithInterval(10*time.Millisecond), WithTelemetryInterval(10*time.Millisecond))
	e.deploy(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.Run(ctx) }()
	e.rt.Exit("tool-g1", 1, false)
	deadline := time.Now().Add(5 * time.Second)
	for e.state(t, "tool") != StateBackoff {
		if time.Now().After(deadline) {
			t.Fatal("Run did not reconcile")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestWedgedContainerNameIsAbandoned(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.rt.Exit("tool-g1", 1, false)
	e.rt.Wedge("tool-g1")
	e.clock.Advance(time.Minute)
	e.reconcile(t)
	a := e.get(t, "tool")
	if a.Generation != 2 || a.Status.State != StateRunning || e.ctrState(t, "tool-g2") != runtime.Running || e.ctrState(t, "tool-g1") != "absent" {
		t.Fatalf("after the wedge: generation %d %+v, containers %v", a.Generation, a.Status, e.rt.Containers())
	}
	if a.Config["mode"] != "fast" || a.Config["api_key"] != "(secret)" {
		t.Errorf("the spec was not carried over: %v", a.Config)
	}
	if acts := actions(e.audit(t)); !slices.Contains(acts, "omertad agents.respawned tool") {
		t.Errorf("audit %v", acts)
	}
}
