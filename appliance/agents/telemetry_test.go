package agents

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
)

func TestCollectors(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	e.deploy(t, "two")
	ctx := context.Background()
	e.s.Disable(ctx, "two", testActor)
	e.runTask(t, TaskRequest{})
	e.rt.SetMetrics("tool-g1", runtime.Metrics{CPUNanos: 3e9, MemoryBytes: 5 << 20, MemoryLimit: 64 << 20, Pids: 7, PidsLimit: 64})
	e.reconcile(t)
	if err := e.s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.s.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Gauge != nil:
				got[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				got[key] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for k, v := range map[string]float64{
		"omerta_agent_cpu_seconds_total{agent=tool}": 3,
		"omerta_agent_memory_bytes{agent=tool}":      5 << 20,
		"omerta_agent_pids{agent=tool}":              7,
		"omerta_agent_restarts_total{agent=tool}":    0,
		"omerta_agent_oom_kills_total{agent=two}":    0,
		"omerta_agents{state=running}":               1,
		"omerta_agents{state=stopped}":               1,
		"omerta_agents{state=crash-loop}":            0,
		"omerta_tasks_total{state=SUCCEEDED}":        1,
		"omerta_tasks_total{state=TIMED_OUT}":        0,
		"omerta_agents_reconcile_seconds":            1,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func TestSampleComputesCPUShareAndPublishes(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	sub := e.s.Bus().Subscribe(context.Background(), Filter{Types: []EventType{EventTelemetry}})
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	e.rt.SetMetrics("tool-g1", runtime.Metrics{At: t0, CPUNanos: 1e9})
	e.s.Sample(context.Background())
	e.rt.SetMetrics("tool-g1", runtime.Metrics{At: t0.Add(2 * time.Second), CPUNanos: 2e9})
	e.s.Sample(context.Background())
	<-sub.C
	ev := <-sub.C
	sm := ev.Data.(Sample)
	if sm.Agent != "tool" || sm.CPUPercent != 50 {
		t.Errorf("sample %+v", sm)
	}
}
