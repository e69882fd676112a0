package gpu

import (
	"fmt"
	"math"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Unit is one allocatable GPU: a whole GPU, or one MIG device of a GPU in
// MIG mode. A GPU in MIG mode is listed too (MIGEnabled), for telemetry
// and drift, but only its MIG devices are handed out.
type Unit struct {
	UUID string `json:"uuid"`
	// Index is the GPU's NVML index; for a MIG device, its parent's.
	Index             int          `json:"index"`
	Name              string       `json:"name,omitempty"`
	Architecture      Architecture `json:"architecture"`
	ComputeCapability string       `json:"compute_capability,omitempty"`
	TotalBytes        uint64       `json:"total_bytes"`
	FreeBytes         uint64       `json:"free_bytes"`
	// MIGEnabled marks a whole GPU in MIG mode: not allocatable itself.
	MIGEnabled bool     `json:"mig_enabled,omitempty"`
	MIG        *MIGSlot `json:"mig,omitempty"`
}

// MIGSlot places a MIG device on its parent.
type MIGSlot struct {
	// Index is the MIG device's index on the parent (NVML's, 0-based).
	Index           int    `json:"index"`
	Parent          string `json:"parent"` // the parent GPU's UUID
	Profile         string `json:"profile,omitempty"`
	GPUInstance     int    `json:"gpu_instance"`
	ComputeInstance int    `json:"compute_instance"`
}

// Label is how a person names the unit: "GPU 3", "GPU 0 MIG 1 (3g.40gb)".
func (u Unit) Label() string {
	if u.MIG == nil {
		return fmt.Sprintf("GPU %d", u.Index)
	}
	if u.MIG.Profile == "" {
		return fmt.Sprintf("GPU %d MIG %d", u.Index, u.MIG.Index)
	}
	return fmt.Sprintf("GPU %d MIG %d (%s)", u.Index, u.MIG.Index, u.MIG.Profile)
}

// CDIVendorClass is the kind of the CDI spec this package writes and of
// every device name it hands out.
const CDIVendorClass = "nvidia.com/gpu"

// CDIName is the unit's fully qualified CDI device name: the spec this
// package generates names every device by its UUID, which, unlike an
// index, does not move when another GPU is lost.
func (u Unit) CDIName() string { return CDIVendorClass + "=" + u.UUID }

// allocatable: a MIG device or a whole GPU not in MIG mode.
func (u Unit) allocatable() bool { return !u.MIGEnabled }

// Inventory is the GPUs NVML reports, in NVML order (GPU index, then MIG
// index), with the driver version they were read under.
type Inventory struct {
	DriverVersion string `json:"driver_version"`
	Units         []Unit `json:"units"`
	// Problems are the GPUs or queries that failed; such a GPU is left out
	// (a unit without its memory size cannot be admitted against).
	Problems []string `json:"problems,omitempty"`
}

// Unit returns the unit with uuid.
func (inv Inventory) Unit(uuid string) (Unit, bool) {
	for _, u := range inv.Units {
		if u.UUID == uuid {
			return u, true
		}
	}
	return Unit{}, false
}

// maxDevices bounds what a broken or hostile NVML can make us walk: NVML
// itself caps a node at 64 GPUs, and an H100 or B200 at 7 MIG devices.
const (
	maxDevices    = 64
	maxMIGDevices = 16
)

// ReadInventory asks NVML for every GPU and MIG device. It calls Init
// first and nothing else when Init fails (any other call into a library
// that is not loaded kills the process), returning ErrNoDriver.
func ReadInventory(lib nvml.Interface) (Inventory, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return Inventory{}, fmt.Errorf("%w: initialising NVML: %v", ErrNoDriver, ret)
	}
	defer lib.Shutdown()
	var inv Inventory
	v, ret := lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return Inventory{}, fmt.Errorf("reading the driver version: %v", ret)
	}
	inv.DriverVersion = v
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return Inventory{}, fmt.Errorf("counting GPUs: %v", ret)
	}
	if n > maxDevices {
		inv.Problems = append(inv.Problems, fmt.Sprintf("NVML reports %d GPUs; only the first %d are read", n, maxDevices))
		n = maxDevices
	}
	for i := range n {
		units, err := readGPU(lib, i)
		if err != nil {
			inv.Problems = append(inv.Problems, err.Error())
		}
		inv.Units = append(inv.Units, units...)
	}
	return inv, nil
}

