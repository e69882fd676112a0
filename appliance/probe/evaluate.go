package probe

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/gpu"
)

// Status is a verdict, worst last.
type Status string

// The statuses, in order of severity.
const (
	StatusPass Status = "pass"
	StatusWarn Status = "warn"
	StatusFail Status = "fail"
)

func (s Status) rank() int {
	switch s {
	case StatusPass:
		return 0
	case StatusWarn:
		return 1
	}
	return 2
}

// Worse returns the more severe of s and o.
func (s Status) Worse(o Status) Status {
	if o.rank() > s.rank() {
		return o
	}
	return s
}

// Verdict is how the probed machine fares against one profile.
type Verdict struct {
	Profile config.Profile `json:"profile"`
	Status  Status         `json:"status"`
	Checks  []Check        `json:"checks"`
}

// Check is one line of a verdict.
type Check struct {
	ID       string `json:"id"`
	Status   Status `json:"status"`
	Reason   string `json:"reason"`   // one line for a person
	Measured string `json:"measured"` // what the probe found
	Required string `json:"required"` // what the profile asks
}

// Failing returns the checks that did not pass, fails first.
func (v Verdict) Failing() []Check {
	var out []Check
	for _, want := range []Status{StatusFail, StatusWarn} {
		for _, c := range v.Checks {
			if c.Status == want {
				out = append(out, c)
			}
		}
	}
	return out
}

const gib = 1 << 30

// Evaluate judges res against the profile's entry in m.
func Evaluate(res *Result, m *Matrix, profile config.Profile) Verdict {
	v := Verdict{Profile: profile, Status: StatusPass, Checks: []Check{}}
	pm := m.Profiles[profile]
	if pm == nil {
		v.Status = StatusFail
		v.Checks = append(v.Checks, Check{ID: "matrix", Status: StatusFail,
			Reason: fmt.Sprintf("the compatibility matrix has no entry for profile %q", profile)})
		return v
	}
	e := &evaluator{v: &v, req: &pm.Required, rec: &pm.Recommended, profile: profile}
	e.host(res)
	e.gpu(res, &pm.Unsupported)
	e.runtime(res)
	e.unsupportedHost(res, &pm.Unsupported)
	for _, c := range v.Checks {
		v.Status = v.Status.Worse(c.Status)
	}
	return v
}

type evaluator struct {
	v        *Verdict
	req, rec *Requirements
	profile  config.Profile
}

func (e *evaluator) add(c Check) { e.v.Checks = append(e.v.Checks, c) }

// minimum grades have against minimums: below the required one fails, below
// the recommended one warns. what names the quantity in the reason.
// shown, when not empty, replaces show(have) to say more about the value.
func minimum[T any](e *evaluator, id, what string, have T, shown string, req, rec *T, less func(a, b T) bool, show func(T) string) {
	if req == nil && rec == nil {
		return
	}
	if shown == "" {
		shown = show(have)
	}
	c := Check{ID: id, Measured: shown, Required: thresholds(req, rec, show)}
	switch {
	case req != nil && less(have, *req):
		c.Status = StatusFail
		c.Reason = fmt.Sprintf("%s: %s, below the %s minimum of %s", what, shown, e.profile, show(*req))
	case rec != nil && less(have, *rec):
		c.Status = StatusWarn
		c.Reason = fmt.Sprintf("%s: %s, below the recommended %s", what, shown, show(*rec))
	case rec != nil:
		c.Status = StatusPass
		c.Reason = fmt.Sprintf("%s: %s, meets the recommended %s", what, shown, show(*rec))
	default:
		c.Status = StatusPass
		c.Reason = fmt.Sprintf("%s: %s, meets the required %s", what, shown, show(*req))
	}
	e.add(c)
}

func thresholds[T any](req, rec *T, show func(T) string) string {
	var parts []string
	if req != nil {
		parts = append(parts, "≥ "+show(*req))
	}
	if rec != nil {
		parts = append(parts, "≥ "+show(*rec)+" recommended")
	}
	return strings.Join(parts, ", ")
}

