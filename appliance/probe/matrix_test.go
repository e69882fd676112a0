package probe

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
)

func TestDefaultMatrix(t *testing.T) {
	m := DefaultMatrix()
	for _, p := range config.Profiles {
		if m.Profiles[p] == nil {
			t.Errorf("no entry for %s", p)
		}
	}
	// pro and enterprise exist to run GPU agents.
	for _, p := range []config.Profile{config.ProfilePro, config.ProfileEnterprise} {
		r := m.Profiles[p].Required
		if r.GPUs == nil || *r.GPUs < 1 || r.GPUComputeCapability == nil || r.GPUMemoryGiB == nil || *r.GPUMemoryGiB < 16 {
			t.Errorf("%s does not require a GPU of CC >= 7.0 with >= 16 GiB: %+v", p, r)
		}
	}
	e := m.Profiles[config.ProfileEnterprise].Required
	if e.ECC == nil || !*e.ECC || e.TPM == nil || *e.TPM != "2.0" || e.SecureBoot == nil || !*e.SecureBoot {
		t.Errorf("enterprise must require ECC, TPM 2.0 and Secure Boot: %+v", e)
	}
}

func TestParseMatrixErrors(t *testing.T) {
	base, err := os.ReadFile("matrix.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown field", "      cpu_threads: 8\n      memory_gib: 32", "      cpu_threads: 8\n      memroy_gib: 32",
			`m.yaml:54:7: field "profiles.pro.required": unknown field "memroy_gib"`},
		{"wrong type", "      memory_gib: 4\n", "      memory_gib: lots\n",
			`m.yaml:34:19: field "profiles.user.required.memory_gib": must be a decimal number, not a string`},
		{"schema", "schema_version: omertaos.dev/compat-matrix/v1", "schema_version: v0",
			`m.yaml: schema_version: "v0": must be omertaos.dev/compat-matrix/v1`},
		{"missing profile", "  user:\n    required:", "  usr:\n    required:",
			`m.yaml: profiles.usr: is not a profile (user, pro, enterprise)`},
		{"negative memory", "      memory_gib: 4\n", "      memory_gib: -4\n",
			`m.yaml: profiles.user.required.memory_gib: "-4": must not be negative`},
		{"bad kernel version", `kernel: "5.10"`, `kernel: "five"`,
			`m.yaml: profiles.user.required.kernel: "five": is not a version of at most 3 dot-separated numbers`},
		{"bad compute capability", `gpu_compute_capability: "7.0"`, `gpu_compute_capability: "7.0.1"`,
			`m.yaml: profiles.pro.required.gpu_compute_capability: "7.0.1": is not a version of at most 2 dot-separated numbers`},
		{"unknown kernel feature", "kernel_features: [overlay, seccomp]\n    recommended:\n      cpu_threads: 4", "kernel_features: [overlay, zfs]\n    recommended:\n      cpu_threads: 4",
			`m.yaml: profiles.user.required.kernel_features[1]: "zfs": is not a kernel feature the probe measures (overlay, cgroup2, seccomp, user_namespaces)`},
		{"bad tpm", `tpm: "2.0"`, `tpm: "3"`, `m.yaml: profiles.enterprise.required.tpm: "3": must be "1.2" or "2.0"`},
		{"recommended below required", "      memory_gib: 8\n", "      memory_gib: 2\n",
			`m.yaml: profiles.user.recommended.memory_gib: "2": is below the required 4 (profiles.user.required.memory_gib)`},
		{"unknown architecture", "gpu_architectures: [kepler, maxwell]\n", "gpu_architectures: [kepler, fermi]\n",
			`m.yaml: profiles.user.unsupported.gpu_architectures[1]: "fermi": is not a GPU architecture (ada, ampere, blackwell, hopper, kepler, maxwell, pascal, rubin, turing, volta)`},
		{"cgroup", "      cgroup_version: 2\n      gpus: 1", "      cgroup_version: 3\n      gpus: 1",
			`m.yaml: profiles.enterprise.required.cgroup_version: "3": must be 1 or 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(base), tc.old) {
				t.Fatalf("matrix.yaml no longer contains %q", tc.old)
			}
			bad := strings.Replace(string(base), tc.old, tc.new, 1)
			path := filepath.Join(t.TempDir(), "m.yaml")
			if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadMatrix(path)
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Replace(err.Error(), path, "m.yaml", 1)
			if got != tc.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tc.want)
			}
			if strings.Contains(got, "\n") {
				t.Errorf("error is not one line: %q", got)
			}
		})
	}
	// A matrix is read by the probe command and omertad: a hostile one must
	// be refused before the decoder expands or recurses into it.
	bomb := "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
	for name, data := range map[string]string{
		"aliases":        bomb,
		"deep nesting":   strings.Repeat("[", 100000),
		"two documents":  string(base) + "---\nschema_version: v0\n",
		"over the limit": string(base) + "#" + strings.Repeat("x", 300<<10) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := ParseMatrix([]byte(data), "m.yaml")
			if err == nil || !strings.HasPrefix(err.Error(), "m.yaml") || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v, want a one-line refusal naming the file", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v to refuse", d)
			}
		})
	}
	t.Run("missing profile entry", func(t *testing.T) {
		cut := strings.Index(string(base), "  # Regulated production")
		_, err := ParseMatrix(base[:cut], "m.yaml")
		if err == nil || err.Error() != "m.yaml: profiles.enterprise: is missing; every profile needs an entry" {
			t.Errorf("err = %v", err)
		}
	})
}

// meeting builds a result that meets r's thresholds exactly: the edge.
func meeting(r Requirements) *Result {
	res := &Result{}
	h := &res.Host
	h.CPU.Threads = deref(r.CPUThreads, 1)
	h.CPU.Flags = append([]string{}, r.CPUFlags...)
	h.Memory.TotalBytes = uint64(deref(r.MemoryGiB, 1) * gib)
	h.StateFS = StateFS{Path: "/var/lib/omerta", FreeBytes: uint64(deref(r.StateFreeGiB, 1) * gib)}
	h.Kernel.Release = deref(r.Kernel, "5.0")
	h.Kernel.Features = map[string]bool{}
	for _, f := range KernelFeatures {
		h.Kernel.Features[f] = true
	}
	h.Kernel.CgroupVersion = deref(r.CgroupVersion, 2)
	if r.TPM != nil {
		h.Security.TPM = TPM{Present: true, Version: *r.TPM}
	}
	if deref(r.SecureBoot, false) {
		h.Security.SecureBoot = "enabled"
	}
	h.Security.IOMMU.Enabled = deref(r.IOMMU, false)
	h.Virtualization.Kind = "vm"
	if deref(r.BareMetal, false) {
		h.Virtualization.Kind = "bare-metal"
	}
	res.Runtime.Containerd.Reachable = deref(r.Containerd, false)
	g := &res.GPU
	g.NVML = NVMLInfo{Available: true, DriverVersion: fmt.Sprintf("%d.01", deref(r.DriverBranch, 550)), CUDADriverVersion: deref(r.CUDA, "12.0")}
	for i := range deref(r.GPUs, 0) {
		g.Devices = append(g.Devices, GPUDevice{
			Index: i, Name: "edge", Architecture: "hopper",
			ComputeCapability: deref(r.GPUComputeCapability, "9.0"),
			MemoryBytes:       uint64(deref(r.GPUMemoryGiB, 80) * gib),
			ECC:               r.ECC, MIG: r.MIG, Persistence: r.PersistenceMode,
		})
	}
	if deref(r.NVIDIADeviceNodes, false) {
		g.DeviceNodes = []string{"/dev/nvidia0"}
	}
	if deref(r.CDISpec, false) {
		g.CDISpecs = []CDISpec{{Path: "/etc/cdi/nvidia.yaml", Kind: "nvidia.com/gpu"}}
	}
	return res
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// merged is what meets both lists: the recommended value where there is one.
func merged(req, rec Requirements) Requirements {
	m := req
	pick := func(dst **int, v *int) {
		if v != nil {
			*dst = v
		}
	}
	pickF := func(dst **float64, v *float64) {
		if v != nil {
			*dst = v
		}
	}
	pickS := func(dst **string, v *string) {
		if v != nil {
			*dst = v
		}
	}
	pickB := func(dst **bool, v *bool) {
		if v != nil {
			*dst = v
		}
	}
	pick(&m.CPUThreads, rec.CPUThreads)
	pick(&m.GPUs, rec.GPUs)
	pick(&m.DriverBranch, rec.DriverBranch)
	pick(&m.CgroupVersion, rec.CgroupVersion)
	pickF(&m.MemoryGiB, rec.MemoryGiB)
	pickF(&m.StateFreeGiB, rec.StateFreeGiB)
	pickF(&m.GPUMemoryGiB, rec.GPUMemoryGiB)
	pickS(&m.Kernel, rec.Kernel)
	pickS(&m.GPUComputeCapability, rec.GPUComputeCapability)
	pickS(&m.CUDA, rec.CUDA)
	pickB(&m.ECC, rec.ECC)
	pickB(&m.MIG, rec.MIG)
	pickB(&m.PersistenceMode, rec.PersistenceMode)
	pickB(&m.NVIDIADeviceNodes, rec.NVIDIADeviceNodes)
	pickB(&m.CDISpec, rec.CDISpec)
	pickB(&m.SecureBoot, rec.SecureBoot)
	pickB(&m.IOMMU, rec.IOMMU)
	pickB(&m.BareMetal, rec.BareMetal)
	pickB(&m.Containerd, rec.Containerd)
	m.CPUFlags = union(req.CPUFlags, rec.CPUFlags)
	return m
}

// TestProfileEdges moves one measurement at a time to the edges of each
// profile's thresholds, starting from a machine that meets exactly what
// the profile recommends.
func TestProfileEdges(t *testing.T) {
	m := DefaultMatrix()
	for _, p := range config.Profiles {
		pm := m.Profiles[p]
		best := merged(pm.Required, pm.Recommended)
		t.Run(string(p)+"/at recommended", func(t *testing.T) {
			v := Evaluate(meeting(best), m, p)
			if v.Status != StatusPass {
				t.Errorf("verdict %s, failing: %+v", v.Status, v.Failing())
			}
		})
		type edge struct {
			name  string
			check string
			set   func(r *Result)
			want  Status
		}
		req, rec := pm.Required, pm.Recommended
		var edges []edge
		if req.CPUThreads != nil {
			n := *req.CPUThreads
			edges = append(edges,
				edge{"threads at required", "cpu.threads", func(r *Result) { r.Host.CPU.Threads = n }, warnIfAbove(rec.CPUThreads, n)},
				edge{"threads one below required", "cpu.threads", func(r *Result) { r.Host.CPU.Threads = n - 1 }, StatusFail})
		}
		if rec.CPUThreads != nil {
			n := *rec.CPUThreads
			edges = append(edges, edge{"threads one below recommended", "cpu.threads", func(r *Result) { r.Host.CPU.Threads = n - 1 }, StatusWarn})
		}
		if req.MemoryGiB != nil {
			b := uint64(*req.MemoryGiB * gib)
			edges = append(edges,
				edge{"memory at required", "memory.total", func(r *Result) { r.Host.Memory.TotalBytes = b }, StatusWarn},
				edge{"memory 1 KiB below required", "memory.total", func(r *Result) { r.Host.Memory.TotalBytes = b - 1024 }, StatusFail})
		}
		if req.StateFreeGiB != nil {
			b := uint64(*req.StateFreeGiB * gib)
			edges = append(edges,
				edge{"free disk at required", "disk.state_free", func(r *Result) { r.Host.StateFS.FreeBytes = b }, StatusWarn},
				edge{"free disk 1 byte below required", "disk.state_free", func(r *Result) { r.Host.StateFS.FreeBytes = b - 1 }, StatusFail})
		}
		if req.Kernel != nil {
			k := *req.Kernel
			edges = append(edges,
				edge{"kernel at required with a distro suffix", "kernel.version", func(r *Result) { r.Host.Kernel.Release = k + ".0-13-amd64" }, warnIfAboveS(rec.Kernel, k)},
				edge{"kernel just below required", "kernel.version", func(r *Result) { r.Host.Kernel.Release = lowerMinor(k) + ".300" }, StatusFail})
		}
		for _, f := range req.KernelFeatures {
			edges = append(edges, edge{"missing " + f, "kernel.feature." + f, func(r *Result) { r.Host.Kernel.Features[f] = false }, StatusFail})
		}
		for _, f := range rec.KernelFeatures {
			edges = append(edges, edge{"missing recommended " + f, "kernel.feature." + f, func(r *Result) { r.Host.Kernel.Features[f] = false }, StatusWarn})
		}
		if req.GPUs != nil && *req.GPUs > 0 {
			edges = append(edges, edge{"no GPU", "gpu.count", func(r *Result) {
				r.GPU = GPU{Summary: "no NVIDIA driver found"}
			}, StatusFail})
		} else if rec.GPUs != nil {
			edges = append(edges, edge{"no GPU", "gpu.count", func(r *Result) { r.GPU = GPU{Summary: "no NVIDIA driver found"} }, StatusWarn})
		}
		if req.GPUComputeCapability != nil {
			cc := *req.GPUComputeCapability
			edges = append(edges,
				edge{"compute capability at required", "gpu.compute_capability", func(r *Result) { r.GPU.Devices[0].ComputeCapability = cc }, StatusWarn},
				edge{"compute capability just below required", "gpu.compute_capability", func(r *Result) { r.GPU.Devices[0].ComputeCapability = lowerMinor(cc) }, StatusFail})
		}
		if req.GPUMemoryGiB != nil {
			b := uint64(*req.GPUMemoryGiB * gib)
			edges = append(edges,
				edge{"GPU memory at required", "gpu.memory", func(r *Result) { r.GPU.Devices[0].MemoryBytes = b }, StatusWarn},
				edge{"GPU memory 1 MiB below required", "gpu.memory", func(r *Result) { r.GPU.Devices[0].MemoryBytes = b - 1<<20 }, StatusFail})
		}
		if req.DriverBranch != nil {
			br := *req.DriverBranch
			edges = append(edges,
				edge{"driver at required branch", "gpu.driver", func(r *Result) { r.GPU.NVML.DriverVersion = fmt.Sprintf("%d.183.06", br) }, warnIfAbove(rec.DriverBranch, br)},
				edge{"driver one branch below", "gpu.driver", func(r *Result) { r.GPU.NVML.DriverVersion = fmt.Sprintf("%d.99", br-5) }, StatusFail})
		}
		for _, b := range pm.Unsupported.DriverBranches {
			edges = append(edges, edge{fmt.Sprintf("unsupported branch %d", b), "gpu.driver", func(r *Result) { r.GPU.NVML.DriverVersion = fmt.Sprintf("%d.40.07", b) }, StatusFail})
		}
		for _, a := range pm.Unsupported.GPUArchitectures {
			edges = append(edges, edge{"unsupported " + a, "gpu.architecture", func(r *Result) {
				if len(r.GPU.Devices) == 0 {
					r.GPU.Devices = []GPUDevice{{Name: "old", ComputeCapability: "9.0", MemoryBytes: 80 * gib}}
				}
				r.GPU.Devices[0].Architecture = a
			}, StatusFail})
		}
		if req.ECC != nil && *req.ECC {
			edges = append(edges, edge{"ECC off on one GPU", "gpu.ecc", func(r *Result) { r.GPU.Devices[0].ECC = ptr(false) }, StatusFail},
				edge{"ECC not supported", "gpu.ecc", func(r *Result) { r.GPU.Devices[0].ECC = nil }, StatusFail})
		}
		if rec.MIG != nil && !*rec.MIG {
			edges = append(edges, edge{"MIG on", "gpu.mig", func(r *Result) { r.GPU.Devices[0].MIG = ptr(true) }, StatusWarn})
		}
		if req.TPM != nil {
			edges = append(edges,
				edge{"TPM 1.2", "security.tpm", func(r *Result) { r.Host.Security.TPM = TPM{Present: true, Version: "1.2"} }, StatusFail},
				edge{"no TPM", "security.tpm", func(r *Result) { r.Host.Security.TPM = TPM{} }, StatusFail})
		}
		if req.SecureBoot != nil {
			edges = append(edges,
				edge{"Secure Boot off", "security.secure_boot", func(r *Result) { r.Host.Security.SecureBoot = "disabled" }, StatusFail},
				edge{"legacy BIOS", "security.secure_boot", func(r *Result) { r.Host.Security.SecureBoot = "unsupported" }, StatusFail})
		}
		if rec.Containerd != nil {
			edges = append(edges, edge{"containerd down", "runtime.containerd", func(r *Result) {
				r.Runtime.Containerd = Containerd{Error: "no socket at /run/containerd/containerd.sock"}
			}, StatusWarn})
		}
		for _, e := range edges {
			t.Run(string(p)+"/"+e.name, func(t *testing.T) {
				res := meeting(best)
				e.set(res)
				v := Evaluate(res, m, p)
				c, ok := findCheck(v, e.check)
				if !ok {
					t.Fatalf("no check %s", e.check)
				}
				if c.Status != e.want {
					t.Errorf("%s = %s (%s), want %s", c.ID, c.Status, c.Reason, e.want)
				}
				if c.Reason == "" || c.Measured == "" || strings.Contains(c.Reason, "\n") {
					t.Errorf("check lacks a one-line reason or a measured value: %+v", c)
				}
				if v.Status.rank() < e.want.rank() {
					t.Errorf("overall %s is milder than the check's %s", v.Status, e.want)
				}
			})
		}
	}
}

func warnIfAbove(rec *int, n int) Status {
	if rec != nil && *rec > n {
		return StatusWarn
	}
	return StatusPass
}

func warnIfAboveS(rec *string, v string) Status {
	if rec != nil && compareVersions(*rec, v) > 0 {
		return StatusWarn
	}
	return StatusPass
}

// lowerMinor returns "6.0" for "6.1", "5.14" for "5.15", "7.9" for "8.0".
func lowerMinor(v string) string {
	p, _ := parseVersion(v)
	if p[1] > 0 {
		return fmt.Sprintf("%d.%d", p[0], p[1]-1)
	}
	return fmt.Sprintf("%d.9", p[0]-1)
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"6.18.44-fc-v669", "6.1", 1},
		{"5.15.0-113-generic", "5.15", 0},
		{"5.9", "5.10", -1},
		{"12.4", "12.2", 1},
		{"unknown", "1.0", -1},
		{"7.5", "8.0", -1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