// readGPU reads GPU i and, in MIG mode, its MIG devices. A GPU that fails
// a query it cannot do without is left out with the reason; a MIG device
// that fails is left out while its siblings stay.
func readGPU(lib nvml.Interface, i int) ([]Unit, error) {
	dev, ret := lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("GPU %d: getting its handle: %v", i, ret)
	}
	u := Unit{Index: i}
	if u.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("GPU %d: reading its UUID: %v", i, ret)
	}
	if name, ret := dev.GetName(); ret == nvml.SUCCESS {
		u.Name = name
	}
	arch, ret := dev.GetArchitecture()
	if ret != nvml.SUCCESS {
		arch = nvml.DEVICE_ARCH_UNKNOWN
	}
	major, minor, ret := dev.GetCudaComputeCapability()
	if ret == nvml.SUCCESS {
		u.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	}
	u.Architecture, _ = ArchitectureOf(arch, major, minor)
	mem, ret := dev.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("GPU %d: reading its memory: %v", i, ret)
	}
	u.TotalBytes, u.FreeBytes = mem.Total, min(mem.Free, mem.Total)
	if cur, _, ret := dev.GetMigMode(); ret == nvml.SUCCESS && cur == nvml.DEVICE_MIG_ENABLE {
		u.MIGEnabled = true
	}
	units := []Unit{u}
	if !u.MIGEnabled {
		return units, nil
	}
	migs, err := readMIG(dev, u)
	return append(units, migs...), err
}

func readMIG(dev nvml.Device, parent Unit) ([]Unit, error) {
	n, ret := dev.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("GPU %d: counting its MIG devices: %v", parent.Index, ret)
	}
	var units []Unit
	var problem error
	for j := range min(n, maxMIGDevices) {
		h, ret := dev.GetMigDeviceHandleByIndex(j)
		if ret == nvml.ERROR_NOT_FOUND || ret == nvml.ERROR_INVALID_ARGUMENT {
			continue // an empty slot
		}
		u, err := readMIGDevice(h, parent, j)
		if err != nil {
			problem = err
			continue
		}
		units = append(units, u)
	}
	return units, problem
}

func readMIGDevice(h nvml.Device, parent Unit, j int) (Unit, error) {
	if h == nil {
		return Unit{}, fmt.Errorf("GPU %d MIG %d: NVML returned no handle", parent.Index, j)
	}
	fail := func(what string, ret nvml.Return) (Unit, error) {
		return Unit{}, fmt.Errorf("GPU %d MIG %d: reading its %s: %v", parent.Index, j, what, ret)
	}
	u := Unit{Index: parent.Index, Name: parent.Name, Architecture: parent.Architecture,
		ComputeCapability: parent.ComputeCapability, MIG: &MIGSlot{Index: j, Parent: parent.UUID}}
	var ret nvml.Return
	if u.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
		return fail("UUID", ret)
	}
	mem, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return fail("memory", ret)
	}
	u.TotalBytes, u.FreeBytes = mem.Total, min(mem.Free, mem.Total)
	if u.MIG.GPUInstance, ret = h.GetGpuInstanceId(); ret != nvml.SUCCESS {
		return fail("GPU instance", ret)
	}
	if u.MIG.ComputeInstance, ret = h.GetComputeInstanceId(); ret != nvml.SUCCESS {
		return fail("compute instance", ret)
	}
	if a, ret := h.GetAttributes(); ret == nvml.SUCCESS {
		u.MIG.Profile = migProfile(a)
	}
	return u, nil
}

// migProfile names a MIG device the way nvidia-smi does, "3g.40gb", or
// "1c.3g.40gb" when the compute instance has fewer slices than its GPU
// instance. The memory is rounded to whole GB as in NVIDIA's profile names.
func migProfile(a nvml.DeviceAttributes) string {
	if a.GpuInstanceSliceCount == 0 {
		return ""
	}
	gb := int(math.Round(float64(a.MemorySizeMB) / 1024))
	p := fmt.Sprintf("%dg.%dgb", a.GpuInstanceSliceCount, gb)
	if a.ComputeInstanceSliceCount != 0 && a.ComputeInstanceSliceCount < a.GpuInstanceSliceCount {
		p = fmt.Sprintf("%dc.%s", a.ComputeInstanceSliceCount, p)
	}
	return p
}

// Generations lists the whole GPUs for the driver check.
func (inv Inventory) Generations() []Generation {
	var out []Generation
	for _, u := range inv.Units {
		if u.MIG == nil {
			out = append(out, Generation{Index: u.Index, Name: u.Name, Architecture: u.Architecture})
		}
	}
	return out
}
