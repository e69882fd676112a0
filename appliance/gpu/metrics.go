package gpu

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collectors are the Service's metrics for omertad's /metrics registry,
// read from the last refresh and telemetry pass at each scrape (nothing
// asks NVML during a scrape).
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{&collector{s: s}}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descDriver = desc("omerta_gpu_driver_info", "1 when NVML answered and a GPU is supported, else 0; labelled with the driver.",
		"version", "kernel_modules")
	descUnitTotal    = desc("omerta_gpu_unit_memory_total_bytes", "VRAM of each GPU or MIG device admission hands out.", "uuid", "unit")
	descUnitFree     = desc("omerta_gpu_unit_memory_free_bytes", "VRAM NVML reports free on each unit at the last pass.", "uuid", "unit")
	descUnitReserved = desc("omerta_gpu_unit_memory_reserved_bytes", "VRAM the agents' grants reserve on each unit.", "uuid", "unit")
	descAgentMem     = desc("omerta_gpu_agent_memory_bytes", "VRAM an agent's processes hold on a unit.", "agent", "uuid", "unit")
	descAgentSM      = desc("omerta_gpu_agent_sm_utilization_percent",
		"SM utilisation of an agent's processes on a unit since the previous pass (absent when NVML has none, as in MIG mode).", "agent", "uuid", "unit")
	descAgentMemUtil = desc("omerta_gpu_agent_memory_utilization_percent",
		"Memory-controller utilisation of an agent's processes on a unit since the previous pass.", "agent", "uuid", "unit")
	descAgentProcs   = desc("omerta_gpu_agent_processes", "GPU processes of an agent on a unit.", "agent", "uuid", "unit")
	descUnattributed = desc("omerta_gpu_unattributed_processes", "GPU processes in no agent's cgroup at the last pass.")
	descDrifted      = desc("omerta_gpu_grants_drifted", "Grants whose GPUs were lost or changed, not yet released.")
)

type collector struct{ s *Service }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDriver, descUnitTotal, descUnitFree, descUnitReserved, descAgentMem,
		descAgentSM, descAgentMemUtil, descAgentProcs, descUnattributed, descDrifted} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.s.Status()
	avail := 0.0
	if st.Available {
		avail = 1
	}
	gauge(descDriver, avail, st.DriverVersion, string(st.Flavour))
	reserved := map[string]uint64{}
	drifted := 0
	for _, g := range c.s.alloc.Grants() {
		if g.Problem != "" {
			drifted++
		}
		for _, u := range g.Units {
			reserved[u.UUID] += u.Reserved
		}
	}
	for _, u := range c.s.alloc.Inventory().Units {
		if !u.allocatable() {
			continue
		}
		gauge(descUnitTotal, float64(u.TotalBytes), u.UUID, u.Label())
		gauge(descUnitFree, float64(u.FreeBytes), u.UUID, u.Label())
		gauge(descUnitReserved, float64(reserved[u.UUID]), u.UUID, u.Label())
	}
	use := c.s.Usage()
	for _, a := range use.Agents {
		for _, d := range a.Devices {
			gauge(descAgentMem, float64(d.MemoryBytes), a.Agent, d.UUID, d.Label)
			gauge(descAgentProcs, float64(d.Processes), a.Agent, d.UUID, d.Label)
			if d.SMPercent >= 0 {
				gauge(descAgentSM, float64(d.SMPercent), a.Agent, d.UUID, d.Label)
			}
			if d.MemoryPercent >= 0 {
				gauge(descAgentMemUtil, float64(d.MemoryPercent), a.Agent, d.UUID, d.Label)
			}
		}
	}
	gauge(descUnattributed, float64(len(use.Unattributed)))
	gauge(descDrifted, float64(drifted))
}
