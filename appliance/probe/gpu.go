package probe

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// GPU is what NVML and the filesystem say about NVIDIA GPUs.
type GPU struct {
	// Summary is one line for people: "no NVIDIA driver found",
	// "8 × NVIDIA H100 80GB HBM3", ...
	Summary string      `json:"summary"`
	NVML    NVMLInfo    `json:"nvml"`
	Devices []GPUDevice `json:"devices"`
	// DeviceNodes are the /dev/nvidia* nodes present.
	DeviceNodes []string `json:"device_nodes"`
	// KernelModules are the loaded nvidia* modules from /proc/modules.
	KernelModules []string `json:"kernel_modules"`
	// KernelDriverVersion is from /proc/driver/nvidia/version, present when
	// the module is loaded even if the user-space library is missing.
	KernelDriverVersion string `json:"kernel_driver_version,omitempty"`
	// KernelModuleFlavour is "open" or "proprietary", from the same line:
	// Blackwell runs only on the open modules, pre-Turing GPUs only on the
	// proprietary ones (appliance/gpu.OpenModulePolicy).
	KernelModuleFlavour string    `json:"kernel_module_flavour,omitempty"`
	CDISpecs            []CDISpec `json:"cdi_specs"`
	// PCIGPUs are the PCI addresses of NVIDIA display controllers (vendor
	// 0x10de, class 0x03), whether or not a driver sees them.
	PCIGPUs []string `json:"pci_gpus"`
	// DriverFiles are what shows an NVIDIA driver installed when NVML did
	// not load: the kernel module built for the running kernel, the
	// management library, or a system extension not merged. Read only
	// when NVML's Init fails.
	DriverFiles []string `json:"driver_files,omitempty"`
}

// NVMLInfo is the state of the NVIDIA management library.
type NVMLInfo struct {
	Available         bool   `json:"available"`
	Error             string `json:"error,omitempty"` // why Init failed
	DriverVersion     string `json:"driver_version,omitempty"`
	NVMLVersion       string `json:"nvml_version,omitempty"`
	CUDADriverVersion string `json:"cuda_driver_version,omitempty"` // "12.4"
}

// GPUDevice is one GPU. Pointer fields are absent when the device does not
// support the query (ECC on consumer cards, for instance).
type GPUDevice struct {
	Index             int    `json:"index"`
	Name              string `json:"name,omitempty"`
	UUID              string `json:"uuid,omitempty"`
	Architecture      string `json:"architecture,omitempty"`
	MemoryBytes       uint64 `json:"memory_bytes"`
	ComputeCapability string `json:"compute_capability,omitempty"` // "9.0"
	ECC               *bool  `json:"ecc,omitempty"`                // current mode
	ECCPending        *bool  `json:"ecc_pending,omitempty"`        // after the next reset
	MIG               *bool  `json:"mig,omitempty"`
	PCIeGeneration    *int   `json:"pcie_generation,omitempty"`
	PCIeWidth         *int   `json:"pcie_width,omitempty"`
	TemperatureC      *int   `json:"temperature_c,omitempty"`
	PowerLimitW       *int   `json:"power_limit_w,omitempty"`
	Persistence       *bool  `json:"persistence,omitempty"`
	// Errors are queries that failed for a reason other than "not supported".
	Errors []string `json:"errors,omitempty"`
}

// CDISpec is one Container Device Interface spec file.
type CDISpec struct {
	Path string `json:"path"`
	Kind string `json:"kind,omitempty"` // "nvidia.com/gpu"
	// Error is set when the file does not parse; the runtime would reject it.
	Error string `json:"error,omitempty"`
}

// kernelVersionFile is the loaded NVIDIA module's version line.
const kernelVersionFile = "/proc/driver/nvidia/version"

