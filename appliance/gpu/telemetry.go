package gpu

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/omertaos/omertaos/appliance/safeio"
)

// ProcessSample is one process NVML sees on a unit.
type ProcessSample struct {
	PID   int    `json:"pid"`
	UUID  string `json:"uuid"`
	Label string `json:"label"`
	// MemoryBytes is the VRAM the process holds; MemoryKnown is false when
	// NVML would not say (it answers "not available" without privilege).
	MemoryBytes uint64 `json:"memory_bytes"`
	MemoryKnown bool   `json:"memory_known"`
	// SMPercent and MemoryPercent are NVML's per-process utilisation since
	// the previous sample, or -1 when NVML has none (MIG mode, no sample).
	SMPercent     int `json:"sm_percent"`
	MemoryPercent int `json:"memory_percent"`
	// Agent owns the process by its cgroup; Why says why none does.
	Agent string `json:"agent,omitempty"`
	Why   string `json:"why,omitempty"`
}

// DeviceUsage is one agent's use of one unit.
type DeviceUsage struct {
	UUID        string `json:"uuid"`
	Label       string `json:"label"`
	MemoryBytes uint64 `json:"memory_bytes"`
	// SMPercent sums the agent's processes (capped at 100); -1 when NVML
	// gave no utilisation sample for any of them.
	SMPercent     int `json:"sm_percent"`
	MemoryPercent int `json:"memory_percent"`
	Processes     int `json:"processes"`
}

// AgentUsage is one agent's GPU use.
type AgentUsage struct {
	Agent       string        `json:"agent"`
	MemoryBytes uint64        `json:"memory_bytes"`
	Devices     []DeviceUsage `json:"devices"`
}

// Usage is one telemetry pass.
type Usage struct {
	Agents       []AgentUsage    `json:"agents"`
	Unattributed []ProcessSample `json:"unattributed,omitempty"`
	// LastSeen is the newest utilisation sample's timestamp (NVML's
	// microseconds); pass it as since to the next CollectUsage so that
	// each pass reports only what happened after the previous one.
	LastSeen uint64   `json:"last_seen"`
	Problems []string `json:"problems,omitempty"`
}

// CollectUsage reads every compute process NVML reports, with its memory
// and utilisation, and attributes it to the agent whose cgroup holds it:
// cgroups maps a cgroup path (ContainerCgroup) to an agent, and procDir is
// the /proc that NVML's PIDs are from (the host's). A process in no
// agent's cgroup, or one that ended before its cgroup was read, is listed
// as unattributed with the reason.
func CollectUsage(lib nvml.Interface, procDir string, cgroups map[string]string, since uint64) (Usage, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return Usage{}, fmt.Errorf("%w: initialising NVML: %v", ErrNoDriver, ret)
	}
	defer lib.Shutdown()
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return Usage{}, fmt.Errorf("counting GPUs: %v", ret)
	}
	u := Usage{LastSeen: since}
	var samples []ProcessSample
	for i := range min(n, maxDevices) {
		s, err := gpuProcesses(lib, i, since, &u.LastSeen)
		if err != nil {
			u.Problems = append(u.Problems, err.Error())
		}
		samples = append(samples, s...)
	}
	attribute(samples, procDir, cgroups, &u)
	return u, nil
}