// state grades a boolean: the matrix names the state wanted. on and off
// are how the two states read ("enabled"/"disabled", "present"/"absent").
func (e *evaluator) state(id, what string, have bool, req, rec *bool, on, off string) {
	if req == nil && rec == nil {
		return
	}
	word := func(b bool) string {
		if b {
			return on
		}
		return off
	}
	want, st, kind := false, StatusFail, "requires"
	if req != nil {
		want = *req
	} else {
		want, st, kind = *rec, StatusWarn, "recommends"
	}
	c := Check{ID: id, Measured: word(have), Required: word(want)}
	if req == nil {
		c.Required += " recommended"
	}
	if have == want {
		c.Status = StatusPass
		c.Reason = fmt.Sprintf("%s is %s", what, word(have))
	} else {
		c.Status = st
		c.Reason = fmt.Sprintf("%s is %s; %s %s it %s", what, word(have), e.profile, kind, word(want))
	}
	e.add(c)
}

func intLess(a, b int) bool        { return a < b }
func floatLess(a, b float64) bool  { return a < b }
func versionLess(a, b string) bool { return compareVersions(a, b) < 0 }
func showInt(v int) string         { return strconv.Itoa(v) }
func showGiB(v float64) string     { return strconv.FormatFloat(v, 'f', 1, 64) + " GiB" }
func showString(v string) string   { return v }
func bytesGiB(b uint64) float64    { return float64(b) / gib }

func (e *evaluator) host(res *Result) {
	h := &res.Host
	minimum(e, "cpu.threads", "logical CPUs", h.CPU.Threads, "", e.req.CPUThreads, e.rec.CPUThreads, intLess, showInt)
	for _, f := range union(e.req.CPUFlags, e.rec.CPUFlags) {
		e.state("cpu.flag."+f, "CPU flag "+f, slices.Contains(h.CPU.Flags, f),
			boolIf(slices.Contains(e.req.CPUFlags, f)), boolIf(slices.Contains(e.rec.CPUFlags, f)), "present", "absent")
	}
	minimum(e, "memory.total", "memory", bytesGiB(h.Memory.TotalBytes), "", e.req.MemoryGiB, e.rec.MemoryGiB, floatLess, showGiB)
	if e.req.StateFreeGiB != nil || e.rec.StateFreeGiB != nil {
		minimum(e, "disk.state_free", "free space on "+h.StateFS.Path, bytesGiB(h.StateFS.FreeBytes), "",
			e.req.StateFreeGiB, e.rec.StateFreeGiB, floatLess, showGiB)
	}
	if e.req.Kernel != nil || e.rec.Kernel != nil {
		rel := h.Kernel.Release
		if rel == "" {
			rel = "unknown"
		}
		minimum(e, "kernel.version", "kernel", rel, "", e.req.Kernel, e.rec.Kernel, versionLess, showString)
	}
	for _, f := range union(e.req.KernelFeatures, e.rec.KernelFeatures) {
		e.state("kernel.feature."+f, "kernel feature "+f, h.Kernel.Features[f],
			boolIf(slices.Contains(e.req.KernelFeatures, f)), boolIf(slices.Contains(e.rec.KernelFeatures, f)), "available", "missing")
	}
	minimum(e, "kernel.cgroup_version", "cgroup version", h.Kernel.CgroupVersion,
		fmt.Sprintf("%d (%s)", h.Kernel.CgroupVersion, h.Kernel.CgroupMode), e.req.CgroupVersion, e.rec.CgroupVersion, intLess, showInt)
	if e.req.TPM != nil || e.rec.TPM != nil {
		have, shown := "0", "none"
		if h.Security.TPM.Present {
			have, shown = h.Security.TPM.Version, h.Security.TPM.Version
		}
		minimum(e, "security.tpm", "TPM version", have, shown, e.req.TPM, e.rec.TPM, versionLess, showString)
	}
	if e.req.SecureBoot != nil || e.rec.SecureBoot != nil {
		off := "disabled"
		if h.Security.SecureBoot != "disabled" {
			off = h.Security.SecureBoot // "unsupported (legacy BIOS)" says more than "disabled"
			if off == "unsupported" {
				off = "unsupported (no UEFI)"
			}
		}
		e.state("security.secure_boot", "Secure Boot", h.Security.SecureBoot == "enabled", e.req.SecureBoot, e.rec.SecureBoot, "enabled", off)
	}
	e.state("security.iommu", "the IOMMU", h.Security.IOMMU.Enabled, e.req.IOMMU, e.rec.IOMMU, "on", "off")
	if e.req.BareMetal != nil || e.rec.BareMetal != nil {
		off := "a virtual machine"
		if hv := h.Virtualization.Hypervisor; hv != "" && hv != "unknown" {
			off += " (" + hv + ")"
		}
		e.state("host.bare_metal", "the host", h.Virtualization.Kind == "bare-metal", e.req.BareMetal, e.rec.BareMetal, "bare metal", off)
	}
}

