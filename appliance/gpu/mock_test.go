package gpu

import (
	"fmt"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// dgx wraps one of go-nvml's DGX mocks with what they leave out and this
// package calls: fixed UUIDs (the mocks draw new ones on every run, which
// golden files cannot hold), free memory, MIG device handles, the process
// lists. A mock method without an answer panics, which is how these tests
// prove which NVML calls the code makes.
type dgx struct {
	*server.Server
	migs map[int][]*mock.Device // GPU index → its MIG devices, by MIG index
}

func gpuUUID(i int) string { return fmt.Sprintf("GPU-%08x-1111-4222-8333-%012x", i, i) }

func migUUID(gpu, j int) string { return fmt.Sprintf("MIG-%08x-aaaa-4bbb-8ccc-%012x", gpu, j) }

func gib(n float64) uint64 { return uint64(n * (1 << 30)) }

// newDGX completes s; used[i] is the VRAM already in use on GPU i.
func newDGX(s *server.Server, used map[int]uint64) *dgx {
	d := &dgx{Server: s, migs: map[int][]*mock.Device{}}
	for i := range s.Devices {
		dev := d.dev(i)
		dev.UUID = gpuUUID(i)
		dev.MemoryInfo.Used = used[i]
		dev.MemoryInfo.Free = dev.MemoryInfo.Total - used[i]
		idx := i
		dev.IsMigDeviceHandleFunc = func() (bool, nvml.Return) { return false, nvml.SUCCESS }
		dev.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
		dev.GetMigDeviceHandleByIndexFunc = func(j int) (nvml.Device, nvml.Return) {
			if j < 0 || j >= len(d.migs[idx]) || d.migs[idx][j] == nil {
				return nil, nvml.ERROR_NOT_FOUND
			}
			return d.migs[idx][j], nvml.SUCCESS
		}
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.GetProcessUtilizationFunc = func(uint64) ([]nvml.ProcessUtilizationSample, nvml.Return) {
			return nil, nvml.ERROR_NOT_FOUND
		}
	}
	s.DeviceGetHandleByUUIDFunc = func(uuid string) (nvml.Device, nvml.Return) {
		for i := range s.Devices {
			if d.dev(i).UUID == uuid {
				return s.Devices[i], nvml.SUCCESS
			}
			for _, m := range d.migs[i] {
				if u, _ := m.GetUUID(); u == uuid {
					return m, nvml.SUCCESS
				}
			}
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	return d
}

func (d *dgx) dev(i int) *server.Device { return d.Devices[i].(*server.Device) }

// ciProfile is the compute instance profile that fills a GPU instance.
var ciProfile = map[int]int{
	nvml.GPU_INSTANCE_PROFILE_1_SLICE: nvml.COMPUTE_INSTANCE_PROFILE_1_SLICE,
	nvml.GPU_INSTANCE_PROFILE_2_SLICE: nvml.COMPUTE_INSTANCE_PROFILE_2_SLICE,
	nvml.GPU_INSTANCE_PROFILE_3_SLICE: nvml.COMPUTE_INSTANCE_PROFILE_3_SLICE,
	nvml.GPU_INSTANCE_PROFILE_4_SLICE: nvml.COMPUTE_INSTANCE_PROFILE_4_SLICE,
	nvml.GPU_INSTANCE_PROFILE_7_SLICE: nvml.COMPUTE_INSTANCE_PROFILE_7_SLICE,
}

// enableMIG puts GPU i in MIG mode with one GPU instance, filled by one
// compute instance, per profile, created through the mock's own MIG calls;
// used[j] is the VRAM in use on MIG device j.
func (d *dgx) enableMIG(t testing.TB, i int, used map[int]uint64, profiles ...int) {
	t.Helper()
	dev := d.dev(i)
	if ret, _ := dev.SetMigMode(nvml.DEVICE_MIG_ENABLE); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	gis := map[int]nvml.GpuInstance{}
	dev.GetGpuInstanceByIdFunc = func(id int) (nvml.GpuInstance, nvml.Return) {
		if gi, ok := gis[id]; ok {
			return gi, nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	for j, p := range profiles {
		d.migs[i] = append(d.migs[i], d.newMIG(t, dev, j, p, used[j], gis))
	}
}

func (d *dgx) newMIG(t testing.TB, dev *server.Device, j, profile int, used uint64, gis map[int]nvml.GpuInstance) *mock.Device {
	t.Helper()
	gip, ret := dev.GetGpuInstanceProfileInfo(profile)
	if ret != nvml.SUCCESS {
		t.Fatalf("GPU instance profile %d: %v", profile, ret)
	}
	gi, ret := dev.CreateGpuInstance(&gip)
	if ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	giInfo, _ := gi.GetInfo()
	gis[int(giInfo.Id)] = gi
	cip, ret := gi.GetComputeInstanceProfileInfo(ciProfile[profile], nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
	if ret != nvml.SUCCESS {
		t.Fatalf("compute instance profile for %d: %v", profile, ret)
	}
	ci, ret := gi.CreateComputeInstance(&cip)
	if ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	ciInfo, _ := ci.GetInfo()
	gi.(*server.GpuInstance).GetComputeInstanceByIdFunc = func(id int) (nvml.ComputeInstance, nvml.Return) {
		if id == int(ciInfo.Id) {
			return ci, nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	total := gip.MemorySizeMB << 20
	return &mock.Device{
		IsMigDeviceHandleFunc:                  func() (bool, nvml.Return) { return true, nvml.SUCCESS },
		GetDeviceHandleFromMigDeviceHandleFunc: func() (nvml.Device, nvml.Return) { return dev, nvml.SUCCESS },
		GetUUIDFunc:                            func() (string, nvml.Return) { return migUUID(dev.Index, j), nvml.SUCCESS },
		GetIndexFunc:                           func() (int, nvml.Return) { return j, nvml.SUCCESS },
		GetGpuInstanceIdFunc:                   func() (int, nvml.Return) { return int(giInfo.Id), nvml.SUCCESS },
		GetComputeInstanceIdFunc:               func() (int, nvml.Return) { return int(ciInfo.Id), nvml.SUCCESS },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: total, Used: used, Free: total - used}, nvml.SUCCESS
		},
		GetAttributesFunc: func() (nvml.DeviceAttributes, nvml.Return) {
			return nvml.DeviceAttributes{GpuInstanceSliceCount: gip.SliceCount, ComputeInstanceSliceCount: cip.SliceCount,
				MultiprocessorCount: cip.MultiprocessorCount, MemorySizeMB: gip.MemorySizeMB}, nvml.SUCCESS
		},
	}
}
