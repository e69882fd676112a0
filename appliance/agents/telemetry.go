package agents

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
)

// Sample is one telemetry reading of an agent's container, from its
// cgroup (containerd's task metrics).
type Sample struct {
	Agent     string    `json:"agent"`
	Container string    `json:"container"`
	At        time.Time `json:"at"`
	// CPUSeconds is the CPU time used since the container's task started;
	// CPUPercent the share of one CPU used since the previous sample.
	CPUSeconds  float64 `json:"cpuSeconds"`
	CPUPercent  float64 `json:"cpuPercent"`
	MemoryBytes uint64  `json:"memoryBytes"`
	MemoryLimit uint64  `json:"memoryLimit"`
	Pids        uint64  `json:"pids"`
	PidsLimit   uint64  `json:"pidsLimit"`
	// OOMKills counts the OOM kills in the current task's cgroup.
	OOMKills uint64 `json:"oomKills"`

	asked time.Time // when the metrics were requested (wall clock)
}

// telemetry is the Service's in-memory picture for metrics and events:
// the last status of each agent, the container each agent runs now, and
// the latest sample of each.
type telemetry struct {
	mu         sync.Mutex
	status     map[string]statusRow
	containers map[string]string    // container → agent
	samples    map[string]Sample    // agent → latest
	started    map[string]time.Time // container → when a start last succeeded
}

// track replaces the picture with a pass's rows.
func (t *telemetry) track(rows []agentRow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.status = make(map[string]statusRow, len(rows))
	t.containers = make(map[string]string, len(rows))
	for _, r := range rows {
		t.status[r.ID] = r.St
		t.containers[containerID(r.ID, r.Gen)] = r.ID
	}
	for a := range t.samples {
		if _, ok := t.status[a]; !ok {
			delete(t.samples, a)
		}
	}
}

func (t *telemetry) setStatus(id string, st statusRow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status == nil {
		t.status = map[string]statusRow{}
	}
	t.status[id] = st
}

func (t *telemetry) drop(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.status, id)
	delete(t.samples, id)
	for c, a := range t.containers {
		if a == id {
			delete(t.containers, c)
			delete(t.started, c)
		}
	}
}

// runs notes that agent id runs in container cid now.
func (t *telemetry) runs(cid, id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.containers == nil {
		t.containers = map[string]string{}
	}
	for c, a := range t.containers {
		if a == id {
			delete(t.containers, c)
		}
	}
	t.containers[cid] = id
}

// startedNow notes that the container's task was (re)started: samples
// asked for before it describe the previous task.
func (t *telemetry) startedNow(cid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started == nil {
		t.started = map[string]time.Time{}
	}
	t.started[cid] = time.Now()
}

// oomOf is the OOM kill count of the container's current task, when a
// sample of that task is known.
func (t *telemetry) oomOf(cid string) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sm, ok := t.samples[t.containers[cid]]
	if !ok || sm.Container != cid || !sm.asked.After(t.started[cid]) {
		return 0, false
	}
	return int64(sm.OOMKills), true
}

// snapshot copies the picture for a scrape.
func (t *telemetry) snapshot() (map[string]statusRow, map[string]Sample) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := make(map[string]statusRow, len(t.status))
	for k, v := range t.status {
		st[k] = v
	}
	sm := make(map[string]Sample, len(t.samples))
	for k, v := range t.samples {
		sm[k] = v
	}
	return st, sm
}

// sampleLoop samples every telemetry interval until ctx ends.
func (s *Service) sampleLoop(ctx context.Context) {
	t := time.NewTicker(s.telInt)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sample(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrUnavailable) {
				s.log.Warn("agents: telemetry", "err", err)
			}
		}
	}
}

// Sample reads every agent container's metrics in one request, keeps
// them for the Prometheus collectors, publishes them on the bus and
// rotates the logs that grew too large. The reconciler's pass tells it
// which container is whose.
func (s *Service) Sample(ctx context.Context) error {
	s.cycle.Lock()
	defer s.cycle.Unlock()
	asked := time.Now()
	all, err := s.rt.MetricsAll(ctx)
	if err != nil {
		return fromRuntime("sampling metrics", err)
	}
	out := s.tel.record(all, asked, s.now())
	for _, sm := range out {
		s.publish(Event{Type: EventTelemetry, Agent: sm.Agent, Data: sm})
		if _, err := s.rt.Rotate(sm.Container); err != nil {
			s.log.Warn("agents: rotating a log", "agent", sm.Agent, "err", err)
		}
	}
	return nil
}

func (t *telemetry) record(all map[string]runtime.Metrics, asked, now time.Time) []Sample {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.samples == nil {
		t.samples = map[string]Sample{}
	}
	var out []Sample
	for cid, m := range all {
		agent, ok := t.containers[cid]
		if !ok {
			continue
		}
		at := m.At
		if at.IsZero() {
			at = now
		}
		sm := Sample{Agent: agent, Container: cid, At: at, CPUSeconds: float64(m.CPUNanos) / 1e9,
			MemoryBytes: m.MemoryBytes, MemoryLimit: m.MemoryLimit, Pids: m.Pids, PidsLimit: m.PidsLimit,
			OOMKills: m.OOMKills, asked: asked}
		if prev, ok := t.samples[agent]; ok && prev.Container == cid && at.After(prev.At) && sm.CPUSeconds >= prev.CPUSeconds {
			sm.CPUPercent = 100 * (sm.CPUSeconds - prev.CPUSeconds) / at.Sub(prev.At).Seconds()
		}
		t.samples[agent] = sm
		out = append(out, sm)
	}
	return out
}

// Samples returns the latest sample of every agent that has one.
func (s *Service) Samples() map[string]Sample {
	_, sm := s.tel.snapshot()
	return sm
}