func (e *evaluator) unsupportedHost(res *Result, u *Unsupported) {
	if len(u.Hypervisors) == 0 {
		return
	}
	hv := res.Host.Virtualization.Hypervisor
	c := Check{ID: "host.hypervisor", Measured: res.Host.Virtualization.Kind, Required: "not " + strings.Join(u.Hypervisors, ", ")}
	if hv != "" {
		c.Measured += " (" + hv + ")"
	}
	if slices.Contains(u.Hypervisors, hv) {
		c.Status, c.Reason = StatusFail, fmt.Sprintf("hypervisor %s is not supported by %s", hv, e.profile)
	} else {
		c.Status, c.Reason = StatusPass, "no unsupported hypervisor"
	}
	e.add(c)
}

func (e *evaluator) gpu(res *Result, u *Unsupported) {
	g := &res.GPU
	var healthy []GPUDevice
	for _, d := range g.Devices {
		if len(d.Errors) == 0 {
			healthy = append(healthy, d)
		}
	}
	e.gpuCount(g, len(healthy))
	for _, d := range g.Devices {
		if len(d.Errors) > 0 {
			e.add(Check{ID: fmt.Sprintf("gpu.%d.health", d.Index), Status: StatusWarn,
				Measured: strings.Join(d.Errors, "; "), Required: "answers every query",
				Reason: fmt.Sprintf("GPU %d did not answer: %s; it is left out of the other checks", d.Index, d.Errors[0])})
		}
	}
	if len(healthy) == 0 {
		// Every other GPU check would only repeat gpu.count.
		return
	}
	if len(u.GPUArchitectures) > 0 {
		c := Check{ID: "gpu.architecture", Status: StatusPass, Required: "not " + strings.Join(u.GPUArchitectures, ", ")}
		var archs []string
		for _, d := range healthy {
			archs = append(archs, d.Architecture)
			if slices.Contains(u.GPUArchitectures, d.Architecture) && c.Status == StatusPass {
				c.Status = StatusFail
				c.Reason = fmt.Sprintf("GPU %d (%s) is %s, which %s does not support", d.Index, d.Name, d.Architecture, e.profile)
			}
		}
		c.Measured = strings.Join(slices.Compact(archs), ", ")
		if c.Status == StatusPass {
			c.Reason = "every GPU architecture is supported"
		}
		e.add(c)
	}
	// The weakest GPU decides: agents may be scheduled on any of them.
	if e.req.GPUComputeCapability != nil || e.rec.GPUComputeCapability != nil {
		w := weakest(healthy, func(a, b GPUDevice) bool { return versionLess(a.ComputeCapability, b.ComputeCapability) })
		minimum(e, "gpu.compute_capability", fmt.Sprintf("GPU %d compute capability", w.Index), w.ComputeCapability, "",
			e.req.GPUComputeCapability, e.rec.GPUComputeCapability, versionLess, showString)
	}
	if e.req.GPUMemoryGiB != nil || e.rec.GPUMemoryGiB != nil {
		w := weakest(healthy, func(a, b GPUDevice) bool { return a.MemoryBytes < b.MemoryBytes })
		minimum(e, "gpu.memory", fmt.Sprintf("GPU %d memory", w.Index), bytesGiB(w.MemoryBytes), "",
			e.req.GPUMemoryGiB, e.rec.GPUMemoryGiB, floatLess, showGiB)
	}
	e.driver(g, u)
	e.driverSupport(g, healthy)
	if e.req.CUDA != nil || e.rec.CUDA != nil {
		have := g.NVML.CUDADriverVersion
		if have == "" {
			have = "unknown"
		}
		minimum(e, "gpu.cuda", "CUDA driver API", have, "", e.req.CUDA, e.rec.CUDA, versionLess, showString)
	}
	e.gpuModes(g, healthy)
}