func probeGPU(lib nvml.Interface, r *reader, p *problems) GPU {
	g := GPU{
		Devices:       []GPUDevice{},
		DeviceNodes:   deviceNodes(r),
		KernelModules: nvidiaModules(r, p),
		CDISpecs:      cdiSpecs(r, p),
		PCIGPUs:       nvidiaPCIGPUs(r, p),
	}
	if b, ok := r.readOptional(kernelVersionFile, p); ok {
		v, flavour, err := gpu.ParseKernelModuleVersion(b)
		if err != nil {
			p.addf("reading %s: %v", kernelVersionFile, err)
		}
		g.KernelDriverVersion, g.KernelModuleFlavour = v, string(flavour)
	}

	if lib == nil {
		lib = nvml.New()
	}
	// Init must come first and must succeed: any other NVML call without it
	// jumps into a library that is not loaded and the process dies.
	if ret := lib.Init(); ret != nvml.SUCCESS {
		g.NVML.Error = ret.Error()
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND || ret == nvml.ERROR_DRIVER_NOT_LOADED {
			g.DriverFiles = driverFiles(r, p)
		}
		g.Summary = noNVMLSummary(ret, &g)
		return g
	}
	defer lib.Shutdown()
	g.NVML.Available = true

	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		g.NVML.DriverVersion = v
	} else {
		p.addf("nvml: reading the driver version: %v", ret)
	}
	if v, ret := lib.SystemGetNVMLVersion(); ret == nvml.SUCCESS {
		g.NVML.NVMLVersion = v
	} else {
		p.addf("nvml: reading the NVML version: %v", ret)
	}
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
		// Encoded as 1000*major + 10*minor.
		g.NVML.CUDADriverVersion = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
	} else {
		p.addf("nvml: reading the CUDA driver version: %v", ret)
	}

	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		p.addf("nvml: counting devices: %v", ret)
		g.Summary = "NVIDIA driver loaded but devices could not be counted: " + ret.Error()
		return g
	}
	for i := range count {
		g.Devices = append(g.Devices, probeDevice(lib, i))
	}
	g.Summary = gpuSummary(g.Devices)
	return g
}

func gpuSummary(devs []GPUDevice) string {
	if len(devs) == 0 {
		return "NVIDIA driver loaded, no GPU found"
	}
	names := map[string]int{}
	var order []string
	bad := 0
	for _, d := range devs {
		if len(d.Errors) > 0 {
			bad++
		}
		if d.Name == "" {
			continue
		}
		if names[d.Name] == 0 {
			order = append(order, d.Name)
		}
		names[d.Name]++
	}
	var parts []string
	for _, n := range order {
		parts = append(parts, fmt.Sprintf("%d × %s", names[n], n))
	}
	s := strings.Join(parts, ", ")
	if bad > 0 {
		if s != "" {
			s += "; "
		}
		s += fmt.Sprintf("%d of %d GPUs failed to answer", bad, len(devs))
	}
	return s
}