// gpuProcesses lists the processes on GPU i, each placed on its MIG
// device when the GPU is in MIG mode.
func gpuProcesses(lib nvml.Interface, i int, since uint64, lastSeen *uint64) ([]ProcessSample, error) {
	units, err := readGPU(lib, i)
	if len(units) == 0 {
		return nil, err
	}
	dev, ret := lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("GPU %d: getting its handle: %v", i, ret)
	}
	procs, ret := dev.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS {
		return nil, errors.Join(err, fmt.Errorf("GPU %d: listing its processes: %v", i, ret))
	}
	util := map[uint32]nvml.ProcessUtilizationSample{}
	if us, ret := dev.GetProcessUtilization(since); ret == nvml.SUCCESS {
		for _, s := range us {
			if s.TimeStamp >= util[s.Pid].TimeStamp {
				util[s.Pid] = s
			}
			*lastSeen = max(*lastSeen, s.TimeStamp)
		}
	} else if ret != nvml.ERROR_NOT_SUPPORTED && ret != nvml.ERROR_NOT_FOUND {
		// NOT_FOUND: no sample since the last pass; NOT_SUPPORTED: MIG mode.
		err = errors.Join(err, fmt.Errorf("GPU %d: reading process utilisation: %v", i, ret))
	}
	out := make([]ProcessSample, 0, len(procs))
	for _, p := range procs {
		unit := placeProcess(units, p)
		s := ProcessSample{PID: int(p.Pid), UUID: unit.UUID, Label: unit.Label(), SMPercent: -1, MemoryPercent: -1}
		if p.UsedGpuMemory != math.MaxUint64 { // NVML_VALUE_NOT_AVAILABLE
			s.MemoryBytes, s.MemoryKnown = p.UsedGpuMemory, true
		}
		if x, ok := util[p.Pid]; ok {
			s.SMPercent, s.MemoryPercent = int(min(x.SmUtil, 100)), int(min(x.MemUtil, 100))
		}
		out = append(out, s)
	}
	return out, err
}

// placeProcess finds the MIG device a process runs on from its GPU and
// compute instance; on a whole GPU, or when no MIG device matches, the
// process is the GPU's.
func placeProcess(units []Unit, p nvml.ProcessInfo) Unit {
	for _, u := range units[1:] {
		if u.MIG != nil && uint32(u.MIG.GPUInstance) == p.GpuInstanceId && uint32(u.MIG.ComputeInstance) == p.ComputeInstanceId {
			return u
		}
	}
	return units[0]
}

func attribute(samples []ProcessSample, procDir string, cgroups map[string]string, u *Usage) {
	byAgent := map[string]map[string]*DeviceUsage{}
	for _, s := range samples {
		agent, why := agentOf(procDir, s.PID, cgroups)
		if agent == "" {
			s.Why = why
			u.Unattributed = append(u.Unattributed, s)
			continue
		}
		devs := byAgent[agent]
		if devs == nil {
			devs = map[string]*DeviceUsage{}
			byAgent[agent] = devs
		}
		d := devs[s.UUID]
		if d == nil {
			d = &DeviceUsage{UUID: s.UUID, Label: s.Label, SMPercent: -1, MemoryPercent: -1}
			devs[s.UUID] = d
		}
		d.Processes++
		d.MemoryBytes += s.MemoryBytes
		d.SMPercent = addPercent(d.SMPercent, s.SMPercent)
		d.MemoryPercent = addPercent(d.MemoryPercent, s.MemoryPercent)
	}
	for _, agent := range sortedKeys(byAgent) {
		a := AgentUsage{Agent: agent}
		for _, d := range byAgent[agent] {
			a.MemoryBytes += d.MemoryBytes
			a.Devices = append(a.Devices, *d)
		}
		slices.SortFunc(a.Devices, func(x, y DeviceUsage) int { return cmp.Compare(x.Label, y.Label) })
		u.Agents = append(u.Agents, a)
	}
}

func addPercent(sum, p int) int {
	switch {
	case p < 0:
		return sum
	case sum < 0:
		return p
	}
	return min(sum+p, 100)
}

// agentOf reads the process's cgroup file and matches it.
func agentOf(procDir string, pid int, cgroups map[string]string) (agent, why string) {
	b, err := safeio.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cgroup"), maxCgroupFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "the process ended before its cgroup was read"
	}
	if err != nil {
		return "", "reading its cgroup: " + err.Error()
	}
	entries, err := ParseCgroupFile(b)
	if err != nil {
		return "", err.Error()
	}
	if a, ok := matchCgroup(entries, cgroups); ok {
		return a, ""
	}
	return "", "its cgroup is no agent's"
}