// gpuModes judges the per-device modes, the device nodes and CDI.
func (e *evaluator) gpuModes(g *GPU, healthy []GPUDevice) {
	e.perDevice("gpu.ecc", "ECC", healthy, func(d GPUDevice) *bool { return d.ECC }, e.req.ECC, e.rec.ECC, "on", "off")
	e.perDevice("gpu.mig", "MIG mode", healthy, func(d GPUDevice) *bool { return d.MIG }, e.req.MIG, e.rec.MIG, "enabled", "disabled")
	e.perDevice("gpu.persistence", "persistence mode", healthy, func(d GPUDevice) *bool { return d.Persistence },
		e.req.PersistenceMode, e.rec.PersistenceMode, "on", "off")
	e.state("gpu.device_nodes", "/dev/nvidia* device nodes", len(g.DeviceNodes) > 0, e.req.NVIDIADeviceNodes, e.rec.NVIDIADeviceNodes, "present", "absent")
	validCDI := false
	for _, s := range g.CDISpecs {
		if s.Error == "" && strings.HasPrefix(s.Kind, "nvidia.com/") {
			validCDI = true
		}
	}
	e.state("gpu.cdi", "an NVIDIA CDI spec in /etc/cdi or /var/run/cdi", validCDI, e.req.CDISpec, e.rec.CDISpec, "present", "absent")
}

func (e *evaluator) gpuCount(g *GPU, healthy int) {
	if e.req.GPUs == nil && e.rec.GPUs == nil {
		return
	}
	minimum(e, "gpu.count", "NVIDIA GPU count", healthy, "", e.req.GPUs, e.rec.GPUs, intLess, showInt)
	// "0 is below the minimum of 1" is true but useless; say why.
	if last := &e.v.Checks[len(e.v.Checks)-1]; healthy == 0 && last.Status != StatusPass {
		why := g.Summary
		if why == "" {
			why = "no NVIDIA GPU found"
		}
		kind := "requires"
		if last.Status == StatusWarn {
			kind = "recommends"
		}
		last.Reason = fmt.Sprintf("%s; %s %s at least one NVIDIA GPU", why, e.profile, kind)
		last.Measured = "0 (" + why + ")"
	}
}

func (e *evaluator) driver(g *GPU, u *Unsupported) {
	version := g.NVML.DriverVersion
	if version == "" {
		version = g.KernelDriverVersion
	}
	branch := 0
	if v, err := parseVersion(version); err == nil {
		branch = v[0]
	}
	if slices.Contains(u.DriverBranches, branch) {
		e.add(Check{ID: "gpu.driver", Status: StatusFail, Measured: version,
			Required: "not branch " + joinInts(u.DriverBranches),
			Reason:   fmt.Sprintf("driver %s is on branch %d, which %s does not support", version, branch, e.profile)})
		return
	}
	if version == "" {
		version = "unknown"
	}
	minimum(e, "gpu.driver", "driver branch", branch, fmt.Sprintf("%d (%s)", branch, version),
		e.req.DriverBranch, e.rec.DriverBranch, intLess, showInt)
}

