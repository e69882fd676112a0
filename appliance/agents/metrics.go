package agents

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Service's Prometheus collectors.
type metrics struct {
	tasks *prometheus.CounterVec
	pass  prometheus.Histogram
	view  *agentCollector
}

func newMetrics(s *Service) *metrics {
	m := &metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omerta_tasks_total",
			Help: "Tasks that entered each state since omertad started.",
		}, []string{"state"}),
		pass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "omerta_agents_reconcile_seconds",
			Help:    "Duration of one reconcile pass.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		view: newAgentCollector(s),
	}
	for _, st := range TaskStates {
		m.tasks.WithLabelValues(string(st))
	}
	return m
}

// Collectors returns the Service's Prometheus collectors, for a registry
// of the daemon's (prometheus.NewRegistry().MustRegister(s.Collectors()...)).
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.met.view, s.met.tasks, s.met.pass}
}

// agentCollector reports the latest telemetry samples and statuses; a
// scrape reads memory only, never containerd or the database.
type agentCollector struct {
	s                                  *Service
	cpu, mem, memLimit, pids, restarts *prometheus.Desc
	oom, agents                        *prometheus.Desc
}

func newAgentCollector(s *Service) *agentCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &agentCollector{
		s:        s,
		cpu:      d("omerta_agent_cpu_seconds_total", "CPU time used by the agent's current task.", "agent"),
		mem:      d("omerta_agent_memory_bytes", "Working set of the agent's container.", "agent"),
		memLimit: d("omerta_agent_memory_limit_bytes", "Memory limit of the agent's container.", "agent"),
		pids:     d("omerta_agent_pids", "Processes and threads in the agent's container.", "agent"),
		restarts: d("omerta_agent_restarts_total", "Restarts made by the agent's restart policy.", "agent"),
		oom:      d("omerta_agent_oom_kills_total", "Processes of the agent killed for lack of memory.", "agent"),
		agents:   d("omerta_agents", "Agents by observed state.", "state"),
	}
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.mem, c.memLimit, c.pids, c.restarts, c.oom, c.agents} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	status, samples := c.s.tel.snapshot()
	counts := make(map[State]int, len(States))
	for id, st := range status {
		counts[st.State]++
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(st.Restarts), id)
		ch <- prometheus.MustNewConstMetric(c.oom, prometheus.CounterValue, float64(st.OOMKills), id)
	}
	for _, st := range States {
		ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
	for id, sm := range samples {
		if _, ok := status[id]; !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, sm.CPUSeconds, id)
		ch <- prometheus.MustNewConstMetric(c.mem, prometheus.GaugeValue, float64(sm.MemoryBytes), id)
		ch <- prometheus.MustNewConstMetric(c.memLimit, prometheus.GaugeValue, float64(sm.MemoryLimit), id)
		ch <- prometheus.MustNewConstMetric(c.pids, prometheus.GaugeValue, float64(sm.Pids), id)
	}
}