// probeDevice asks one device everything; a failing query is recorded on the
// device and the next one is tried, so one sick GPU hides nothing else.
func probeDevice(lib nvml.Interface, i int) GPUDevice {
	d := GPUDevice{Index: i}
	fail := func(what string, ret nvml.Return) {
		d.Errors = append(d.Errors, fmt.Sprintf("%s: %v", what, ret))
	}
	// ok says whether the value may be used; "not supported" is a fact, not
	// an error, and leaves the field absent.
	ok := func(what string, ret nvml.Return) bool {
		switch ret {
		case nvml.SUCCESS:
			return true
		case nvml.ERROR_NOT_SUPPORTED:
			return false
		}
		fail(what, ret)
		return false
	}
	dev, ret := lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		fail("getting the device handle", ret)
		return d
	}
	if v, ret := dev.GetName(); ok("name", ret) {
		d.Name = v
	}
	if v, ret := dev.GetUUID(); ok("uuid", ret) {
		d.UUID = v
	}
	arch, ret := dev.GetArchitecture()
	archKnown := ok("architecture", ret)
	if !archKnown {
		arch = nvml.DEVICE_ARCH_UNKNOWN
	}
	if v, ret := dev.GetMemoryInfo(); ok("memory", ret) {
		d.MemoryBytes = v.Total
	}
	major, minor, ret := dev.GetCudaComputeCapability()
	ccKnown := ok("compute capability", ret)
	if ccKnown {
		d.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	} else {
		major, minor = 0, 0
	}
	// An NVML older than the GPU names no architecture; the compute
	// capability, which every NVML reports, places it then.
	if archKnown || ccKnown {
		a, _ := gpu.ArchitectureOf(arch, major, minor)
		d.Architecture = string(a)
	}
	if cur, pend, ret := dev.GetEccMode(); ok("ECC mode", ret) {
		d.ECC = ptr(cur == nvml.FEATURE_ENABLED)
		d.ECCPending = ptr(pend == nvml.FEATURE_ENABLED)
	}
	if cur, _, ret := dev.GetMigMode(); ok("MIG mode", ret) {
		d.MIG = ptr(cur == nvml.DEVICE_MIG_ENABLE)
	}
	if v, ret := dev.GetCurrPcieLinkGeneration(); ok("PCIe generation", ret) {
		d.PCIeGeneration = ptr(v)
	}
	if v, ret := dev.GetCurrPcieLinkWidth(); ok("PCIe width", ret) {
		d.PCIeWidth = ptr(v)
	}
	if v, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU); ok("temperature", ret) {
		d.TemperatureC = ptr(int(v))
	}
	if v, ret := dev.GetPowerManagementLimit(); ok("power limit", ret) {
		d.PowerLimitW = ptr(int(v / 1000)) // milliwatts
	}
	if v, ret := dev.GetPersistenceMode(); ok("persistence mode", ret) {
		d.Persistence = ptr(v == nvml.FEATURE_ENABLED)
	}
	return d
}

func ptr[T any](v T) *T { return &v }

func deviceNodes(r *reader) []string {
	nodes := []string{}
	m, _ := r.fs.Glob("/dev/nvidia*")
	for _, f := range m {
		nodes = append(nodes, "/dev/"+filepath.Base(f))
	}
	sort.Strings(nodes)
	return nodes
}

func nvidiaModules(r *reader, p *problems) []string {
	mods := []string{}
	b, ok := r.readOptional("/proc/modules", p)
	if !ok { // a kernel without module support has nothing loadable
		return mods
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && strings.HasPrefix(f[0], "nvidia") {
			mods = append(mods, f[0])
		}
	}
	sort.Strings(mods)
	return mods
}

// cdiLimits bound a CDI spec: NVIDIA's for a DGX (eight GPUs, the "all"
// device, a hundred library mounts) is about 40 KiB and 3000 values.
var cdiLimits = safeyaml.Limits{MaxBytes: 1 << 20, MaxDepth: 16, MaxNodes: 200000, MaxSeqLen: 8192, MaxMapLen: 256}

// cdiKind returns a spec's kind, or why it has none. JSON is YAML, so one
// decoder reads both; safeyaml refuses anchors, aliases and deep nesting,
// which no generated spec has and a hostile one would use to exhaust the
// probe's memory.
func cdiKind(b []byte) (kind, problem string) {
	var spec map[string]any
	if err := safeyaml.Unmarshal(b, &spec, cdiLimits); err != nil {
		return "", err.Error()
	}
	k, ok := spec["kind"].(string)
	if !ok || k == "" {
		return "", "no kind field"
	}
	return k, ""
}

// cdiDirs are where the container runtime looks for CDI specs.
var cdiDirs = []string{"/etc/cdi", "/var/run/cdi"}

func cdiSpecs(r *reader, p *problems) []CDISpec {
	specs := []CDISpec{}
	for _, dir := range cdiDirs {
		ents, err := r.fs.ReadDir(dir)
		if err != nil {
			if !os.IsNotExist(err) {
				p.addf("listing %s: %v", dir, err)
			}
			continue
		}
		for _, e := range ents {
			ext := filepath.Ext(e.Name())
			if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
				continue
			}
			path := dir + "/" + e.Name()
			s := CDISpec{Path: path}
			b, err := r.read(path)
			if err != nil {
				s.Error = err.Error()
			} else {
				s.Kind, s.Error = cdiKind(b)
			}
			specs = append(specs, s)
		}
	}
	return specs
}