// driverSupport judges, for every profile, whether the installed driver
// and its kernel modules drive each GPU's generation (appliance/gpu's
// DriverSeries and OpenModulePolicy): a B200 on branch 550 fails with
// "blackwell needs driver branch 570 or later", not a generic error.
func (e *evaluator) driverSupport(g *GPU, healthy []GPUDevice) {
	version := g.NVML.DriverVersion
	if version == "" {
		version = g.KernelDriverVersion
	}
	flavour := gpu.ModuleFlavour(g.KernelModuleFlavour)
	var archs []string
	groups := map[string][]string{} // reason → GPU indexes
	var order []string
	for _, d := range healthy {
		archs = append(archs, d.Architecture)
		err := gpu.CheckDriver(version, flavour, gpu.Generation{Index: d.Index, Name: d.Name, Architecture: gpu.Architecture(d.Architecture)})
		if err == nil {
			continue
		}
		reason := err.Error()
		var de *gpu.DriverError
		if errors.As(err, &de) {
			reason = de.Reason
			if d.Name != "" {
				reason = d.Name + ": " + reason
			}
		}
		if groups[reason] == nil {
			order = append(order, reason)
		}
		groups[reason] = append(groups[reason], strconv.Itoa(d.Index))
	}
	slices.Sort(archs)
	modules := "kernel modules of unknown kind"
	if flavour != "" {
		modules = string(flavour) + " kernel modules"
	}
	shown := version
	if shown == "" {
		shown = "unknown"
	}
	c := Check{ID: "gpu.driver_support", Status: StatusPass, Required: "a driver branch and kernel modules that drive every GPU",
		Measured: fmt.Sprintf("driver %s, %s; %s", shown, modules, strings.Join(slices.Compact(archs), ", "))}
	if len(order) == 0 {
		c.Reason = fmt.Sprintf("driver %s with the %s drives every GPU", shown, modules)
		e.add(c)
		return
	}
	var parts []string
	for _, r := range order {
		parts = append(parts, fmt.Sprintf("GPU %s (%s)", strings.Join(groups[r], ", "), r))
	}
	c.Status = StatusFail
	c.Reason = fmt.Sprintf("driver %s with the %s cannot drive %s", shown, modules, strings.Join(parts, "; "))
	e.add(c)
}

// perDevice grades a per-GPU boolean; an unsupported query (nil) counts as
// off, because the feature is then not there to use.
func (e *evaluator) perDevice(id, what string, devs []GPUDevice, get func(GPUDevice) *bool, req, rec *bool, on, off string) {
	if req == nil && rec == nil {
		return
	}
	want := rec
	if req != nil {
		want = req
	}
	var wrong []string
	for _, d := range devs {
		have := get(d)
		if (have != nil && *have) != *want {
			wrong = append(wrong, strconv.Itoa(d.Index))
		}
	}
	word := func(b bool) string {
		if b {
			return on
		}
		return off
	}
	c := Check{ID: id, Required: word(*want),
		Measured: fmt.Sprintf("%s on %d of %d GPUs", word(*want), len(devs)-len(wrong), len(devs))}
	if req == nil {
		c.Required += " recommended"
	}
	switch {
	case len(wrong) == 0:
		c.Status, c.Reason = StatusPass, fmt.Sprintf("%s is %s on every GPU", what, word(*want))
	default:
		c.Status = StatusWarn
		kind := "recommends"
		if req != nil {
			c.Status, kind = StatusFail, "requires"
		}
		c.Reason = fmt.Sprintf("%s is %s on GPU %s; %s %s it %s", what, word(!*want), strings.Join(wrong, ", "), e.profile, kind, word(*want))
	}
	e.add(c)
}

func (e *evaluator) runtime(res *Result) {
	c := res.Runtime.Containerd
	off := "unreachable"
	if c.Error != "" {
		off += " (" + c.Error + ")"
	}
	on := "reachable"
	if c.Version != "" {
		on += " (" + c.Version + ", snapshotter " + c.Snapshotter + ")"
	}
	e.state("runtime.containerd", "containerd", c.Reachable, e.req.Containerd, e.rec.Containerd, on, off)
}

func weakest(devs []GPUDevice, less func(a, b GPUDevice) bool) GPUDevice {
	w := devs[0]
	for _, d := range devs[1:] {
		if less(d, w) {
			w = d
		}
	}
	return w
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// boolIf returns &true when cond holds, else nil: "wanted present" or
// "not asked at this strength".
func boolIf(cond bool) *bool {
	if !cond {
		return nil
	}
	return ptr(true)
}

func joinInts(v []int) string {
	var s []string
	for _, n := range v {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ", ")
}
