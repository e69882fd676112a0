package api

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/probe"
	"github.com/omertaos/omertaos/appliance/store"
)

func listStates(t *testing.T, e *agentsEnv) map[string]string {
	t.Helper()
	l, err := e.c.Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range l.Agents {
		out[a.ID] = a.Desired + "/" + a.Status.State
	}
	return out
}

// TestAgentListCachedUntilChange: GET /agents answers from what it made
// while the database stays as it was, and follows every change: deploys
// and disables through the API, and the state the reconciler writes on
// its own.
func TestAgentListCachedUntilChange(t *testing.T) {
	e := newAgentsEnv(t)
	e.deploy(t, "tool-1")
	e.waitState(t, "tool-1", "running")
	first := listStates(t, e)
	kept := keptBody(&e.srv.agentList)
	if len(kept) == 0 {
		t.Fatal("the list's answer was not kept")
	}
	if got := listStates(t, e); len(got) != 1 || !same(keptBody(&e.srv.agentList), kept) {
		t.Errorf("an unchanged database: the list was made again (%v)", got)
	}
	e.deploy(t, "tool-2")
	if got := listStates(t, e); len(got) != 2 {
		t.Errorf("after a deploy the list shows %v (before %v)", got, first)
	}
	// tool-2 becomes running by the reconciler's own write, not a call.
	deadline := time.Now().Add(10 * time.Second)
	for listStates(t, e)["tool-2"] != "enabled/running" {
		if time.Now().After(deadline) {
			t.Fatalf("the list never showed the reconciler's state: %v", listStates(t, e))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.c.AgentAction(context.Background(), "tool-1", "disable"); err != nil {
		t.Fatal(err)
	}
	if got := listStates(t, e)["tool-1"]; got[:len("disabled")] != "disabled" {
		t.Errorf("after a disable the list shows tool-1 %s", got)
	}
}

// TestProbeCachedUntilChange: GET /probe from a probe.Monitor is made
// once per state of the database; a new probe saved shows at once.
func TestProbeCachedUntilChange(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(probe.Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	save := func(at time.Time, baseline bool) {
		if err := probe.Save(ctx, st, &probe.Result{SchemaVersion: probe.SchemaVersion, Time: at}, baseline); err != nil {
			t.Fatal(err)
		}
	}
	save(at, true)
	s, srv := serveWithServer(t, Deps{Store: st, Probe: probe.NewMonitor(st)})
	v1, err := s.c.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kept := keptBody(&srv.probeAnswer)
	if v, err := s.c.Probe(ctx); err != nil || v.ProbeID != v1.ProbeID || !same(keptBody(&srv.probeAnswer), kept) {
		t.Errorf("an unchanged database: probe %d, %v; made again: %v", v.ProbeID, err, !same(keptBody(&srv.probeAnswer), kept))
	}
	save(at.Add(time.Hour), false)
	v2, err := s.c.Probe(ctx)
	if err != nil || v2.ProbeID == v1.ProbeID || !v2.At.Equal(at.Add(time.Hour)) {
		t.Errorf("after a new probe: probe %d at %v, %v; want the new one, not %d", v2.ProbeID, v2.At, err, v1.ProbeID)
	}
	if v2.BaselineID != v1.ProbeID {
		t.Errorf("baseline %d, want %d", v2.BaselineID, v1.ProbeID)
	}
}

// keptBody is the answer a cache holds.
func keptBody(a *answerCache) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.body
}

// same reports whether two answers are one kept slice, not equal bytes
// made twice.
func same(a, b []byte) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }
