package probe

import (
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/gpu"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/safeyaml"
)

// MatrixSchemaVersion is the only matrix shape this binary reads.
const MatrixSchemaVersion = "omertaos.dev/compat-matrix/v1"

//go:embed matrix.yaml
var defaultMatrixYAML []byte

// Matrix says, per profile, what hardware is required, recommended and
// unsupported.
type Matrix struct {
	SchemaVersion string                            `yaml:"schema_version" json:"schema_version"`
	Profiles      map[config.Profile]*ProfileMatrix `yaml:"profiles" json:"profiles"`
}

// ProfileMatrix is one profile's entry.
type ProfileMatrix struct {
	Required    Requirements `yaml:"required" json:"required"`
	Recommended Requirements `yaml:"recommended" json:"recommended"`
	Unsupported Unsupported  `yaml:"unsupported" json:"unsupported"`
}

// Requirements are thresholds; nil or empty means "not checked". Numbers
// are minimums, booleans the state wanted.
type Requirements struct {
	CPUThreads           *int     `yaml:"cpu_threads" json:"cpu_threads,omitempty"`
	CPUFlags             []string `yaml:"cpu_flags" json:"cpu_flags,omitempty"`
	MemoryGiB            *float64 `yaml:"memory_gib" json:"memory_gib,omitempty"`
	StateFreeGiB         *float64 `yaml:"state_free_gib" json:"state_free_gib,omitempty"`
	Kernel               *string  `yaml:"kernel" json:"kernel,omitempty"`
	KernelFeatures       []string `yaml:"kernel_features" json:"kernel_features,omitempty"`
	CgroupVersion        *int     `yaml:"cgroup_version" json:"cgroup_version,omitempty"`
	GPUs                 *int     `yaml:"gpus" json:"gpus,omitempty"`
	GPUComputeCapability *string  `yaml:"gpu_compute_capability" json:"gpu_compute_capability,omitempty"`
	GPUMemoryGiB         *float64 `yaml:"gpu_memory_gib" json:"gpu_memory_gib,omitempty"`
	DriverBranch         *int     `yaml:"driver_branch" json:"driver_branch,omitempty"`
	CUDA                 *string  `yaml:"cuda" json:"cuda,omitempty"`
	ECC                  *bool    `yaml:"ecc" json:"ecc,omitempty"`
	MIG                  *bool    `yaml:"mig" json:"mig,omitempty"`
	PersistenceMode      *bool    `yaml:"persistence_mode" json:"persistence_mode,omitempty"`
	NVIDIADeviceNodes    *bool    `yaml:"nvidia_device_nodes" json:"nvidia_device_nodes,omitempty"`
	CDISpec              *bool    `yaml:"cdi_spec" json:"cdi_spec,omitempty"`
	TPM                  *string  `yaml:"tpm" json:"tpm,omitempty"`
	SecureBoot           *bool    `yaml:"secure_boot" json:"secure_boot,omitempty"`
	IOMMU                *bool    `yaml:"iommu" json:"iommu,omitempty"`
	BareMetal            *bool    `yaml:"bare_metal" json:"bare_metal,omitempty"`
	Containerd           *bool    `yaml:"containerd" json:"containerd,omitempty"`
}

// Unsupported lists what fails a profile whatever else is true.
type Unsupported struct {
	GPUArchitectures []string `yaml:"gpu_architectures" json:"gpu_architectures,omitempty"`
	DriverBranches   []int    `yaml:"driver_branches" json:"driver_branches,omitempty"`
	Hypervisors      []string `yaml:"hypervisors" json:"hypervisors,omitempty"`
}

var defaultMatrix = sync.OnceValues(func() (*Matrix, error) {
	return ParseMatrix(defaultMatrixYAML, "matrix.yaml (embedded)")
})

// DefaultMatrix returns the matrix built into the binary. It panics if that
// file is invalid, which TestDefaultMatrix rules out before any release.
func DefaultMatrix() *Matrix {
	m, err := defaultMatrix()
	if err != nil {
		panic(err)
	}
	return m
}

// matrixLimits bound a matrix file: the built-in one is 3 KiB with three
// profiles of a dozen fields each.
var matrixLimits = safeyaml.Limits{MaxBytes: 256 << 10, MaxDepth: 8, MaxNodes: 10000, MaxSeqLen: 256, MaxMapLen: 256}

