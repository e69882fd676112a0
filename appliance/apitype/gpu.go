package apitype

import "time"

// This file holds the bodies of the GPU routes (GET /api/v1/gpus and
// /api/v1/gpus/{uuid}), an agent's GPU grant as its view shows it, and
// the data of the telemetry.gpu event.

// EventGPUTelemetry is the type of the event that carries one agent's
// GPU use at a telemetry pass of the GPU service (data: GPUTelemetry).
const EventGPUTelemetry = "telemetry.gpu"

// GPUList is the body of GET /api/v1/gpus: what the GPU service's last
// refresh found. Without a driver, or without a GPU the driver supports,
// Available is false, GPUs is empty and Reason says why ("NVIDIA
// management library unavailable: …", "no GPU the installed driver
// supports"); Problems name the GPUs left out and why.
type GPUList struct {
	Available     bool   `json:"available"`
	DriverVersion string `json:"driver_version,omitempty"`
	// KernelModules is "open" or "proprietary"; empty when no NVIDIA
	// module is loaded.
	KernelModules string   `json:"kernel_modules,omitempty"`
	Reason        string   `json:"reason,omitempty"`
	Problems      []string `json:"problems,omitempty"`
	// RefreshedAt is the last refresh; nil before the first one, while
	// omertad is starting (nothing else is known yet).
	RefreshedAt *time.Time `json:"refreshed_at,omitempty"`
	// GPUs are the GPUs admission hands out, by NVML index.
	GPUs []GPUView `json:"gpus"`
	// Lost are units agents still hold that the last refresh no longer
	// found (a GPU fallen off the bus, a MIG layout changed), until their
	// agents are given new GPUs or deleted.
	Lost []LostGPU `json:"lost,omitempty"`
}

// GPUView is one GPU. A GPU in MIG mode is not handed out whole: its MIG
// devices are, and its holders are theirs.
type GPUView struct {
	Index             int    `json:"index"`
	UUID              string `json:"uuid"`
	Name              string `json:"name,omitempty"`
	Architecture      string `json:"architecture"`
	ComputeCapability string `json:"compute_capability,omitempty"`
	// CDIDevice is the CDI name an agent's container gets it by; empty
	// for a GPU in MIG mode.
	CDIDevice string `json:"cdi_device,omitempty"`
	GPUMemory
	MIGEnabled bool      `json:"mig_enabled"`
	MIG        []MIGView `json:"mig,omitempty"`
	// Holders are the agents admitted to it, by agent.
	Holders []GPUHolder `json:"holders"`
}

// GPUMemory is the VRAM of a GPU or MIG device: NVML's total and free at
// the last pass, used (total less free, whoever uses it), and what the
// agents' grants reserve on it.
type GPUMemory struct {
	MemoryTotalBytes    uint64 `json:"memory_total_bytes"`
	MemoryFreeBytes     uint64 `json:"memory_free_bytes"`
	MemoryUsedBytes     uint64 `json:"memory_used_bytes"`
	MemoryReservedBytes uint64 `json:"memory_reserved_bytes"`
}

// MIGView is one MIG device of a GPU in MIG mode.
type MIGView struct {
	UUID            string `json:"uuid"`
	Index           int    `json:"index"`
	Profile         string `json:"profile,omitempty"`
	GPUInstance     int    `json:"gpu_instance"`
	ComputeInstance int    `json:"compute_instance"`
	CDIDevice       string `json:"cdi_device"`
	GPUMemory
	Holders []GPUHolder `json:"holders"`
}

// GPUHolder is an agent admitted to a GPU or MIG device.
type GPUHolder struct {
	Agent string `json:"agent"`
	// Mode is "exclusive" or "shared".
	Mode          string `json:"mode"`
	ReservedBytes uint64 `json:"reserved_bytes"`
	// UsedBytes is what the agent's processes were last seen using here.
	UsedBytes uint64 `json:"used_bytes"`
	// Problem is set once drift made the agent's grant unusable.
	Problem string `json:"problem,omitempty"`
}

// LostGPU is a unit an agent holds that is gone.
type LostGPU struct {
	UUID    string `json:"uuid"`
	Label   string `json:"label"`
	Agent   string `json:"agent"`
	Problem string `json:"problem,omitempty"`
}

// AgentGPUs is the GPU grant of an agent (Agent.GPUs): exactly the CDI
// devices its container is given.
type AgentGPUs struct {
	Mode string `json:"mode"`
	// MemoryBytes is the VRAM asked for on each unit (0: a count only).
	MemoryBytes uint64     `json:"memory_bytes"`
	Devices     []AgentGPU `json:"devices"`
	// Problem says why the grant is unusable (GPU drift), until the
	// agent's container is created again with new GPUs.
	Problem string `json:"problem,omitempty"`
}

// AgentGPU is one unit of an agent's grant.
type AgentGPU struct {
	UUID          string `json:"uuid"`
	Label         string `json:"label"`
	CDIDevice     string `json:"cdi_device"`
	ReservedBytes uint64 `json:"reserved_bytes"`
}

// GPUTelemetry is a telemetry.gpu event's data: one agent's GPU use at a
// telemetry pass, from NVML, attributed to the agent through its cgroup.
type GPUTelemetry struct {
	At          time.Time            `json:"at"`
	MemoryBytes uint64               `json:"memory_bytes"`
	Devices     []GPUDeviceTelemetry `json:"devices"`
}

// GPUDeviceTelemetry is one agent's use of one GPU or MIG device.
// SMPercent and MemoryPercent are NVML's utilisation since the previous
// pass, -1 when NVML gave none (MIG mode, no sample yet).
type GPUDeviceTelemetry struct {
	UUID          string `json:"uuid"`
	Label         string `json:"label"`
	MemoryBytes   uint64 `json:"memory_bytes"`
	SMPercent     int    `json:"sm_percent"`
	MemoryPercent int    `json:"memory_percent"`
	Processes     int    `json:"processes"`
}
