package gpu

import (
	"errors"
	"math"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/google/go-cmp/cmp"
)

func fakeProc(t *testing.T, cgroups map[int]string) string {
	dir := t.TempDir()
	for pid, content := range cgroups {
		write(t, filepath.Join(dir, strconv.Itoa(pid), "cgroup"), content, 0o444)
	}
	return dir
}

func TestCollectUsage(t *testing.T) {
	d := h100Fleet(t)
	procs := func(i int, p []nvml.ProcessInfo, util []nvml.ProcessUtilizationSample, ret nvml.Return) {
		d.dev(i).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return p, nvml.SUCCESS }
		d.dev(i).GetProcessUtilizationFunc = func(since uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
			if since != 500 {
				t.Errorf("GPU %d: utilisation asked since %d, want 500", i, since)
			}
			return util, ret
		}
	}
	// GPU 0 is in MIG mode: processes carry their GPU and compute instance,
	// and NVML has no per-process utilisation.
	procs(0, []nvml.ProcessInfo{{Pid: 800, UsedGpuMemory: gib(3), GpuInstanceId: 1, ComputeInstanceId: 0}}, nil, nvml.ERROR_NOT_SUPPORTED)
	procs(1, []nvml.ProcessInfo{{Pid: 100, UsedGpuMemory: gib(10)}, {Pid: 300, UsedGpuMemory: gib(2)}},
		[]nvml.ProcessUtilizationSample{{Pid: 100, TimeStamp: 1000, SmUtil: 40, MemUtil: 20}, {Pid: 100, TimeStamp: 900, SmUtil: 99}}, nvml.SUCCESS)
	procs(2, []nvml.ProcessInfo{{Pid: 101, UsedGpuMemory: math.MaxUint64}}, nil, nvml.ERROR_NOT_FOUND)
	procs(3, []nvml.ProcessInfo{{Pid: 200, UsedGpuMemory: gib(20)}, {Pid: 201, UsedGpuMemory: gib(1)}, {Pid: 400, UsedGpuMemory: 1},
		{Pid: 500, UsedGpuMemory: 1}, {Pid: 600, UsedGpuMemory: gib(4)}, {Pid: 700, UsedGpuMemory: 1}},
		[]nvml.ProcessUtilizationSample{{Pid: 200, TimeStamp: 1200, SmUtil: 70, MemUtil: 50}, {Pid: 201, TimeStamp: 1100, SmUtil: 60, MemUtil: 60}}, nvml.SUCCESS)
	proc := fakeProc(t, map[int]string{
		100: "0::/omerta/alpha-g1\n",
		101: "0::/omerta/alpha-g1\n",
		200: "12:memory:/omerta/beta-g2\n11:cpu,cpuacct:/omerta/beta-g2\n0::/\n", // cgroup v1
		201: "0::/omerta/beta-g2 (deleted)\n",
		300: "0::/system.slice/ollama.service\n",
		// 400 ended before its cgroup was read.
		500: "0::relative/omerta/alpha-g1\n",
		600: "0::/omerta/gamma-g1/sandbox\n",
		700: "0::/omerta/alpha-g10\n",
		800: "0::/omerta/delta-g1\n",
	})
	cg := map[string]string{}
	for agent, c := range map[string]string{"alpha": "alpha-g1", "beta": "beta-g2", "gamma": "gamma-g1", "delta": "delta-g1"} {
		cg[ContainerCgroup("omerta", c)] = agent
	}
	u, err := CollectUsage(d, proc, cg, 500)
	if err != nil {
		t.Fatal(err)
	}
	dev := func(i int, mem uint64, sm, memp, n int) DeviceUsage {
		return DeviceUsage{UUID: gpuUUID(i), Label: "GPU " + strconv.Itoa(i), MemoryBytes: mem, SMPercent: sm, MemoryPercent: memp, Processes: n}
	}
	want := Usage{
		Agents: []AgentUsage{
			{Agent: "alpha", MemoryBytes: gib(10), Devices: []DeviceUsage{dev(1, gib(10), 40, 20, 1), dev(2, 0, -1, -1, 1)}},
			{Agent: "beta", MemoryBytes: gib(21), Devices: []DeviceUsage{dev(3, gib(21), 100, 100, 2)}},
			{Agent: "delta", MemoryBytes: gib(3), Devices: []DeviceUsage{{UUID: migUUID(0, 1), Label: "GPU 0 MIG 1 (2g.20gb)", MemoryBytes: gib(3), SMPercent: -1, MemoryPercent: -1, Processes: 1}}},
			{Agent: "gamma", MemoryBytes: gib(4), Devices: []DeviceUsage{dev(3, gib(4), -1, -1, 1)}},
		},
		Unattributed: []ProcessSample{
			{PID: 300, UUID: gpuUUID(1), Label: "GPU 1", MemoryBytes: gib(2), MemoryKnown: true, SMPercent: -1, MemoryPercent: -1, Why: "its cgroup is no agent's"},
			{PID: 400, UUID: gpuUUID(3), Label: "GPU 3", MemoryBytes: 1, MemoryKnown: true, SMPercent: -1, MemoryPercent: -1, Why: "the process ended before its cgroup was read"},
			{PID: 500, UUID: gpuUUID(3), Label: "GPU 3", MemoryBytes: 1, MemoryKnown: true, SMPercent: -1, MemoryPercent: -1,
				Why: "invalid GPU request: cgroup line 1 0::relative/omerta/alpha-g1: path relative/omerta/alpha-g1 is not absolute"},
			{PID: 700, UUID: gpuUUID(3), Label: "GPU 3", MemoryBytes: 1, MemoryKnown: true, SMPercent: -1, MemoryPercent: -1, Why: "its cgroup is no agent's"},
		},
		LastSeen: 1200,
	}
	if diff := cmp.Diff(want, u); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
}

func TestCollectUsageNoDriver(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }}
	if _, err := CollectUsage(lib, t.TempDir(), nil, 0); !errors.Is(err, ErrNoDriver) {
		t.Fatalf("CollectUsage = %v, want ErrNoDriver", err)
	}
}