// LoadMatrix reads and validates a matrix file.
func LoadMatrix(path string) (*Matrix, error) {
	b, err := safeio.ReadFile(path, int64(matrixLimits.MaxBytes))
	if err != nil {
		return nil, fmt.Errorf("reading compatibility matrix: %w", err)
	}
	return ParseMatrix(b, path)
}

// ParseMatrix decodes data strictly and validates it; name labels errors.
// A bad matrix is an error naming the field, never a silently weaker check.
// safeyaml refuses what would make the decoder itself the attack (aliases,
// deep nesting, a second document) before decoding.
func ParseMatrix(data []byte, name string) (*Matrix, error) {
	var m Matrix
	if err := safeyaml.Unmarshal(data, &m, matrixLimits); err != nil {
		var ye *safeyaml.Error
		if errors.As(err, &ye) && ye.HasPosition() {
			return nil, fmt.Errorf("%s:%w", name, err)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := m.Validate(); err != nil {
		var fe *config.FieldError
		if errors.As(err, &fe) {
			fe.File = name
		}
		return nil, err
	}
	return &m, nil
}

// Validate checks every field and returns the first problem as a
// *config.FieldError.
func (m *Matrix) Validate() error {
	bad := func(field, value, reason string) error {
		return &config.FieldError{Field: field, Value: value, Reason: reason}
	}
	if m.SchemaVersion != MatrixSchemaVersion {
		return bad("schema_version", m.SchemaVersion, "must be "+MatrixSchemaVersion)
	}
	for name := range m.Profiles {
		if _, err := config.ParseProfile(string(name)); err != nil {
			return bad("profiles."+string(name), "", "is not a profile (user, pro, enterprise)")
		}
	}
	for _, p := range config.Profiles {
		pm := m.Profiles[p]
		f := "profiles." + string(p)
		if pm == nil {
			return bad(f, "", "is missing; every profile needs an entry")
		}
		if err := pm.Required.validate(f + ".required"); err != nil {
			return err
		}
		if err := pm.Recommended.validate(f + ".recommended"); err != nil {
			return err
		}
		if err := pm.Recommended.notWeakerThan(&pm.Required, f); err != nil {
			return err
		}
		u := f + ".unsupported"
		for i, a := range pm.Unsupported.GPUArchitectures {
			if !slices.Contains(knownArchitectures(), a) {
				return bad(fmt.Sprintf("%s.gpu_architectures[%d]", u, i), a, "is not a GPU architecture ("+strings.Join(knownArchitectures(), ", ")+")")
			}
		}
		for i, b := range pm.Unsupported.DriverBranches {
			if b < 1 {
				return bad(fmt.Sprintf("%s.driver_branches[%d]", u, i), strconv.Itoa(b), "must be a driver branch such as 550")
			}
		}
		for i, h := range pm.Unsupported.Hypervisors {
			if h == "" || strings.ToLower(h) != h {
				return bad(fmt.Sprintf("%s.hypervisors[%d]", u, i), h, "must be a lowercase hypervisor name such as kvm")
			}
		}
	}
	return nil
}

func knownArchitectures() []string {
	var names []string
	for _, a := range gpu.Architectures {
		names = append(names, string(a))
	}
	slices.Sort(names)
	return names
}

func (r *Requirements) validate(f string) error {
	bad := func(field, value, reason string) error {
		return &config.FieldError{Field: f + "." + field, Value: value, Reason: reason}
	}
	nonNeg := func(field string, v *int, min int) error {
		if v != nil && *v < min {
			return bad(field, strconv.Itoa(*v), fmt.Sprintf("must be at least %d", min))
		}
		return nil
	}
	nonNegF := func(field string, v *float64) error {
		if v != nil && *v < 0 {
			return bad(field, strconv.FormatFloat(*v, 'g', -1, 64), "must not be negative")
		}
		return nil
	}
	version := func(field string, v *string, parts int) error {
		if v == nil {
			return nil
		}
		if _, err := parseVersion(*v); err != nil || strings.Count(*v, ".")+1 > parts {
			return bad(field, *v, fmt.Sprintf("is not a version of at most %d dot-separated numbers", parts))
		}
		return nil
	}
	for _, err := range []error{
		nonNeg("cpu_threads", r.CPUThreads, 1),
		nonNegF("memory_gib", r.MemoryGiB),
		nonNegF("state_free_gib", r.StateFreeGiB),
		version("kernel", r.Kernel, 3),
		nonNeg("gpus", r.GPUs, 0),
		version("gpu_compute_capability", r.GPUComputeCapability, 2),
		nonNegF("gpu_memory_gib", r.GPUMemoryGiB),
		nonNeg("driver_branch", r.DriverBranch, 1),
		version("cuda", r.CUDA, 2),
	} {
		if err != nil {
			return err
		}
	}
	if r.CgroupVersion != nil && *r.CgroupVersion != 1 && *r.CgroupVersion != 2 {
		return bad("cgroup_version", strconv.Itoa(*r.CgroupVersion), "must be 1 or 2")
	}
	for i, ft := range r.KernelFeatures {
		if !slices.Contains(KernelFeatures, ft) {
			return bad(fmt.Sprintf("kernel_features[%d]", i), ft, "is not a kernel feature the probe measures ("+strings.Join(KernelFeatures, ", ")+")")
		}
	}
	for i, fl := range r.CPUFlags {
		if !slices.Contains(notableFlags, fl) {
			return bad(fmt.Sprintf("cpu_flags[%d]", i), fl, "is not a CPU flag the probe reports ("+strings.Join(notableFlags, ", ")+")")
		}
	}
	if r.TPM != nil && *r.TPM != "1.2" && *r.TPM != "2.0" {
		return bad("tpm", *r.TPM, `must be "1.2" or "2.0"`)
	}
	return nil
}

// notWeakerThan rejects a recommendation below the requirement: such a
// matrix would warn about nothing and hide a typo.
func (rec *Requirements) notWeakerThan(req *Requirements, f string) error {
	bad := func(field, value, want string) error {
		return &config.FieldError{Field: f + ".recommended." + field, Value: value,
			Reason: "is below the required " + want + " (profiles." + f[len("profiles."):] + ".required." + field + ")"}
	}
	ints := []struct {
		name     string
		rec, req *int
	}{
		{"cpu_threads", rec.CPUThreads, req.CPUThreads},
		{"gpus", rec.GPUs, req.GPUs},
		{"driver_branch", rec.DriverBranch, req.DriverBranch},
		{"cgroup_version", rec.CgroupVersion, req.CgroupVersion},
	}
	for _, c := range ints {
		if c.rec != nil && c.req != nil && *c.rec < *c.req {
			return bad(c.name, strconv.Itoa(*c.rec), strconv.Itoa(*c.req))
		}
	}
	floats := []struct {
		name     string
		rec, req *float64
	}{
		{"memory_gib", rec.MemoryGiB, req.MemoryGiB},
		{"state_free_gib", rec.StateFreeGiB, req.StateFreeGiB},
		{"gpu_memory_gib", rec.GPUMemoryGiB, req.GPUMemoryGiB},
	}
	for _, c := range floats {
		if c.rec != nil && c.req != nil && *c.rec < *c.req {
			return bad(c.name, fmtNum(*c.rec), fmtNum(*c.req))
		}
	}
	versions := []struct {
		name     string
		rec, req *string
	}{
		{"kernel", rec.Kernel, req.Kernel},
		{"gpu_compute_capability", rec.GPUComputeCapability, req.GPUComputeCapability},
		{"cuda", rec.CUDA, req.CUDA},
	}
	for _, c := range versions {
		if c.rec != nil && c.req != nil && compareVersions(*c.rec, *c.req) < 0 {
			return bad(c.name, *c.rec, *c.req)
		}
	}
	return nil
}

// parseVersion reads "6.1", "5.15.0-113-generic" or "12.4" as numbers,
// stopping at the first part that is not one.
func parseVersion(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ".") {
		end := 0
		for end < len(part) && part[end] >= '0' && part[end] <= '9' {
			end++
		}
		if end == 0 {
			break
		}
		n, err := strconv.Atoi(part[:end])
		if err != nil {
			return nil, err
		}
		out = append(out, n)
		if end < len(part) {
			break
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q is not a version", s)
	}
	return out, nil
}

// compareVersions orders versions numerically; an unparsable one sorts
// first, so that it never passes a minimum.
func compareVersions(a, b string) int {
	va, errA := parseVersion(a)
	vb, errB := parseVersion(b)
	switch {
	case errA != nil && errB != nil:
		return 0
	case errA != nil:
		return -1
	case errB != nil:
		return 1
	}
	for i := 0; i < len(va) || i < len(vb); i++ {
		var x, y int
		if i < len(va) {
			x = va[i]
		}
		if i < len(vb) {
			y = vb[i]
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
